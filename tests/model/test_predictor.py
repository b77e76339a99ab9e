from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import Checkpoint, CheckpointError, IntendedUse, save_checkpoint
from model.crop_spec import CropSpec
from model.factory import create_model
from model.pathology import NodulePrediction
from model.predictor import Predictor, resolve_device
from tests.model.conftest import TINY

SIZE = 16


def _save(tmp_path: Path, name: str = "mdanet") -> tuple[Path, str]:
    model = create_model(name, **TINY)
    model.train()
    with torch.no_grad():  # a few batches so the BN statistics are not the defaults
        for _ in range(3):
            model(torch.rand(4, 1, SIZE, SIZE, SIZE))
    checkpoint = Checkpoint.of(
        model, name, crop_spec=CropSpec(spacing_mm=1.6, size=SIZE), version="0.2.0",
        intended_use=IntendedUse.RESEARCH_SYNTHETIC, training_data="test")
    path = tmp_path / f"{name}.pt"
    return path, save_checkpoint(checkpoint, path)


@pytest.fixture
def predictor(tmp_path: Path) -> Predictor:
    path, _ = _save(tmp_path)
    return Predictor.from_checkpoint(path, device="cpu", batch_size=4)


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, SIZE, SIZE, SIZE), dtype=np.float32)


def test_predicts_one_finding_per_crop(predictor: Predictor) -> None:
    findings = predictor.predict(_crops(6))
    assert len(findings) == 6
    for finding in findings:
        assert isinstance(finding, NodulePrediction)  # validates sums, steps and range
        assert sum(finding.proportions) == 100
        assert all(p % 5 == 0 for p in finding.proportions)
        assert 0 <= finding.uncertainty <= 100
    assert predictor.predict(np.zeros((0, SIZE, SIZE, SIZE), np.float32)) == []


def test_exposes_the_checkpoint_identity(tmp_path: Path) -> None:
    path, sha = _save(tmp_path)
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.sha256 == sha
    assert predictor.version == "0.2.0"
    assert predictor.intended_use is IntendedUse.RESEARCH_SYNTHETIC
    assert predictor.crop_spec == CropSpec(spacing_mm=1.6, size=SIZE)
    assert predictor.device == torch.device("cpu")


def test_deterministic_and_independent_of_batching(predictor: Predictor) -> None:
    crops = _crops(5)
    first = predictor.predict(crops)
    assert predictor.predict(crops) == first
    one_by_one = [predictor.predict(crops[i:i + 1])[0] for i in range(5)]
    for a, b in zip(first, one_by_one, strict=True):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
        assert a.uncertainty == pytest.approx(b.uncertainty, abs=1e-3)
    assert predictor.predict(torch.from_numpy(crops)) == first


def test_averages_the_flipped_views(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    crops = _crops(2)
    with_tta = Predictor.from_checkpoint(path, device="cpu").predict(crops)
    plain = Predictor.from_checkpoint(path, device="cpu", tta=False)
    views = np.concatenate([crops, crops[:, ::-1], crops[:, :, ::-1], crops[:, :, :, ::-1]])
    singles = plain.predict(np.ascontiguousarray(views))
    for i, finding in enumerate(with_tta):
        mean = np.mean([singles[i + 2 * v].probabilities for v in range(4)], axis=0)
        assert finding.probabilities == pytest.approx(tuple(mean), abs=1e-5)


@pytest.mark.parametrize(
    ("crops", "message"),
    [
        (np.zeros((2, SIZE, SIZE), np.float32), r"shaped \(N, 16, 16, 16\)"),
        (np.zeros((2, 20, 20, 20), np.float32), r"shaped \(N, 16, 16, 16\)"),
        (np.zeros((1, SIZE, SIZE, SIZE), np.int16), "floating point"),
        (np.full((1, SIZE, SIZE, SIZE), 1.5, np.float32), r"in \[0, 1\]"),
        (np.full((1, SIZE, SIZE, SIZE), np.nan, np.float32), "finite"),
        ([[0.0]], "numpy array or a tensor"),
    ],
)
def test_bad_crops_are_refused(predictor: Predictor, crops: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predictor.predict(crops)  # type: ignore[arg-type]


def test_a_single_task_checkpoint_cannot_serve(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, "mdanet_growth")
    with pytest.raises(CheckpointError, match="lacks invasiveness"):
        Predictor.from_checkpoint(path, device="cpu")


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda:0")


def test_bad_predictor_arguments(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        Predictor.from_checkpoint(path, device="cpu", batch_size=0)
