"""Training and serving crop nodules with one function and the checkpoint's CropSpec.

The crop function is spied on while (a) the training data path crops synthetic boxes and
(b) the worker's analysis crops the nodules it found in a stored study. Both must reach the
same function, ``pipeline.crop.crop``, with the CropSpec recorded in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from sqlalchemy import Engine

import pipeline.crop
import training.sources
from bench.synthetic_studies import study
from model.checkpoint import load_checkpoint
from model.crop_spec import CropSpec
from model.predictor import Predictor
from pipeline.analysis import analyze_study
from tests.db.databases import backend, db_url, engine, postgres_schemas, sqlite_template
from tests.integration.orchestration import tiny_checkpoint
from tests.pipeline.test_analysis import config, queued_study

__all__ = ["backend", "db_url", "engine", "postgres_schemas", "sqlite_template", "tiny_checkpoint"]


@pytest.fixture
def crop_calls(monkeypatch: pytest.MonkeyPatch) -> list[CropSpec]:
    """Every CropSpec the one crop function is called with, from training or serving."""
    # training imports the function itself: it must be the very same object
    assert training.sources.crop is pipeline.crop.crop
    original = pipeline.crop.crop
    calls: list[CropSpec] = []

    def spy(volume: sitk.Image, centre_mm: Sequence[float], spec: CropSpec) -> np.ndarray:
        calls.append(spec)
        return original(volume, centre_mm, spec)

    monkeypatch.setattr(pipeline.crop, "crop", spy)
    monkeypatch.setattr(training.sources, "crop", spy)
    return calls


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_training_and_serving_crop_with_the_checkpoints_spec(
    crop_calls: list[CropSpec], tiny_checkpoint: Path, engine: Engine, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    spec = load_checkpoint(tiny_checkpoint).checkpoint.crop_spec
    assert spec != CropSpec()  # the fixture's spec differs from the default: no accident

    # training: synthetic boxes through the training data path, in this process
    boxes = training.sources.synthetic_set(seed=5, count=2, spec=spec, workers=1)
    assert boxes.crops.shape == (2, spec.size, spec.size, spec.size)
    assert crop_calls == [spec, spec]
    crop_calls.clear()

    # serving: the worker's analysis of a stored synthetic study
    folder, _ = study(tmp_path_factory.mktemp("studies"), 1, "fast")
    datasets = [pydicom.dcmread(p) for p in sorted(Path(folder).rglob("*.dcm"))]
    store = tmp_path / "store"
    study_id = queued_study(engine, store, datasets)
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    outcome = analyze_study(engine, config(store), predictor, study_id=study_id, revision=1,
                            task_id="t-1", host="test-host")
    assert outcome.state == "DONE", outcome.reason
    assert crop_calls and set(crop_calls) == {predictor.crop_spec} == {spec}
