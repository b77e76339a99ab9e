"""What each model of the recipe minimises, built from ``model.losses``.

- ``HardLabels``: the hard-label loss of the tasks a network learns (teachers, the
  baseline): cross-entropy on the nodules with an invasiveness label, the growth blend on
  those with proportions, and for two tasks the uncertainty weighting of both.
- ``Distillation``: the student's KD loss against the teachers' soft targets on labelled and
  unlabelled nodules, its two task terms combined by uncertainty weighting.
Teacher outputs are computed once on the un-augmented crops and travel in the batch under
``TEACHER_KEYS`` (augmentation preserves labels, so the soft targets stay valid).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from model.losses import (
    DistillationLoss,
    Targets,
    UncertaintyWeighting,
    growth_loss,
    invasiveness_loss,
)
from model.outputs import ModelOutput

TASKS = ("invasiveness", "growth")
#: batch key of each teacher's logits: (teacher, task) -> key
TEACHER_KEYS = {
    ("teacher_a", "invasiveness"): "teacher_a_invasiveness",
    ("teacher_a", "growth"): "teacher_a_growth",
    ("teacher_b", "invasiveness"): "teacher_b_invasiveness",
    ("teacher_c", "growth"): "teacher_c_growth",
}


def _masks(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Which rows have an invasiveness label, which have proportions."""
    return batch["invasiveness"] >= 0, ~torch.isnan(batch["proportions"]).any(dim=1)


class HardLabels(nn.Module):
    """Hard-label loss over ``tasks`` (one or both of ``TASKS``)."""

    def __init__(self, tasks: tuple[str, ...]) -> None:
        super().__init__()
        if not tasks or set(tasks) - set(TASKS):
            raise ValueError(f'Argument "tasks" must be a non-empty subset of {TASKS}, got '
                             f"{tasks!r}.")
        self.tasks = tasks
        self.weighting = UncertaintyWeighting(len(tasks)) if len(tasks) > 1 else None

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str,
                                                                                      float]]:
        out: ModelOutput = model(batch["crops"])
        has_class, has_props = _masks(batch)
        losses = []
        for task in self.tasks:
            logits = getattr(out, task)
            if logits is None:
                raise ValueError(f"the network does not predict {task}")
            if task == "invasiveness":
                loss = (invasiveness_loss(logits[has_class], batch["invasiveness"][has_class])
                        if bool(has_class.any()) else logits.sum() * 0)
            else:
                loss = (growth_loss(logits[has_props], batch["proportions"][has_props])
                        if bool(has_props.any()) else logits.sum() * 0)
            losses.append(loss)
        total = self.weighting(losses) if self.weighting is not None else losses[0]
        return total, {f"loss_{t}": v.item() for t, v in zip(self.tasks, losses, strict=True)}


class Distillation(nn.Module):
    """The student's KD loss (``model.losses.DistillationLoss``) with uncertainty-weighted
    tasks. A nodule counts as labelled when it has both labels; others get soft targets only.
    """

    def __init__(self, loss: DistillationLoss) -> None:
        super().__init__()
        if loss.triplet_weight:
            raise ValueError("the triplet term is not used by this recipe (triplet_weight 0)")
        self.loss = loss
        self.weighting = UncertaintyWeighting(2)

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str,
                                                                                      float]]:
        out: ModelOutput = model(batch["crops"])
        has_class, has_props = _masks(batch)
        labelled = has_class & has_props
        fractions = torch.where(labelled[:, None], batch["proportions"],
                                torch.full_like(batch["proportions"], 1 / 7))
        targets = Targets(batch["invasiveness"].clamp(min=0), fractions.nan_to_num(1 / 7),
                          labelled)
        teachers = [
            ModelOutput(batch["teacher_a_invasiveness"], batch["teacher_a_growth"], None),
            ModelOutput(batch["teacher_b_invasiveness"], None, None),
            ModelOutput(None, batch["teacher_c_growth"], None),
        ]
        terms = self.loss(out, teachers, targets)
        total = self.weighting([terms.invasiveness, terms.growth])
        return total, {"loss_invasiveness": terms.invasiveness.item(),
                       "loss_growth": terms.growth.item(),
                       "labelled_share": float(labelled.float().mean())}


def teacher_targets(outputs: dict[str, tuple[np.ndarray | None, np.ndarray | None]]
                    ) -> dict[str, np.ndarray]:
    """The batch arrays of ``TEACHER_KEYS`` from each teacher's (invasiveness, growth)
    logits over the training set."""
    targets = {}
    for (teacher, task), key in TEACHER_KEYS.items():
        logits = outputs[teacher][TASKS.index(task)]
        if logits is None:
            raise ValueError(f"{teacher} has no {task} output")
        targets[key] = logits
    return targets
