"""One synthetic scene -- a chest, its acquisition and its nodules -- drawn from a seed, and
rendered on any region of its grid.

Study mode renders the whole grid slab by slab; box mode renders one box around a nodule.
Both go through ``sample_scene`` and ``render_region``, so a box is, voxel for voxel, what a
study drawn by the same rules would hold there (but for the noise realisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from training.synthetic.acquisition import (
    Acquisition,
    AcquisitionKind,
    add_noise,
    blur,
    sample_acquisition,
)
from training.synthetic.geometry import Grid, IndexBox, Vec3, box_shape, grow
from training.synthetic.nodule import (
    NoduleShape,
    render_nodule,
    rendered_volume_mm3,
    sample_shape,
    volume_equivalent_diameter,
)
from training.synthetic.pathology import NodulePathology, sample_pathology
from training.synthetic.phantom import ChestPhantom, place_nodule, render_phantom, sample_phantom
from training.synthetic.truth import NoduleTruth

MAX_NODULES = 3


class Stream(IntEnum):
    """Keeps the items of different sets apart: study 7 and labelled box 7 of one seed are
    different draws, so an unlabelled set never repeats a labelled one."""

    STUDY = 0
    LABELLED_BOX = 1
    UNLABELLED_BOX = 2


@dataclass(frozen=True)
class NoduleSpec:
    """What a caller may force about a nodule (tests, previews); the rest is drawn."""

    pathology: NodulePathology | None = None
    diameter_mm: float | None = None

    def __post_init__(self) -> None:
        if self.diameter_mm is not None and not self.diameter_mm > 0:
            raise ValueError(f'Argument "diameter_mm" must be > 0, got {self.diameter_mm}.')


@dataclass(frozen=True)
class PlacedNodule:
    centre_mm: Vec3
    pathology: NodulePathology
    shape: NoduleShape


@dataclass(frozen=True)
class Scene:
    phantom: ChestPhantom
    acquisition: Acquisition
    grid: Grid
    nodules: tuple[PlacedNodule, ...]


def item_seed_sequence(seed: int, index: int, stream: Stream) -> np.random.SeedSequence:
    """The entropy of one item of a cohort: independent of how many processes make it."""
    if seed < 0 or index < 0:
        raise ValueError(f'Arguments "seed" and "index" must be >= 0, got {seed} and {index}.')
    return np.random.SeedSequence([seed, index, int(stream)])


def sample_scene(
    entropy: np.random.SeedSequence,
    kind: AcquisitionKind | str,
    n_nodules: int | None = None,
    specs: Sequence[NoduleSpec] | None = None,
) -> tuple[Scene, np.random.Generator]:
    """Draw a scene; returns it with the generator its noise must come from.

    ``n_nodules`` None draws 0-3 nodules (or takes ``len(specs)``); ``specs`` forces
    properties of the nodules in order.
    """
    if specs is not None and n_nodules is not None and len(specs) != n_nodules:
        raise ValueError(f'Argument "specs" must have n_nodules = {n_nodules} items.')
    if n_nodules is not None and not 0 <= n_nodules <= MAX_NODULES:
        raise ValueError(f'Argument "n_nodules" must lie in 0-{MAX_NODULES}, got {n_nodules}.')
    phantom_entropy, acquisition_entropy, nodule_entropy, noise_entropy = entropy.spawn(4)
    phantom_rng, acquisition_rng, nodule_rng = (
        np.random.default_rng(s) for s in (phantom_entropy, acquisition_entropy, nodule_entropy)
    )
    # SFC64 feeds the tens of millions of noise samples of a study ~10 % faster than PCG64
    noise_rng = np.random.Generator(np.random.SFC64(noise_entropy))
    phantom = sample_phantom(phantom_rng)
    acquisition = sample_acquisition(kind, phantom.body_semi_axes[0], acquisition_rng)
    if n_nodules is None and specs is not None:
        n_nodules = len(specs)
    elif n_nodules is None:
        n_nodules = int(nodule_rng.integers(0, MAX_NODULES + 1))
    nodules: list[PlacedNodule] = []
    for i in range(n_nodules):
        spec = specs[i] if specs is not None else NoduleSpec()
        drawn = sample_pathology(nodule_rng)
        pathology = spec.pathology or drawn
        shape = sample_shape(pathology, nodule_rng, spec.diameter_mm)
        centre = place_nodule(
            phantom, shape.diameter_mm, nodule_rng,
            [(n.centre_mm, n.shape.diameter_mm) for n in nodules],
        )
        nodules.append(PlacedNodule(centre, pathology, shape))
    grid = acquisition.grid(phantom.z_half_extent_mm)
    return Scene(phantom, acquisition, grid, tuple(nodules)), noise_rng


def render_region(
    scene: Scene, region: IndexBox, noise_rng: np.random.Generator | None
) -> np.ndarray:
    """The image in HU (float32) on ``region``: chest and nodules, blurred, plus noise.

    The region is rendered with a halo and cropped, so its blur equals that of the whole
    volume; ``noise_rng`` None leaves the image noise-free.
    """
    halo = scene.acquisition.halo(scene.grid)
    padded = grow(region, halo)
    field = render_phantom(scene.grid, padded, scene.phantom)
    for nodule in scene.nodules:
        render_nodule(field, scene.grid, padded, nodule.centre_mm, nodule.shape)
    field = blur(field, scene.grid, scene.acquisition.blur_sigma_mm)
    nz, ny, nx = box_shape(region)
    hz, hy, hx = halo
    out = np.ascontiguousarray(field[hz:hz + nz, hy:hy + ny, hx:hx + nx])
    if noise_rng is not None:
        add_noise(out, scene.acquisition.noise_sigma_hu, noise_rng)
    return out


def nodule_truth(scene: Scene, nodule: PlacedNodule, labelled: bool) -> NoduleTruth:
    """The ground truth of one placed nodule, with its rendered volume on the scene's grid."""
    volume = rendered_volume_mm3(
        scene.grid, nodule.centre_mm, nodule.shape, scene.phantom.parenchyma_hu
    )
    return NoduleTruth(
        centre_mm=nodule.centre_mm,
        pathology=nodule.pathology,
        shape=nodule.shape,
        rendered_volume_mm3=volume,
        volume_equivalent_diameter_mm=volume_equivalent_diameter(volume),
        labelled=labelled,
    )
