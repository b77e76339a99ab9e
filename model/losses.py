"""SD-MdaNet's losses, each with its formula (docs/model.md explains the choices).

Notation: N samples; z logits; p = softmax(z); y the true class; f the true growth fractions
(7 values summing to 1); T the distillation temperature; m_i = 1 for a labelled sample.

- ``invasiveness_loss``  CE = sum_i w_{y_i} (-log p_{i,y_i}) / sum_i w_{y_i}  (w = 1 without
  class weights).
- ``growth_loss`` (the blend)  L = a * MSE(p, f) + b * MSE(q(p), f) + c * CE(z, argmax f)
  + d * H(f, p), with MSE(u, v) = mean over samples and patterns of (u - v)^2, q(p) =
  round(20 p) / 20 the 5 % quantisation of the authors' prototype, its gradient passed straight
  through (q acts as the identity in the backward pass), and H(f, p) = -sum_k f_k log p_k the
  cross-entropy of the predicted mix against the true one (mean over samples).
- ``UncertaintyWeighting``  L = sum_t exp(-s_t) L_t + s_t, s_t = log sigma_t^2 learned
  (Kendall, Gal & Cipolla 2018, in the form of their reference code).
- ``soft_kl``  T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T)), per sample.
- ``DistillationLoss``  per task k:
  L_k = (1/N) sum_i [ m_i ((1 - alpha) H_ik + alpha S_ik) + (1 - m_i) beta S_ik ],
  H_ik the hard-label loss of task k for sample i, S_ik the mean over the teachers that know
  task k of their ``soft_kl``; plus gamma * the triplet term on the unlabelled samples.
- ``triplet_loss``  mean_i max(0, |a_i - p_i|^2 - |a_i - n_i|^2 + margin).

Every function checks shapes and arguments and raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.outputs import ModelOutput
from model.pathology import INVASIVENESS, PATTERNS, PROPORTION_STEP

N_CLASSES = len(INVASIVENESS)
N_PATTERNS = len(PATTERNS)
QUANTUM = PROPORTION_STEP / 100


def _check_logits(name: str, logits: Tensor, classes: int) -> None:
    if logits.dim() != 2 or logits.shape[1] != classes:
        raise ValueError(
            f'Argument "{name}" must be shaped (N, {classes}), got {tuple(logits.shape)}.'
        )


def _check_batch(name: str, tensor: Tensor, batch: int) -> None:
    if tensor.shape[0] != batch:
        raise ValueError(
            f'Argument "{name}" must have {batch} rows like the logits, got {tensor.shape[0]}.'
        )


def _check_invasiveness(logits: Tensor, target: Tensor, class_weights: Tensor | None) -> None:
    _check_logits("logits", logits, N_CLASSES)
    _check_batch("target", target, logits.shape[0])
    if target.dim() != 1 or target.dtype != torch.long:
        raise ValueError('Argument "target" must be a 1-D long tensor of class indices.')
    if target.numel() and (target.min() < 0 or target.max() >= N_CLASSES):
        raise ValueError(f'Argument "target" must hold class indices in [0, {N_CLASSES}).')
    if class_weights is not None and (
        class_weights.shape != (N_CLASSES,) or bool((class_weights < 0).any())
    ):
        raise ValueError(f'Argument "class_weights" must be {N_CLASSES} non-negative values.')


def invasiveness_loss(
    logits: Tensor, target: Tensor, class_weights: Tensor | None = None
) -> Tensor:
    """Cross-entropy of the 3 invasiveness classes; ``class_weights`` (3,) rebalance them.

    With weights the mean is weighted (divided by the sum of the samples' weights), as in
    ``torch.nn.functional.cross_entropy``.
    """
    _check_invasiveness(logits, target, class_weights)
    return F.cross_entropy(logits, target, weight=class_weights)


def invasiveness_loss_per_sample(
    logits: Tensor, target: Tensor, class_weights: Tensor | None = None
) -> Tensor:
    """Per-sample weighted cross-entropy ``w_{y_i} (-log p_{i,y_i})``, shape (N,).

    Unlike ``invasiveness_loss`` it is not normalised by the weights: the distillation loss
    divides by N, so a sample's weight scales its share directly.
    """
    _check_invasiveness(logits, target, class_weights)
    return F.cross_entropy(logits, target, weight=class_weights, reduction="none")


@dataclass(frozen=True)
class GrowthBlend:
    """The weights of the growth loss's three terms (see the module docstring).

    Attributes:
        mse: a, on the raw proportions (the prototype's "delta" term).
        quantised: b, on the proportions quantised to 5 % steps.
        predominant: c, on the cross-entropy of the predominant pattern.
        distribution: d, on the cross-entropy of the predicted mix against the true fractions.
            Its gradient on the logits is p - f, where the MSE's is scaled by p(1 - p) and
            fades for the minor patterns (docs/model.md).
    """

    mse: float = 1.0
    quantised: float = 1.0
    predominant: float = 0.1
    distribution: float = 1.0

    def __post_init__(self) -> None:
        for name in ("mse", "quantised", "predominant", "distribution"):
            if not getattr(self, name) >= 0:
                raise ValueError(f'Argument "{name}" must be >= 0, got {getattr(self, name)}.')


def quantise(p: Tensor) -> Tensor:
    """round(20 p) / 20 in the forward pass, the identity in the backward pass."""
    return p + (torch.round(p / QUANTUM) * QUANTUM - p).detach()


def _check_fractions(fractions: Tensor, batch: int) -> None:
    if fractions.shape != (batch, N_PATTERNS):
        raise ValueError(
            f'Argument "fractions" must be shaped ({batch}, {N_PATTERNS}), '
            f"got {tuple(fractions.shape)}."
        )
    if bool((fractions < 0).any()) or not torch.allclose(
        fractions.sum(1), torch.ones(batch, dtype=fractions.dtype, device=fractions.device),
        atol=1e-3,
    ):
        raise ValueError('Argument "fractions" must be non-negative rows summing to 1.')


def growth_loss_per_sample(
    logits: Tensor, fractions: Tensor, blend: GrowthBlend = GrowthBlend()
) -> Tensor:
    """The growth blend for each sample, shape (N,); ``growth_loss`` is its mean."""
    _check_logits("logits", logits, N_PATTERNS)
    _check_fractions(fractions, logits.shape[0])
    log_p = F.log_softmax(logits, dim=1)  # one normalisation serves all four terms
    p = log_p.exp()
    mse = (p - fractions).pow(2).mean(dim=1)
    quantised = (quantise(p) - fractions).pow(2).mean(dim=1)
    ce = -log_p.gather(1, fractions.argmax(dim=1, keepdim=True)).squeeze(1)
    mix = -(fractions * log_p).sum(dim=1)
    return (blend.mse * mse + blend.quantised * quantised + blend.predominant * ce
            + blend.distribution * mix)


def growth_loss(logits: Tensor, fractions: Tensor, blend: GrowthBlend = GrowthBlend()) -> Tensor:
    """The growth blend averaged over the batch (formula in the module docstring).

    ``argmax`` breaks ties towards the earlier pattern, like ``pathology.predominant``.
    """
    return growth_loss_per_sample(logits, fractions, blend).mean()


class UncertaintyWeighting(nn.Module):
    """Homoscedastic-uncertainty task weights: ``sum_t exp(-s_t) L_t + s_t``.

    ``s_t = log sigma_t^2`` starts at 0 (weight 1) and is learned with the network: a task
    whose loss stays high gets a lower weight, at the price of the ``+ s_t`` term.
    """

    def __init__(self, tasks: int = 2) -> None:
        super().__init__()
        if tasks < 1:
            raise ValueError(f'Argument "tasks" must be >= 1, got {tasks}.')
        self.log_vars = nn.Parameter(torch.zeros(tasks))

    def forward(self, losses: Sequence[Tensor]) -> Tensor:
        if len(losses) != self.log_vars.numel():
            raise ValueError(
                f'Argument "losses" must have {self.log_vars.numel()} scalars, got {len(losses)}.'
            )
        stacked = torch.stack([torch.as_tensor(loss).reshape(()) for loss in losses])
        return (torch.exp(-self.log_vars) * stacked + self.log_vars).sum()


def soft_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))`` per sample, shape (N,).

    The T^2 keeps the soft term's gradients on the scale of the hard term's (Hinton et al.
    2015). The teacher is detached: distillation never trains it.
    """
    if not temperature > 0:
        raise ValueError(f'Argument "temperature" must be > 0, got {temperature}.')
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(
            f'Arguments "student" and "teacher" must be (N, C) of one shape, '
            f"got {tuple(student.shape)} and {tuple(teacher.shape)}."
        )
    log_q = F.log_softmax(student / temperature, dim=1)
    log_p = F.log_softmax(teacher.detach() / temperature, dim=1)
    return temperature**2 * (log_p.exp() * (log_p - log_q)).sum(dim=1)


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 0.4) -> Tensor:
    """``mean_i max(0, |a_i - p_i|^2 - |a_i - n_i|^2 + margin)`` (squared L2 distances)."""
    if margin < 0:
        raise ValueError(f'Argument "margin" must be >= 0, got {margin}.')
    if not anchor.shape == positive.shape == negative.shape or anchor.dim() != 2:
        raise ValueError('Arguments "anchor", "positive", "negative" must be (N, E) of one shape.')
    if anchor.shape[0] == 0:
        return anchor.sum() * 0
    pos = (anchor - positive).pow(2).sum(dim=1)
    neg = (anchor - negative).pow(2).sum(dim=1)
    return F.relu(pos - neg + margin).mean()


class Targets(NamedTuple):
    """Labels of a batch; rows with ``labelled`` False may hold anything (they are unused).

    Attributes:
        invasiveness: (N,) long class indices.
        fractions: (N, 7) true growth fractions, rows summing to 1.
        labelled: (N,) bool, True where the labels are known.
    """

    invasiveness: Tensor
    fractions: Tensor
    labelled: Tensor


class DistillationTerms(NamedTuple):
    """The distillation loss by task, so a caller can weight the tasks (e.g. by uncertainty).

    ``total()`` is their plain sum.
    """

    invasiveness: Tensor
    growth: Tensor
    triplet: Tensor

    def total(self) -> Tensor:
        return self.invasiveness + self.growth + self.triplet


@dataclass(frozen=True)
class DistillationLoss:
    """The KD loss of the student against its teachers (formula in the module docstring).

    Attributes:
        temperature: T of the soft targets.
        alpha: share of the soft term for labelled samples (1 - alpha for the hard term).
        unlabelled_weight: beta, the weight of the soft term for unlabelled samples.
        triplet_weight: gamma; 0 switches the triplet term off.
        triplet_margin: the triplet margin.
        class_weights: optional invasiveness class weights (3 values) for the hard term.
        blend: the growth blend of the hard term.
    """

    temperature: float = 4.0
    alpha: float = 0.5
    unlabelled_weight: float = 1.0
    triplet_weight: float = 0.0
    triplet_margin: float = 0.4
    class_weights: tuple[float, float, float] | None = None
    blend: GrowthBlend = GrowthBlend()

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f'Argument "temperature" must be > 0, got {self.temperature}.')
        if not 0 <= self.alpha <= 1:
            raise ValueError(f'Argument "alpha" must lie in [0, 1], got {self.alpha}.')
        for name in ("unlabelled_weight", "triplet_weight", "triplet_margin"):
            if not getattr(self, name) >= 0:
                raise ValueError(f'Argument "{name}" must be >= 0, got {getattr(self, name)}.')

    def __call__(
        self,
        student: ModelOutput,
        teachers: Sequence[ModelOutput],
        targets: Targets,
        student_view: ModelOutput | None = None,
    ) -> DistillationTerms:
        """The loss terms for one batch.

        ``teachers``: each teacher's outputs on the same batch; a teacher's ``None`` task is
        one it does not know. ``student_view``: the student on another view (e.g. a flip) of
        the same crops, required when ``triplet_weight > 0``: anchor = student embedding of an
        unlabelled crop, positive = its other view, negative = the other view of the next
        unlabelled crop in the batch.
        """
        if student.invasiveness is None or student.growth is None:
            raise ValueError('Argument "student" must predict both tasks.')
        n = student.invasiveness.shape[0]
        weights = None if self.class_weights is None else torch.tensor(
            self.class_weights, dtype=student.invasiveness.dtype,
            device=student.invasiveness.device)
        labelled = targets.labelled
        if labelled.shape != (n,) or labelled.dtype != torch.bool:
            raise ValueError(f'Argument "targets.labelled" must be a ({n},) bool tensor.')
        _check_batch("targets.invasiveness", targets.invasiveness, n)
        _check_batch("targets.fractions", targets.fractions, n)
        if not teachers:
            raise ValueError('Argument "teachers" must hold at least one teacher.')
        return DistillationTerms(
            invasiveness=self._task(
                student.invasiveness, [t.invasiveness for t in teachers], labelled,
                lambda z: invasiveness_loss_per_sample(
                    z, targets.invasiveness[labelled], weights),
            ),
            growth=self._task(
                student.growth, [t.growth for t in teachers], labelled,
                lambda z: growth_loss_per_sample(z, targets.fractions[labelled], self.blend),
            ),
            triplet=self._triplet(student, student_view, labelled),
        )

    def _task(self, student: Tensor, teachers: list[Tensor | None], labelled: Tensor,
              hard: Callable[[Tensor], Tensor]) -> Tensor:
        """(1/N) sum_i [m_i ((1 - alpha) H_i + alpha S_i) + (1 - m_i) beta S_i] for one task."""
        known = [t for t in teachers if t is not None]
        if known:
            soft = torch.stack([soft_kl(student, t, self.temperature) for t in known]).mean(0)
        else:
            soft = torch.zeros_like(student[:, 0])
        weights = torch.where(labelled, self.alpha, self.unlabelled_weight).to(soft.dtype)
        total = (weights * soft).sum()
        if bool(labelled.any()):
            total = total + (1 - self.alpha) * hard(student[labelled]).sum()
        return total / student.shape[0]

    def _triplet(self, student: ModelOutput, view: ModelOutput | None,
                 labelled: Tensor) -> Tensor:
        assert student.invasiveness is not None
        zero = student.invasiveness.sum() * 0
        if self.triplet_weight == 0:
            return zero
        if view is None or student.embedding is None or view.embedding is None:
            raise ValueError(
                'Argument "student_view" with embeddings is required when triplet_weight > 0.'
            )
        unlabelled = ~labelled
        if int(unlabelled.sum()) < 2:
            return zero
        anchor = student.embedding[unlabelled]
        positive = view.embedding[unlabelled]
        negative = positive.roll(-1, dims=0)
        return self.triplet_weight * triplet_loss(anchor, positive, negative, self.triplet_margin)
