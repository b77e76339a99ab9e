"""A training run on disk: every role trained on one split, saved as checkpoints, and scored
on the held-out patients and on any extra held-out sets (robustness).

Layout of ``RUN_DIR``::

    models/<role>/          state.pt (resume), best.pt, log.csv, curves.png
    checkpoints/<role>.pt   lungpath checkpoints (model/checkpoint.py)
    sets/<set>.npz          labels and ids of each evaluation set ("test", "fast", ...)
    predictions/<set>/<role>.npz
    run.json                what was run: config, split sizes, timings

``training.report`` turns it into the ablation table and plots. A run interrupted and started
again with the same folder resumes: finished roles are loaded, the current one continues from
its last epoch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.checkpoint import Checkpoint, IntendedUse, load_checkpoint, save_checkpoint
from training.datasets import NoduleSet, Split
from training.evaluate import Predictions
from training.recipe import (
    ROLES,
    TEACHERS,
    RecipeConfig,
    Role,
    predictions,
    soft_targets_of,
    train_role,
)

logger = logging.getLogger(__name__)
MODEL_VERSION = "0.1.0"


def save_set(path: Path, data: NoduleSet) -> None:
    """The labels and ids of an evaluation set (not the crops)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, invasiveness=data.invasiveness, proportions=data.proportions,
             patient_ids=data.patient_ids, nodule_ids=data.nodule_ids)


def load_set(path: Path) -> NoduleSet:
    """An evaluation set saved by ``save_set`` (with empty crops)."""
    with np.load(path) as f:
        n = len(f["invasiveness"])
        return NoduleSet(np.zeros((n, 1, 1, 1), np.float16), f["invasiveness"],
                         f["proportions"], f["patient_ids"], f["nodule_ids"],
                         np.full(n, -1, np.int64))


def save_predictions(path: Path, pred: Predictions) -> None:
    """One model's outputs on one set; a task it lacks is stored as an empty array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    empty = np.zeros((0,), np.float32)
    np.savez(path, probabilities=empty if pred.probabilities is None else pred.probabilities,
             proportions=empty if pred.proportions is None else pred.proportions)


def load_predictions(path: Path) -> Predictions:
    with np.load(path) as f:
        probs, props = f["probabilities"], f["proportions"]
    return Predictions(probs if probs.size else None, props if props.size else None)


def run(data: NoduleSet, split: Split, config: RecipeConfig, run_dir: Path, *,
        holdouts: Mapping[str, NoduleSet] | None = None,
        init: Path | None = None,
        intended_use: IntendedUse = IntendedUse.RESEARCH_SYNTHETIC,
        training_data: str = "") -> dict[str, Any]:
    """Train the roles of ``config`` on ``split`` and score them; return ``run.json``'s
    content. ``init`` fine-tunes every role from a checkpoint's matching weights."""
    run_dir.mkdir(parents=True, exist_ok=True)
    sets = {"test": data.subset(split.test), **(holdouts or {})}
    for name, held_out in sets.items():
        save_set(run_dir / "sets" / f"{name}.npz", held_out)
    init_state = load_checkpoint(init).checkpoint.state_dict if init else None
    info: dict[str, Any] = {
        "config": _plain(asdict(config)), "init": str(init) if init else None,
        "split": {k: len(getattr(split, k)) for k in ("train", "val", "test")},
        "labelled_train": int(data.labelled[split.train].sum()),
        "sets": {k: len(v) for k, v in sets.items()}, "seconds": {},
    }
    models: dict[str, nn.Module] = {}
    soft: dict[str, np.ndarray] | None = None
    for role in config.needed_roles():
        began = time.perf_counter()
        if role.distil and soft is None:
            soft = soft_targets_of({t: models[t] for t in TEACHERS}, data)
        models[role.name] = _trained(role, data, split, config, run_dir, soft, init_state,
                                     intended_use, training_data)
        for name, held_out in sets.items():
            save_predictions(run_dir / "predictions" / name / f"{role.name}.npz",
                             predictions(models[role.name], held_out.crops))
        info["seconds"][role.name] = round(time.perf_counter() - began, 1)
        (run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _trained(role: Role, data: NoduleSet, split: Split, config: RecipeConfig, run_dir: Path,
             soft: dict[str, np.ndarray] | None, init: dict[str, torch.Tensor] | None,
             intended_use: IntendedUse, training_data: str) -> nn.Module:
    """The role's model: loaded if a finished checkpoint is there, else trained and saved."""
    path = run_dir / "checkpoints" / f"{role.name}.pt"
    if path.is_file():
        logger.info("%s: already trained (%s)", role.name, path)
        return load_checkpoint(path).checkpoint.build_model()
    model, history = train_role(role, data, split, config, run_dir / "models" / role.name,
                                soft, init)
    checkpoint = Checkpoint.of(
        model, role.architecture, crop_spec=config.crop, version=MODEL_VERSION,
        intended_use=intended_use,
        training_data=f"{training_data}; role {role.name} ({role.title})",
        metrics={"val_score": history.best_score, "best_epoch": history.best_epoch,
                 "epochs_run": len(history.rows)},
    )
    save_checkpoint(checkpoint, path)
    return model


def _plain(value: Any) -> Any:
    """JSON-able form of nested dataclass dicts (tuples as lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool | None) else str(value)


def role(name: str) -> Role:
    """The role called ``name``."""
    for candidate in ROLES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown role {name!r}")

