"""The SD-MdaNet recipe and its ablation: which models are trained, on what, in which order.

Teacher A (MdaNet, both tasks), teacher B (main branch, invasiveness) and teacher C (main
branch, growth) learn from hard labels; their logits on the training crops become the soft
targets of the student (MdaNet) trained with the KD loss on labelled and unlabelled nodules.
For the ablation, on the same split: the plain 3-D CNN baseline, and the student trained on
the labelled nodules only (no unlabelled term). Teacher A doubles as "MdaNet without KD".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.crop_spec import CropSpec
from model.factory import create_model
from model.losses import DistillationLoss
from training import metrics
from training.augment import Augmentation
from training.datasets import NoduleSet, Split
from training.evaluate import Predictions
from training.loop import FitConfig, History, fit
from training.objectives import TASKS, Distillation, HardLabels, teacher_targets

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Role:
    """One model of the recipe."""

    name: str
    architecture: str
    tasks: tuple[str, ...]
    title: str
    distil: bool = False
    unlabelled: bool = False


ROLES: tuple[Role, ...] = (
    Role("teacher_a", "mdanet", TASKS, "Teacher A: MdaNet multitask, no KD"),
    Role("teacher_b", "mdanet_invasiveness", ("invasiveness",),
         "Teacher B: main branch, invasiveness only"),
    Role("teacher_c", "mdanet_growth", ("growth",), "Teacher C: main branch, growth only"),
    Role("student", "mdanet", TASKS, "SD-MdaNet (KD, labelled + unlabelled)", distil=True,
         unlabelled=True),
    Role("student_labelled_only", "mdanet", TASKS, "SD-MdaNet without the unlabelled term",
         distil=True),
    Role("baseline", "plain_cnn", TASKS, "Plain 3D CNN baseline"),
)
ROLE_NAMES = tuple(r.name for r in ROLES)
TEACHERS = ("teacher_a", "teacher_b", "teacher_c")


@dataclass(frozen=True)
class RecipeConfig:
    """Everything the recipe needs besides the data.

    Attributes:
        crop: the CropSpec the crops were made with (recorded in every checkpoint).
        fit: epochs, patience, batch size, learning rate, seed, threads.
        student_epochs: epochs of the two students (they see more data per epoch).
        mdanet: hyper-parameters of the MdaNet networks (teachers and students).
        baseline: hyper-parameters of the plain CNN.
        temperature, alpha, unlabelled_weight: the KD loss (model.losses.DistillationLoss).
        roles: which roles to train (teachers are trained whenever a student is asked for).
        augment: whether to augment (flips, small rotations, small HU shifts).
    """

    crop: CropSpec
    fit: FitConfig
    student_epochs: int | None = None
    mdanet: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    temperature: float = 4.0
    alpha: float = 0.5
    unlabelled_weight: float = 1.0
    roles: tuple[str, ...] = ROLE_NAMES
    augment: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.roles) - set(ROLE_NAMES)
        if unknown:
            raise ValueError(f'Argument "roles" has unknown roles {sorted(unknown)}; known: '
                             f"{', '.join(ROLE_NAMES)}.")
        DistillationLoss(self.temperature, self.alpha, self.unlabelled_weight)  # the checks

    def needed_roles(self) -> list[Role]:
        """The roles to train, in training order (teachers before students)."""
        wanted = set(self.roles)
        if wanted & {"student", "student_labelled_only"}:
            wanted |= set(TEACHERS)
        return [r for r in ROLES if r.name in wanted]


def build(role: Role, config: RecipeConfig) -> nn.Module:
    """A fresh network for ``role``."""
    cfg = config.baseline if role.architecture == "plain_cnn" else config.mdanet
    return create_model(role.architecture, **cfg)


def infer(model: nn.Module, crops: np.ndarray, batch_size: int = 64
          ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Invasiveness and growth logits of ``crops`` (N, S, S, S); None for a task the network
    does not predict."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {t: [] for t in TASKS}
    with torch.no_grad():
        for start in range(0, len(crops), batch_size):
            x = torch.from_numpy(crops[start : start + batch_size].astype(np.float32))
            out = model(x.unsqueeze(1))
            for task in TASKS:
                logits = getattr(out, task)
                if logits is not None:
                    parts[task].append(logits.numpy())
    inv, growth = (np.concatenate(parts[t]) if parts[t] else None for t in TASKS)
    return inv, growth


def _softmax(logits: np.ndarray | None) -> np.ndarray | None:
    if logits is None:
        return None
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predictions(model: nn.Module, crops: np.ndarray) -> Predictions:
    """Probabilities and proportions (softmax of the logits) of ``crops``."""
    inv, growth = infer(model, crops)
    return Predictions(_softmax(inv), _softmax(growth))


def validation_score(model: nn.Module, val: NoduleSet) -> float:
    """Early-stopping score, higher is better: invasiveness macro AUC minus 10 x proportion
    MSE, with whichever tasks the network predicts (MSE ~0.01 weighs like ~0.1 AUC)."""
    pred = predictions(model, val.crops)
    score = 0.0
    if pred.probabilities is not None and val.has_class.any():
        value = metrics.macro_auc(val.invasiveness[val.has_class],
                                  pred.probabilities[val.has_class])
        score += 0.0 if np.isnan(value) else value
    if pred.proportions is not None and val.has_proportions.any():
        score -= 10 * metrics.proportion_mse(val.proportions[val.has_proportions],
                                             pred.proportions[val.has_proportions])
    return score


def load_initial_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Copy every tensor of ``state`` whose name and shape match into ``model`` (fine-tuning
    from shipped weights; a single-task teacher takes the main branch). The count copied."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError("the initial checkpoint shares no weights with this network "
                         "(another architecture or other hyper-parameters)")
    own.update(matched)
    model.load_state_dict(own)
    return len(matched)


def train_role(role: Role, data: NoduleSet, split: Split, config: RecipeConfig, folder: Path,
               soft_targets: dict[str, np.ndarray] | None = None,
               init: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, History]:
    """Train one role on ``split.train`` (early stopping on ``split.val``)."""
    model = build(role, config)
    if init is not None:
        logger.info("%s: %d tensors from the initial checkpoint", role.name,
                    load_initial_weights(model, init))
    train_index = split.train
    if not role.unlabelled:
        labelled = _labelled_for(role, data)
        train_index = train_index[labelled[train_index]]
    extra: dict[str, np.ndarray] = {}
    objective: nn.Module
    fit_config = config.fit
    if role.distil:
        if soft_targets is None:
            raise ValueError(f"{role.name} needs the teachers' soft targets")
        objective = Distillation(DistillationLoss(config.temperature, config.alpha,
                                                  config.unlabelled_weight))
        extra = {k: v[train_index] for k, v in soft_targets.items()}
        if config.student_epochs:
            fit_config = replace(fit_config, epochs=config.student_epochs)
    else:
        objective = HardLabels(role.tasks)
    augmentation = Augmentation(config.crop) if config.augment else None
    history = fit(model, objective, data.subset(train_index), data.subset(split.val),
                  validation_score, fit_config, folder, augmentation, extra,
                  description=role.name)
    return model, history


def _labelled_for(role: Role, data: NoduleSet) -> np.ndarray:
    """Rows with the labels a hard-label role (or the labelled-only student) learns from."""
    if role.distil:
        return data.has_class & data.has_proportions
    if role.tasks == ("invasiveness",):
        return data.has_class
    if role.tasks == ("growth",):
        return data.has_proportions
    return data.labelled


def soft_targets_of(teachers: dict[str, nn.Module], data: NoduleSet) -> dict[str, np.ndarray]:
    """The teachers' logits on every nodule of ``data`` (un-augmented crops)."""
    return teacher_targets({name: infer(model, data.crops) for name, model in teachers.items()})
