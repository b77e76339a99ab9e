"""The fixed set of synthetic studies the imaging benches and tests run on.

Study ``i`` of ``SEED``: three nodules, and in every other study the first one forced to a
pure ground-glass (AIS, lepidic 100) nodule of 5-10 mm, the hardest kind to detect. Studies
are generated once into a cache folder named after a digest of the generator's source, so a
change to the generator makes new studies instead of reusing stale ones.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

import training.synthetic
from training.synthetic.pathology import NodulePathology
from training.synthetic.scene import NoduleSpec
from training.synthetic.study import TRUTH_FILE, generate_study

SEED = 2026
PURE_GGO = NodulePathology("AIS", (100, 0, 0, 0, 0, 0, 0))


def nodule_specs(index: int) -> list[NoduleSpec]:
    """The forced nodules of study ``index``: a small pure ground-glass one every other study."""
    if index % 2:
        return [NoduleSpec(), NoduleSpec(), NoduleSpec()]
    diameter = 5.0 + (index // 2 % 6)  # 5..10 mm
    return [NoduleSpec(PURE_GGO, diameter), NoduleSpec(), NoduleSpec()]


@cache
def generator_digest() -> str:
    """12 hex digits of SHA-256 over the generator's Python sources."""
    digest = hashlib.sha256()
    for path in sorted(Path(training.synthetic.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def study(root: Path, index: int, acquisition: str = "standard",
          nodules: int | None = None) -> tuple[Path, dict[str, Any]]:
    """The folder and truth (truth.json as a dict) of study ``index``, generated on first use.

    ``nodules`` None: the forced set of ``nodule_specs``; a number: that many drawn nodules.
    """
    count = "" if nodules is None else f"-n{nodules}"
    folder = root / f"{acquisition}-{SEED}-{index:03d}{count}-{generator_digest()}"
    if not (folder / TRUTH_FILE).is_file():
        specs = nodule_specs(index) if nodules is None else [NoduleSpec() for _ in range(nodules)]
        generate_study(folder, seed=SEED, index=index, acquisition=acquisition, nodules=specs)
    truth: dict[str, Any] = json.loads((folder / TRUTH_FILE).read_text())
    return folder, truth


def resampled(source: Path, slices: int, target: Path) -> Path:
    """The series in ``source`` as ``slices`` images over the same extent (each the nearest
    source image), written once into ``target``: a study of a chosen length with the same
    anatomy, e.g. 300 or 600 images from a 220-280 image synthetic series."""
    if len(list(target.glob("*.dcm"))) == slices:
        return target
    images = [pydicom.dcmread(p) for p in sorted(source.glob("*.dcm"))]
    images.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    first = np.array(images[0].ImagePositionPatient, dtype=float)
    step = (np.array(images[-1].ImagePositionPatient, dtype=float) - first) / (slices - 1)
    target.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for k in range(slices):
        ds = images[round(k * (len(images) - 1) / (slices - 1))]
        ds.SeriesInstanceUID = series_uid
        ds.ImagePositionPatient = [float(v) for v in first + k * step]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(target / f"{k:04d}.dcm", enforce_file_format=True)
    return target
