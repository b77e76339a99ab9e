"""One training loop for every model of the recipe: seeds, augmentation, early stopping,
resumable state, a progress bar, a CSV log and a training-curve PNG per model.

What a model learns is the ``objective``'s business (recipe.py); the loop only feeds batches,
steps the optimiser and keeps the best weights by the validation ``score``.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from tqdm import tqdm

from training.augment import Augmentation
from training.datasets import NoduleSet

logger = logging.getLogger(__name__)

Batch = dict[str, Tensor]
#: ``objective(model, batch) -> (loss, parts)``; an ``nn.Module`` so that learnable loss
#: weights (uncertainty weighting) are optimised and saved with the model.
Objective = nn.Module
#: ``score(model, val_set) -> float``, higher is better; drives early stopping.
Score = Callable[[nn.Module, NoduleSet], float]


@dataclass(frozen=True)
class FitConfig:
    """How long and how a model trains.

    Attributes:
        epochs: the most passes over the training set.
        patience: stop after this many epochs without a better validation score.
        batch_size: crops per optimiser step.
        lr: peak learning rate of AdamW (cosine decay over ``epochs``).
        weight_decay: AdamW weight decay.
        seed: seeds Python, numpy and torch; the same seed and data give the same model.
        threads: torch CPU threads (``None``: torch's default).
    """

    epochs: int = 10
    patience: int = 3
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f'Argument "{name}" must be >= 1, got {getattr(self, name)}.')
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError('Arguments "lr" must be > 0 and "weight_decay" >= 0.')


@dataclass
class History:
    """Per-epoch records of one fit (also written to ``log.csv``)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    stopped_early: bool = False


def seed_everything(seed: int) -> torch.Generator:
    """Seed every random source training uses; return the generator for augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def batches(data: NoduleSet, extra: Mapping[str, np.ndarray], index: np.ndarray,
            batch_size: int) -> list[Batch]:
    """Tensors of the nodules at ``index`` in batches of ``batch_size``: crops (N, 1, S, S, S),
    labels, and the ``extra`` per-nodule arrays (teacher targets) under their names."""
    out = []
    for start in range(0, len(index), batch_size):
        part = index[start : start + batch_size]
        batch = {
            "crops": torch.from_numpy(data.crops[part].astype(np.float32)).unsqueeze(1),
            "invasiveness": torch.from_numpy(data.invasiveness[part].astype(np.int64)),
            "proportions": torch.from_numpy(data.proportions[part].astype(np.float32)),
        }
        batch.update({k: torch.from_numpy(np.asarray(v[part], dtype=np.float32))
                      for k, v in extra.items()})
        out.append(batch)
    return out


def fit(
    model: nn.Module,
    objective: Objective,
    train_set: NoduleSet,
    val_set: NoduleSet,
    score: Score,
    config: FitConfig,
    folder: Path,
    augmentation: Augmentation | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    description: str = "",
) -> History:
    """Train ``model`` in place and leave it holding the weights of its best epoch.

    ``folder`` receives ``state.pt`` (everything needed to resume after an interruption; a
    later call with the same folder continues from it), ``best.pt`` (the best weights),
    ``log.csv`` and ``curves.png``.
    """
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError("training and validation sets must not be empty")
    folder.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    generator = seed_everything(config.seed)
    params = [*model.parameters(), *objective.parameters()]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    history = History()
    start = _resume(folder, config, model, objective, optimiser, schedule, history, generator)
    order_rng = np.random.default_rng(config.seed)
    for _ in range(start):
        order_rng.permutation(len(train_set))
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        loss, parts = _train_epoch(model, objective, train_set, extra or {},
                                   order_rng.permutation(len(train_set)), optimiser, config,
                                   augmentation, generator, f"{description} {epoch + 1}")
        schedule.step()
        model.eval()
        with torch.no_grad():
            value = float(score(model, val_set))
        row = {"epoch": epoch + 1, "train_loss": loss, "val_score": value,
               "lr": optimiser.param_groups[0]["lr"],
               "seconds": time.perf_counter() - began, **parts}
        history.rows.append(row)
        if value > history.best_score:
            history.best_score, history.best_epoch = value, epoch + 1
            torch.save({"model": model.state_dict(), "objective": objective.state_dict()},
                        folder / "best.pt")
        _save_state(folder, config, model, objective, optimiser, schedule, history, generator)
        _write_log(folder, history)
        logger.info("%s epoch %d: loss %.4f, val score %.4f", description, epoch + 1, loss, value)
        if epoch + 1 - history.best_epoch >= config.patience:
            history.stopped_early = epoch + 1 < config.epochs
            break
    best = torch.load(folder / "best.pt", weights_only=True)
    model.load_state_dict(best["model"])
    objective.load_state_dict(best["objective"])
    model.eval()
    plot_curves(history, folder / "curves.png", description)
    return history


def _train_epoch(
    model: nn.Module, objective: Objective, data: NoduleSet, extra: Mapping[str, np.ndarray],
    order: np.ndarray, optimiser: torch.optim.Optimizer, config: FitConfig,
    augmentation: Augmentation | None, generator: torch.Generator, label: str,
) -> tuple[float, dict[str, float]]:
    model.train()
    objective.train()
    total, count = 0.0, 0
    sums: dict[str, float] = {}
    progress = tqdm(batches(data, extra, order, config.batch_size), desc=label, unit="batch",
                    leave=False, disable=None)
    for batch in progress:
        if augmentation is not None:
            batch["crops"] = augmentation(batch["crops"], generator)
        loss, parts = objective(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{label}: the loss is {loss.item()}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        n = batch["crops"].shape[0]
        total += loss.item() * n
        count += n
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
        progress.set_postfix(loss=f"{total / count:.3f}")
    return total / count, {k: v / count for k, v in sums.items()}


def _save_state(folder: Path, config: FitConfig, model: nn.Module, objective: Objective,
                optimiser: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
                history: History, generator: torch.Generator) -> None:
    state = {
        "config": asdict(config), "model": model.state_dict(), "objective": objective.state_dict(),
        "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
        "history": asdict(history), "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    partial = folder / "state.pt.tmp"
    torch.save(state, partial)
    partial.replace(folder / "state.pt")


def _resume(folder: Path, config: FitConfig, model: nn.Module, objective: Objective,
            optimiser: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
            history: History, generator: torch.Generator) -> int:
    """Load ``state.pt`` if a previous fit with the same config left one; the next epoch."""
    path = folder / "state.pt"
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=False)
    if state["config"] != asdict(config):
        raise ValueError(f"{folder} holds a run with another configuration; use a new folder")
    model.load_state_dict(state["model"])
    objective.load_state_dict(state["objective"])
    optimiser.load_state_dict(state["optimiser"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    history.rows = state["history"]["rows"]
    history.best_epoch = state["history"]["best_epoch"]
    history.best_score = state["history"]["best_score"]
    done = len(history.rows)
    if done and done - history.best_epoch >= config.patience:
        return config.epochs  # it had stopped early: nothing left to do
    logger.info("resuming %s after epoch %d", folder, done)
    return done


def _write_log(folder: Path, history: History) -> None:
    names = list(dict.fromkeys(k for row in history.rows for k in row))
    with (folder / "log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(history.rows)


def plot_curves(history: History, path: Path, title: str) -> None:
    """Training loss and validation score against the epoch."""
    if not history.rows:
        return
    epochs = [r["epoch"] for r in history.rows]
    fig = Figure(figsize=(8, 3.2))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [r["train_loss"] for r in history.rows], marker="o")
    left.set(xlabel="epoch", ylabel="training loss")
    right.plot(epochs, [r["val_score"] for r in history.rows], marker="o", color="C1")
    right.axvline(history.best_epoch, color="grey", linestyle=":")
    right.set(xlabel="epoch", ylabel="validation score")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
