"""The building blocks of the dense-attention main branch, all 3D.

- ``DenseBlock``: DenseNet layers (BN-ReLU-1x1x1 bottleneck, BN-ReLU-3x3x3 producing ``growth``
  channels), each layer's output concatenated to its input (Huang et al. 2017).
- ``Transition``: BN-ReLU-1x1x1 convolution compressing the channels by ``compression``, then
  2x average pooling.
- ``ResidualAttention``: the attention module of Residual Attention Networks (Wang et al.
  2017): a trunk branch T and an encoder-decoder soft-mask branch M in [0, 1] with skip
  connections; output ``(1 + M) * T``, so a mask can stress features but never erase the trunk.

Each module checks its hyper-parameters when built, not in ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f'Argument "{name}" must be >= 1, got {value}.')


class PreActUnit(nn.Module):
    """A pre-activation bottleneck residual unit (BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 + x).

    The bottleneck keeps the attention module cheap: its 3x3x3 convolution runs on a quarter of
    the channels (at least 4).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        _positive("channels", channels)
        inner = max(4, channels // 4)
        self.body = nn.Sequential(
            nn.BatchNorm3d(channels), nn.ReLU(inplace=True),
            nn.Conv3d(channels, inner, 1, bias=False),
            nn.BatchNorm3d(inner), nn.ReLU(inplace=True),
            nn.Conv3d(inner, inner, 3, padding=1, bias=False),
            nn.BatchNorm3d(inner), nn.ReLU(inplace=True),
            nn.Conv3d(inner, channels, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DenseLayer(nn.Module):
    """One DenseNet layer: ``bottleneck * growth`` channels after the 1x1x1, ``growth`` out."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("growth", growth),
                            ("bottleneck", bottleneck)):
            _positive(name, value)
        inner = bottleneck * growth
        self.body = nn.Sequential(
            nn.BatchNorm3d(in_channels), nn.ReLU(inplace=True),
            nn.Conv3d(in_channels, inner, 1, bias=False),
            nn.BatchNorm3d(inner), nn.ReLU(inplace=True),
            nn.Conv3d(inner, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class DenseBlock(nn.Sequential):
    """``layers`` dense layers; the output has ``in_channels + layers * growth`` channels."""

    def __init__(self, in_channels: int, layers: int, growth: int, bottleneck: int) -> None:
        _positive("layers", layers)
        super().__init__(*(
            DenseLayer(in_channels + i * growth, growth, bottleneck) for i in range(layers)
        ))
        self.out_channels = in_channels + layers * growth


class Transition(nn.Sequential):
    """BN-ReLU-1x1x1 convolution to ``floor(compression * in_channels)`` channels, 2x pooling."""

    def __init__(self, in_channels: int, compression: float) -> None:
        _positive("in_channels", in_channels)
        if not 0 < compression <= 1:
            raise ValueError(f'Argument "compression" must lie in (0, 1], got {compression}.')
        out_channels = max(1, int(in_channels * compression))
        super().__init__(
            nn.BatchNorm3d(in_channels), nn.ReLU(inplace=True),
            nn.Conv3d(in_channels, out_channels, 1, bias=False),
            nn.AvgPool3d(2),
        )
        self.out_channels = out_channels


class SoftMaskBranch(nn.Module):
    """Encoder-decoder producing a mask in [0, 1] with the input's shape.

    ``depth`` times: max-pool by 2 and a residual unit (the encoder), keeping a skip unit at each
    level; then back up by trilinear interpolation to the skip's size, adding the skip (the
    decoder); finally BN-ReLU-1x1, BN-ReLU-1x1 and a sigmoid. Interpolating to the skip's exact
    size lets odd sizes through.
    """

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        _positive("depth", depth)
        self.depth = depth
        self.down = nn.ModuleList(PreActUnit(channels) for _ in range(depth))
        self.skips = nn.ModuleList(PreActUnit(channels) for _ in range(depth - 1))
        self.up = nn.ModuleList(PreActUnit(channels) for _ in range(depth - 1))
        self.to_mask = nn.Sequential(
            nn.BatchNorm3d(channels), nn.ReLU(inplace=True), nn.Conv3d(channels, channels, 1),
            nn.BatchNorm3d(channels), nn.ReLU(inplace=True), nn.Conv3d(channels, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        sizes = []
        skips = []
        y = x
        for level, unit in enumerate(self.down):
            sizes.append(y.shape[2:])
            y = unit(F.max_pool3d(y, 2))
            if level < self.depth - 1:
                skips.append(self.skips[level](y))
        for level in reversed(range(self.depth)):
            y = F.interpolate(y, size=sizes[level], mode="trilinear", align_corners=False)
            if level > 0:
                y = self.up[level - 1](y + skips[level - 1])
        return self.to_mask(y)


class ResidualAttention(nn.Module):
    """Residual soft-mask attention: ``out = (1 + M(x)) * T(x)``.

    ``depth`` is the number of pooling levels of the mask branch: the input needs at least
    ``2 ** depth`` voxels per edge (``min_size``).
    """

    def __init__(self, channels: int, depth: int = 1, trunk_units: int = 1) -> None:
        super().__init__()
        _positive("channels", channels)
        _positive("trunk_units", trunk_units)
        self.trunk = nn.Sequential(*(PreActUnit(channels) for _ in range(trunk_units)))
        self.mask = SoftMaskBranch(channels, depth)
        self.min_size = 2**depth

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the attended features and the mask M (same shape, values in [0, 1])."""
        mask = self.mask(x)
        return (1 + mask) * self.trunk(x), mask
