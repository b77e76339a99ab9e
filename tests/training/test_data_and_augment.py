"""Data sets, patient-level splits, the crop cache and physics-respecting augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.crop_spec import CropSpec
from training.augment import Augmentation
from training.datasets import UNLABELLED, CropCache, NoduleSet, encode_labels, patient_folds, split


def _set(n: int = 12) -> NoduleSet:
    labels = [encode_labels("IAC" if i % 2 else None, None) for i in range(n)]
    return NoduleSet(np.zeros((n, 4, 4, 4), np.float16), np.array([c for c, _ in labels]),
                     np.stack([p for _, p in labels]), np.array([f"p{i // 2}" for i in range(n)]),
                     np.array([str(i) for i in range(n)]), np.full(n, -1))


def test_labels_encode_unlabelled_as_markers() -> None:
    data = _set()
    assert data.invasiveness[0] == UNLABELLED and data.invasiveness[1] == 2
    assert not data.has_proportions.any()
    assert data.labelled.tolist() == [i % 2 == 1 for i in range(12)]


def test_folds_keep_patients_together_and_respect_assigned_folds() -> None:
    patients = np.array(["a", "a", "b", "c", "c", "d", "e", "f"])
    assigned = np.array([-1, 3, -1, -1, -1, -1, -1, -1])
    folds = patient_folds(patients, 4, seed=1, assigned=assigned)
    assert folds[0] == folds[1] == 3 and folds[3] == folds[4]
    assert set(folds.tolist()) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="assigned to folds"):
        patient_folds(patients, 4, 1, assigned=np.array([0, 1, -1, -1, -1, -1, -1, -1]))


def test_split_parts_share_no_patient() -> None:
    patients = np.array([f"p{i // 3}" for i in range(60)])
    folds = patient_folds(patients, 4, seed=0)
    parts = split(folds, patients, test_fold=0, val_fraction=0.2, seed=0)
    sets = [set(patients[getattr(parts, k)]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(len(getattr(parts, k)) for k in ("train", "val", "test")) == 60


def test_crop_cache_key_follows_series_centre_and_spec_version(tmp_path: Path) -> None:
    spec = CropSpec()
    key = CropCache.key("s", (1.0, 2.0, 3.0), spec)
    assert key == CropCache.key("s", (1.0001, 2.0, 3.0), spec)
    assert key != CropCache.key("s", (1.1, 2.0, 3.0), spec)
    assert key != CropCache.key("t", (1.0, 2.0, 3.0), spec)
    assert key != CropCache.key("s", (1.0, 2.0, 3.0), CropSpec(version="2"))
    cache = CropCache(tmp_path)
    calls = []

    def make() -> np.ndarray:
        calls.append(1)
        return np.full((2, 2, 2), 0.5, np.float32)

    assert cache.get(key, make).dtype == np.float16
    assert cache.get(key, make)[0, 0, 0] == 0.5 and len(calls) == 1


def test_augmentation_never_moves_ground_glass_towards_solid() -> None:
    spec = CropSpec(size=16)
    low, high = spec.hu_window
    ggo = (-600 - low) / (high - low)
    crops = torch.full((8, 1, 16, 16, 16), ggo)
    out = Augmentation(spec)(crops, torch.Generator().manual_seed(0))
    shift_hu = (out - ggo) * (high - low)
    assert shift_hu.abs().max() <= 25.0 + 1e-3  # at most the clipped density shift
    assert torch.allclose(out.amin(dim=(1, 2, 3, 4)), out.amax(dim=(1, 2, 3, 4)))


def test_augmentation_keeps_the_crop_and_is_seeded() -> None:
    spec = CropSpec(size=16)
    crops = torch.rand(4, 1, 16, 16, 16)
    first = Augmentation(spec, hu_shift_sd=0)(crops, torch.Generator().manual_seed(3))
    again = Augmentation(spec, hu_shift_sd=0)(crops, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == crops.shape
    flips_only = Augmentation(spec, max_rotation_deg=0, hu_shift_sd=0)(
        crops, torch.Generator().manual_seed(3))
    assert torch.allclose(flips_only.sort(dim=-1).values.sum(), crops.sort(dim=-1).values.sum())
    with pytest.raises(ValueError, match="max_rotation_deg"):
        Augmentation(spec, max_rotation_deg=90)
