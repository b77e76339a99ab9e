"""Augmentation that respects CT physics, applied to whole crops on the fly.

Allowed: mirror flips and small 3-D rotations (anatomy has no preferred handedness and a crop is
isotropic), and a small shift of all densities at once (scanner calibration drifts by a few
HU). Not allowed: contrast stretches, gamma or per-voxel intensity noise large enough to move a
ground-glass voxel (-700 to -500 HU) towards solid (0 to 60 HU) — the one cue the invasiveness
labels rest on. The same transform is applied to every voxel of a crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.crop_spec import CropSpec


@dataclass(frozen=True)
class Augmentation:
    """Random, label-preserving transforms of a batch of crops (N, 1, D, H, W) in [0, 1].

    Attributes:
        max_rotation_deg: largest rotation about each axis.
        hu_shift_sd: standard deviation of the per-crop density shift, in HU.
        hu_shift_max: the shift is clipped to +/- this many HU (well below the ~500 HU
            between ground glass and solid tissue).
    """

    spec: CropSpec
    max_rotation_deg: float = 10.0
    hu_shift_sd: float = 10.0
    hu_shift_max: float = 25.0

    def __post_init__(self) -> None:
        if not 0 <= self.max_rotation_deg <= 30:
            raise ValueError(
                f'Argument "max_rotation_deg" must be in [0, 30], got {self.max_rotation_deg}.'
            )
        if not 0 <= self.hu_shift_max <= 50 or self.hu_shift_sd < 0:
            raise ValueError('Arguments "hu_shift_sd" >= 0 and "hu_shift_max" in [0, 50] HU.')

    def __call__(self, crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if crops.ndim != 5 or crops.shape[1] != 1:
            raise ValueError(f"crops must be (N, 1, D, H, W), got {tuple(crops.shape)}")
        out = self._flip(crops, generator)
        out = self._rotate(out, generator)
        return self._shift(out, generator)

    def _flip(self, crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flips = torch.rand(crops.shape[0], 3, generator=generator) < 0.5
        out = crops.clone()
        for i in range(crops.shape[0]):
            dims = [2 + d for d in range(3) if flips[i, d]]
            if dims:
                out[i] = torch.flip(crops[i : i + 1], dims)[0]
        return out

    def _rotate(self, crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.max_rotation_deg == 0:
            return crops
        limit = math.radians(self.max_rotation_deg)
        angles = (torch.rand(crops.shape[0], 3, generator=generator) * 2 - 1) * limit
        matrices = torch.stack([_rotation(a) for a in angles])
        theta = torch.cat([matrices, torch.zeros(crops.shape[0], 3, 1)], dim=2)
        grid = F.affine_grid(theta, list(crops.shape), align_corners=False)
        return F.grid_sample(crops, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)

    def _shift(self, crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        low, high = self.spec.hu_window
        hu = (torch.randn(crops.shape[0], generator=generator) * self.hu_shift_sd).clamp(
            -self.hu_shift_max, self.hu_shift_max
        )
        return (crops + (hu / (high - low)).view(-1, 1, 1, 1, 1)).clamp(0.0, 1.0)


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """The 3x3 rotation about x, then y, then z by ``angles`` (radians)."""
    cx, cy, cz = torch.cos(angles)
    sx, sy, sz = torch.sin(angles)
    one, zero = torch.tensor(1.0), torch.tensor(0.0)
    rx = torch.stack([torch.stack([one, zero, zero]), torch.stack([zero, cx, -sx]),
                      torch.stack([zero, sx, cx])])
    ry = torch.stack([torch.stack([cy, zero, sy]), torch.stack([zero, one, zero]),
                      torch.stack([-sy, zero, cy])])
    rz = torch.stack([torch.stack([cz, -sz, zero]), torch.stack([sz, cz, zero]),
                      torch.stack([zero, zero, one])])
    return rz @ ry @ rx
