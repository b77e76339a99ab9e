"""Nodule data sets in memory, the crop cache, and patient-level splits.

A ``NoduleSet`` holds crops made by the pipeline's one crop function (``pipeline.crop.crop``)
with the labels of both tasks; missing labels are marked (-1 class, NaN proportions) so that
one array serves labelled and unlabelled nodules alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.crop_spec import CropSpec
from model.pathology import INVASIVENESS, PATTERNS, Invasiveness

UNLABELLED = -1


@dataclass(frozen=True)
class NoduleSet:
    """Crops (N, S, S, S) float16 in [0, 1] and per-nodule labels and identities.

    ``invasiveness`` holds class indices (``UNLABELLED`` when unknown), ``proportions``
    fractions (a NaN row when unknown), ``folds`` the fold a manifest assigned (-1: none).
    """

    crops: np.ndarray
    invasiveness: np.ndarray
    proportions: np.ndarray
    patient_ids: np.ndarray
    nodule_ids: np.ndarray
    folds: np.ndarray

    def __post_init__(self) -> None:
        n = self.crops.shape[0]
        for name in ("invasiveness", "proportions", "patient_ids", "nodule_ids", "folds"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f'Argument "{name}" must have {n} rows like "crops".')
        if self.proportions.ndim != 2 or self.proportions.shape[1] != len(PATTERNS):
            raise ValueError(f'Argument "proportions" must be (N, {len(PATTERNS)}).')

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    @property
    def has_class(self) -> np.ndarray:
        """Which nodules carry an invasiveness label."""
        return np.asarray(self.invasiveness != UNLABELLED)

    @property
    def has_proportions(self) -> np.ndarray:
        """Which nodules carry growth-pattern proportions."""
        return ~np.isnan(self.proportions).any(axis=1)

    @property
    def labelled(self) -> np.ndarray:
        """Which nodules carry any label."""
        return self.has_class | self.has_proportions

    def subset(self, index: np.ndarray) -> NoduleSet:
        """The nodules at ``index`` (integer indices or a boolean mask)."""
        return NoduleSet(*(getattr(self, f)[index] for f in (
            "crops", "invasiveness", "proportions", "patient_ids", "nodule_ids", "folds")))

    @classmethod
    def concatenate(cls, parts: Sequence[NoduleSet]) -> NoduleSet:
        """One set holding the nodules of ``parts`` in order."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "crops", "invasiveness", "proportions", "patient_ids", "nodule_ids", "folds")))


def encode_labels(
    invasiveness: Invasiveness | str | None, proportions: Sequence[float] | None
) -> tuple[int, np.ndarray]:
    """The array form of one nodule's labels; ``proportions`` are fractions (0-1)."""
    label = UNLABELLED if invasiveness is None else INVASIVENESS.index(Invasiveness(invasiveness))
    props = np.full(len(PATTERNS), np.nan, dtype=np.float32)
    if proportions is not None:
        props[:] = np.asarray(proportions, dtype=np.float32)
    return label, props


class CropCache:
    """Crops on disk keyed by (series, nodule centre, CropSpec): a second run of the same
    manifest skips decoding the series. The CropSpec's ``version`` is in the key, so a change
    of the crop function invalidates old entries."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(series: str, centre_mm: Sequence[float], spec: CropSpec) -> str:
        """A stable digest of what determines a crop."""
        text = json.dumps({
            "series": series,
            "centre_mm": [round(float(c), 3) for c in centre_mm],
            "spec": spec.to_dict(),
        }, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached crop for ``key``, made (and stored atomically) on a miss."""
        path = self.folder / f"{key}.npy"
        if path.is_file():
            return np.load(path)
        crop = make().astype(np.float16)
        partial = path.with_suffix(".tmp.npy")
        np.save(partial, crop)
        partial.replace(path)
        return crop


@dataclass(frozen=True)
class Split:
    """Indices of one patient-level split: no patient is in two of the three parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def patient_folds(patient_ids: np.ndarray, k: int, seed: int,
                  assigned: np.ndarray | None = None) -> np.ndarray:
    """The fold (0..k-1) of every nodule, the same for all nodules of one patient.

    Folds a manifest assigned (>= 0 in ``assigned``) are kept; the other patients are shuffled
    with ``seed`` and dealt round-robin, so folds differ in size by at most one patient.
    """
    if k < 2:
        raise ValueError(f'Argument "k" must be >= 2, got {k}.')
    folds = np.full(len(patient_ids), -1, dtype=np.int64)
    if assigned is not None:
        for patient in np.unique(patient_ids):
            given = set(assigned[patient_ids == patient].tolist()) - {-1}
            if len(given) > 1:
                raise ValueError(f"patient {patient!r} is assigned to folds {sorted(given)}")
            if given:
                fold = given.pop()
                if fold >= k:
                    raise ValueError(f"patient {patient!r} has fold {fold}, need < {k}")
                folds[patient_ids == patient] = fold
    free = np.unique(patient_ids[folds < 0])
    np.random.default_rng(seed).shuffle(free)
    for i, patient in enumerate(free):
        folds[patient_ids == patient] = i % k
    return folds


def split(folds: np.ndarray, patient_ids: np.ndarray, test_fold: int, val_fraction: float,
          seed: int) -> Split:
    """Test = ``test_fold``; of the other patients ``val_fraction`` go to validation (early
    stopping) and the rest to training."""
    if not 0 < val_fraction < 1:
        raise ValueError(f'Argument "val_fraction" must be in (0, 1), got {val_fraction}.')
    test = np.flatnonzero(folds == test_fold)
    rest = np.unique(patient_ids[folds != test_fold])
    rng = np.random.default_rng(seed + 1)
    val_patients = set(rng.choice(rest, max(1, round(len(rest) * val_fraction)),
                                  replace=False).tolist())
    in_val = np.array([p in val_patients for p in patient_ids]) & (folds != test_fold)
    train = np.flatnonzero((folds != test_fold) & ~in_val)
    return Split(train=train, val=np.flatnonzero(in_val), test=test)
