"""A PNG mosaic of rendered nodules per class with their labels, for people to look at.

Each tile is the axial slice through a nodule's centre, cut from a box made by the usual box
mode with the nodule's class forced (the rest of its pathology drawn given the class), in a
lung window, with its labels written above it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.figure import Figure

from model.pathology import INVASIVENESS, PATTERNS, Invasiveness
from training.synthetic.acquisition import AcquisitionKind, acquisition_kind
from training.synthetic.boxes import generate_box
from training.synthetic.cohort import parallel_map
from training.synthetic.pathology import NodulePathology, sample_pathology
from training.synthetic.scene import NoduleSpec
from training.synthetic.truth import NoduleTruth

PREVIEW_FILE = "synth-preview.png"
TILE_MM = 44.0
WINDOW_HU = (-1000.0, 200.0)
_SHORT = {"lepidic": "lep", "acinar": "aci", "papillary": "pap", "micropapillary": "mpp",
          "solid": "sol", "cribriform": "cri", "complex_glandular": "cgl"}


def pathology_of_class(invasiveness: Invasiveness, seed: int, index: int) -> NodulePathology:
    """A pathology drawn from the sampler given its class (rejection: the conditional law)."""
    entropy = np.random.SeedSequence([seed, index, INVASIVENESS.index(invasiveness)])
    rng = np.random.default_rng(entropy)
    while True:
        pathology = sample_pathology(rng)
        if pathology.invasiveness is invasiveness:
            return pathology


def _tile(index: int, *, seed: int, per_class: int, acquisition: str
          ) -> tuple[np.ndarray, NoduleTruth]:
    invasiveness = INVASIVENESS[index // per_class]
    pathology = pathology_of_class(invasiveness, seed, index)
    image, truth = generate_box(seed=seed, index=index, acquisition=acquisition,
                                nodule=NoduleSpec(pathology), box_mm=TILE_MM)
    k = image.TransformPhysicalPointToIndex(truth.centre_mm)[2]
    pixels = sitk.GetArrayFromImage(image)[k]
    return pixels, truth


def _caption(truth: NoduleTruth) -> str:
    p = truth.pathology
    shares = sorted((-v, i) for i, v in enumerate(p.proportions) if v)
    patterns = " ".join(f"{_SHORT[PATTERNS[i].value]} {-v}" for v, i in shares[:3])
    grade = f" {p.grade.value}" if p.grade.value != "NA" else ""
    return (f"{p.invasiveness.value}{grade}, D {truth.diameter_mm:.0f} mm"
            f"{f', core {truth.core_diameter_mm:.1f}' if truth.core_diameter_mm else ''}\n"
            f"{patterns}")


def render_preview(
    out: Path,
    *,
    per_class: int,
    seed: int,
    acquisition: AcquisitionKind | str = AcquisitionKind.STANDARD,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write ``out/synth-preview.png``: one row per class, ``per_class`` nodules each."""
    if per_class < 1:
        raise ValueError(f'Argument "per_class" must be >= 1, got {per_class}.')
    out.mkdir(parents=True, exist_ok=True)
    job = partial(_tile, seed=seed, per_class=per_class,
                  acquisition=str(acquisition_kind(acquisition)))
    tiles = parallel_map(job, per_class * len(INVASIVENESS), workers,
                         "preview" if progress else None)
    # a bare Figure renders with the Agg canvas: no pyplot, no global backend state
    figure = Figure(figsize=(2.3 * per_class, 2.7 * len(INVASIVENESS)))
    axes = figure.subplots(len(INVASIVENESS), per_class, squeeze=False)
    for (pixels, truth), axis in zip(tiles, axes.ravel(), strict=True):
        axis.imshow(pixels, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1],
                    interpolation="nearest")
        axis.set_title(_caption(truth), fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    for row, invasiveness in zip(axes, INVASIVENESS, strict=True):
        row[0].set_ylabel(invasiveness.value, fontsize=12, fontweight="bold")
    figure.suptitle(f"Synthetic nodules ({acquisition_kind(acquisition).value} acquisition, "
                    f"seed {seed}): axial slice through the centre, window "
                    f"[{WINDOW_HU[0]:.0f}, {WINDOW_HU[1]:.0f}] HU, {TILE_MM:.0f} mm field",
                    fontsize=10)
    figure.tight_layout()
    path = out / PREVIEW_FILE
    figure.savefig(path, dpi=90, metadata={"Software": None})
    return path
