"""The training loop: seeded, resumable, early stopping, logs and curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.factory import create_model
from training.datasets import NoduleSet
from training.loop import FitConfig, fit
from training.objectives import HardLabels
from training.recipe import validation_score

TINY = {"stem_channels": 4, "block_layers": [1, 1], "growth": 4, "bottleneck": 1,
        "embedding_dim": 4}


def _data(n: int = 12) -> NoduleSet:
    rng = np.random.default_rng(0)
    classes = np.arange(n) % 3
    crops = (rng.random((n, 8, 8, 8)) * 0.2 + classes[:, None, None, None] * 0.3)
    props = rng.dirichlet(np.ones(7), n).astype(np.float32)
    return NoduleSet(crops.astype(np.float16), classes, props,
                     np.array([f"p{i}" for i in range(n)]), np.array([str(i) for i in range(n)]),
                     np.full(n, -1))


class Interrupt(Exception):
    pass


def _fit(folder: Path, epochs: int, stop_after: int | None = None) -> torch.nn.Module:
    """Fit the tiny net; with ``stop_after``, die when that many epochs are done."""
    torch.manual_seed(0)
    model = create_model("mdanet", **TINY)
    data = _data()
    calls = []

    def score(model: torch.nn.Module, val: NoduleSet) -> float:
        calls.append(1)
        if stop_after is not None and len(calls) > stop_after:
            raise Interrupt
        return validation_score(model, val)

    fit(model, HardLabels(("invasiveness", "growth")), data, data, score,
        FitConfig(epochs=epochs, patience=5, batch_size=4, seed=1, threads=1), folder)
    return model


def test_an_interrupted_fit_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight = _fit(tmp_path / "straight", 2)
    with pytest.raises(Interrupt):
        _fit(tmp_path / "resumed", 2, stop_after=1)
    resumed = _fit(tmp_path / "resumed", 2)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    log = (tmp_path / "resumed" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and (tmp_path / "resumed" / "curves.png").is_file()


def test_a_folder_of_another_configuration_is_refused(tmp_path: Path) -> None:
    _fit(tmp_path, 1)
    with pytest.raises(ValueError, match="another configuration"):
        _fit(tmp_path, 2)


def test_fit_config_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match='"epochs"'):
        FitConfig(epochs=0)
    with pytest.raises(ValueError, match='"lr"'):
        FitConfig(lr=0)
