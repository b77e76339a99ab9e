"""Box mode: the box around one nodule on the anisotropic grid its study would have.

For training sets of thousands of nodules only the box is rendered, with the same chest,
acquisition and nodule rules as a study; the training pipeline then passes each box through
the pipeline's crop function like a crop taken from a study. Boxes are written as int16 HU
MetaImage files (``.mha``) with their geometry, listed with their ground truth in
``boxes.csv``; the labels of an unlabelled set are blank there and kept apart in
``withheld.csv``, for evaluation only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from training.synthetic.acquisition import AcquisitionKind, to_int16
from training.synthetic.geometry import IndexBox
from training.synthetic.scene import (
    NoduleSpec,
    Scene,
    Stream,
    item_seed_sequence,
    nodule_truth,
    render_region,
    sample_scene,
)
from training.synthetic.truth import NoduleTruth

DEFAULT_BOX_MM = 64.0  #: covers the 50 mm crop field of view with room for shifts


def generate_box(
    *,
    seed: int,
    index: int,
    acquisition: AcquisitionKind | str = AcquisitionKind.STANDARD,
    labelled: bool = True,
    box_mm: float = DEFAULT_BOX_MM,
    clean: bool = False,
    nodule: NoduleSpec | None = None,
) -> tuple[sitk.Image, NoduleTruth]:
    """Box ``index`` of the labelled (or unlabelled) set ``seed``: an int16 HU image with the
    study grid's origin, spacing and direction, and the nodule's ground truth.

    ``clean`` renders without blur and noise (tests, figures); ``nodule`` forces properties
    of the nodule.
    """
    if not box_mm > 0:
        raise ValueError(f'Argument "box_mm" must be > 0, got {box_mm}.')
    stream = Stream.LABELLED_BOX if labelled else Stream.UNLABELLED_BOX
    scene, noise_rng = sample_scene(
        item_seed_sequence(seed, index, stream), acquisition, 1,
        [nodule] if nodule is not None else None,
    )
    if clean:
        scene = _without_blur(scene)
    placed = scene.nodules[0]
    region = box_around(scene, placed.centre_mm, box_mm)
    hu = render_region(scene, region, None if clean else noise_rng)
    image = sitk.GetImageFromArray(to_int16(hu))
    grid = scene.grid
    (z0, _), (y0, _), (x0, _) = region
    origin = np.asarray(grid.origin) + np.asarray((x0, y0, z0)) * np.asarray(grid.spacing)
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetSpacing(grid.spacing)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image, nodule_truth(scene, placed, labelled)


def box_around(scene: Scene, centre_mm: tuple[float, float, float], box_mm: float) -> IndexBox:
    """The index box of about ``box_mm`` per side centred on the voxel nearest ``centre_mm``."""
    grid = scene.grid
    centre = grid.index_of(centre_mm)
    sizes = [max(1, round(box_mm / grid.spacing[axis])) for axis in (2, 1, 0)]
    return tuple((c - n // 2, c - n // 2 + n) for c, n in zip(centre, sizes, strict=True))  # type: ignore[return-value]


def _without_blur(scene: Scene) -> Scene:
    quiet = replace(scene.acquisition, blur_sigma_mm=0.0, noise_sigma_hu=0.0)
    return replace(scene, acquisition=quiet)


def write_box(out_dir: Path, name: str, image: sitk.Image) -> Path:
    """Write one box as ``<out_dir>/<name>.mha`` (uncompressed: boxes are read often)."""
    path = out_dir / f"{name}.mha"
    sitk.WriteImage(image, str(path), useCompression=False)
    return path


def box_name(index: int, labelled: bool) -> str:
    return f"{'box' if labelled else 'unlabelled'}_{index:06d}"

