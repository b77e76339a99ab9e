"""Loss values against hand-computed ones (the formulas of model/losses.py)."""

from __future__ import annotations

import math

import pytest
import torch

from model.losses import (
    DistillationLoss,
    GrowthBlend,
    Targets,
    UncertaintyWeighting,
    growth_loss,
    invasiveness_loss,
    quantise,
    soft_kl,
    triplet_loss,
)
from model.outputs import ModelOutput

LN2, LN3 = math.log(2), math.log(3)


def test_invasiveness_cross_entropy_with_and_without_class_weights() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, 2])
    first = math.log(1 + 2 * math.exp(-2))  # -log(e^2 / (e^2 + 2))
    assert invasiveness_loss(logits, target).item() == pytest.approx((first + LN3) / 2)
    weighted = invasiveness_loss(logits, target, torch.tensor([1.0, 2.0, 3.0]))
    assert weighted.item() == pytest.approx((1 * first + 3 * LN3) / (1 + 3))


def test_growth_blend_by_hand() -> None:
    logits = torch.zeros(1, 7)  # p = 1/7 each; quantised: round(20/7) / 20 = 0.15
    fractions = torch.tensor([[0.6, 0.4, 0, 0, 0, 0, 0]])
    p, q = 1 / 7, 0.15
    mse = ((p - 0.6) ** 2 + (p - 0.4) ** 2 + 5 * p**2) / 7
    quantised = ((q - 0.6) ** 2 + (q - 0.4) ** 2 + 5 * q**2) / 7
    ce = math.log(7)  # the predominant pattern is lepidic
    mix = -(0.6 + 0.4) * math.log(p)
    assert growth_loss(logits, fractions).item() == pytest.approx(
        mse + quantised + 0.1 * ce + mix)
    blend = GrowthBlend(mse=2.0, quantised=0.0, predominant=1.0, distribution=0.0)
    assert growth_loss(logits, fractions, blend).item() == pytest.approx(2 * mse + ce)


def test_growth_mix_term_weighs_each_log_probability_by_its_true_fraction() -> None:
    logits = torch.tensor([[math.log(4.0), 0, 0, 0, 0, 0, 0]])  # p = (0.4, 0.1 x 6)
    fractions = torch.tensor([[0.5, 0.25, 0.25, 0, 0, 0, 0]])
    only_mix = GrowthBlend(mse=0.0, quantised=0.0, predominant=0.0, distribution=1.0)
    expected = -(0.5 * math.log(0.4) + 0.5 * math.log(0.1))
    assert growth_loss(logits, fractions, only_mix).item() == pytest.approx(expected)


def test_quantisation_rounds_forward_and_passes_gradients_straight_through() -> None:
    p = torch.tensor([0.12, 0.13, 0.5, 0.974], requires_grad=True)
    q = quantise(p)
    assert torch.allclose(q, torch.tensor([0.10, 0.15, 0.50, 0.95]))
    q.sum().backward()
    assert p.grad is not None and torch.equal(p.grad, torch.ones(4))


def test_uncertainty_weighting_by_hand() -> None:
    weighting = UncertaintyWeighting(tasks=2)
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.0, LN2]))
    total = weighting([torch.tensor(1.0), torch.tensor(3.0)])
    assert total.item() == pytest.approx(1.0 + 0.0 + 3.0 / 2 + LN2)
    total.backward()  # d/ds (e^-s L + s) = 1 - e^-s L
    assert weighting.log_vars.grad is not None
    assert weighting.log_vars.grad.tolist() == pytest.approx([1 - 1.0, 1 - 3.0 / 2])


def test_soft_kl_scales_with_temperature_squared() -> None:
    student = torch.zeros(1, 2)
    p = [0.75, 0.25]  # softmax([ln 3, 0])
    kl = sum(pi * math.log(pi / 0.5) for pi in p)
    assert soft_kl(student, torch.tensor([[LN3, 0.0]]), 1.0).item() == pytest.approx(kl)
    # at T = 2 the teacher logits [2 ln 3, 0] soften to the same p, and the KL is times 4
    assert soft_kl(student, torch.tensor([[2 * LN3, 0.0]]), 2.0).item() == pytest.approx(4 * kl)
    assert soft_kl(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]]), 3.0).item() == 0


def test_triplet_by_hand() -> None:
    a, near, far = torch.zeros(1, 2), torch.tensor([[1.0, 0]]), torch.tensor([[0, 2.0]])
    assert triplet_loss(a, near, far, margin=0.4).item() == 0  # 1 - 4 + 0.4 < 0
    assert triplet_loss(a, far, near, margin=0.4).item() == pytest.approx(4 - 1 + 0.4)


def _teachers() -> list[ModelOutput]:
    """Teacher A knows both tasks, B invasiveness, C growth."""
    two = torch.tensor([[2 * LN2, 0.0, 0.0]] * 2)  # at T = 2: p = (0.5, 0.25, 0.25)
    return [
        ModelOutput(invasiveness=two, growth=torch.zeros(2, 7), embedding=None),
        ModelOutput(invasiveness=torch.zeros(2, 3), growth=None, embedding=None),
        ModelOutput(invasiveness=None, growth=torch.zeros(2, 7), embedding=None),
    ]


def _student() -> ModelOutput:
    return ModelOutput(invasiveness=torch.zeros(2, 3), growth=torch.zeros(2, 7),
                       embedding=None)


def test_distillation_by_hand_with_a_masked_unlabelled_sample() -> None:
    """Sample 0 labelled (AIS, pure lepidic), sample 1 unlabelled with garbage labels."""
    targets = Targets(
        invasiveness=torch.tensor([0, -1]),
        fractions=torch.tensor([[1.0, 0, 0, 0, 0, 0, 0], [float("nan")] * 7]),
        labelled=torch.tensor([True, False]),
    )
    loss = DistillationLoss(temperature=2.0, alpha=0.3, unlabelled_weight=0.8)
    terms = loss(_student(), _teachers(), targets)
    # invasiveness: S = mean(KL_A, KL_B) with KL_A = 4 KL((.5, .25, .25) || uniform), KL_B = 0
    kl_a = 4 * (0.5 * math.log(1.5) + 2 * 0.25 * math.log(0.75))
    soft = kl_a / 2
    hard = LN3
    expected_inv = ((0.7 * hard + 0.3 * soft) + 0.8 * soft) / 2
    assert terms.invasiveness.item() == pytest.approx(expected_inv)
    # growth: both growth teachers agree with the uniform student, S = 0; hard = the blend
    p = 1 / 7
    q = round(20 / 7) / 20
    blend = (((1 - p) ** 2 + 6 * p**2) / 7 + ((1 - q) ** 2 + 6 * q**2) / 7
             + 0.1 * math.log(7) + math.log(7))
    assert terms.growth.item() == pytest.approx(0.7 * blend / 2)
    assert terms.triplet.item() == 0
    assert terms.total().item() == pytest.approx(expected_inv + 0.7 * blend / 2)


def test_unlabelled_samples_learn_from_teachers_only() -> None:
    targets = Targets(torch.tensor([2, 1]), torch.full((2, 7), 1 / 7),
                      torch.tensor([False, False]))
    terms = DistillationLoss(temperature=2.0, unlabelled_weight=1.0)(
        _student(), _teachers(), targets)
    kl_a = 4 * (0.5 * math.log(1.5) + 2 * 0.25 * math.log(0.75))
    assert terms.invasiveness.item() == pytest.approx(kl_a / 2)
    assert terms.growth.item() == 0
    other = Targets(torch.tensor([0, 0]), torch.eye(7)[:2], torch.tensor([False, False]))
    again = DistillationLoss(temperature=2.0)(_student(), _teachers(), other)
    assert again.invasiveness.item() == terms.invasiveness.item()  # labels never read


def test_distillation_triplet_term_on_unlabelled_samples() -> None:
    embedding = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    view = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 9.0]])
    student = ModelOutput(torch.zeros(3, 3), torch.zeros(3, 7), embedding)
    student_view = ModelOutput(torch.zeros(3, 3), torch.zeros(3, 7), view)
    targets = Targets(torch.tensor([0, 0, 0]), torch.eye(7)[[0, 0, 0]],
                      torch.tensor([True, False, False]))
    loss = DistillationLoss(triplet_weight=0.5, triplet_margin=0.4)
    terms = loss(student, [student], targets, student_view)
    # unlabelled rows 1, 2: anchors (1,0), (5,0); positives (1,0), (0,9); negatives rolled:
    # row 1: max(0, 0 - 81 - 1 + 0.4) = 0; row 2: max(0, 25 + 81 - (16 + 0) + 0.4) = 90.4
    assert terms.triplet.item() == pytest.approx(0.5 * (0 + 90.4) / 2)
    with pytest.raises(ValueError, match="student_view"):
        loss(student, [student], targets)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: invasiveness_loss(torch.zeros(2, 4), torch.tensor([0, 1])), "logits"),
        (lambda: invasiveness_loss(torch.zeros(2, 3), torch.tensor([0, 3])), "target"),
        (lambda: invasiveness_loss(torch.zeros(2, 3), torch.tensor([0])), "target"),
        (lambda: invasiveness_loss(torch.zeros(2, 3), torch.tensor([0.0, 1.0])), "target"),
        (lambda: invasiveness_loss(torch.zeros(1, 3), torch.tensor([0]), torch.ones(2)),
         "class_weights"),
        (lambda: growth_loss(torch.zeros(2, 7), torch.zeros(2, 7)), "fractions"),
        (lambda: growth_loss(torch.zeros(2, 7), torch.full((2, 6), 1 / 6)), "fractions"),
        (lambda: growth_loss(torch.zeros(2, 3), torch.full((2, 7), 1 / 7)), "logits"),
        (lambda: GrowthBlend(mse=-1), "mse"),
        (lambda: GrowthBlend(distribution=-1), "distribution"),
        (lambda: soft_kl(torch.zeros(2, 3), torch.zeros(2, 3), 0.0), "temperature"),
        (lambda: soft_kl(torch.zeros(2, 3), torch.zeros(2, 7), 1.0), "student"),
        (lambda: UncertaintyWeighting(2)([torch.tensor(1.0)]), "losses"),
        (lambda: UncertaintyWeighting(0), "tasks"),
        (lambda: DistillationLoss(alpha=1.5), "alpha"),
        (lambda: DistillationLoss(temperature=-1), "temperature"),
        (lambda: DistillationLoss()(_student(), [], Targets(
            torch.tensor([0, 0]), torch.eye(7)[:2], torch.tensor([True, True]))), "teachers"),
        (lambda: DistillationLoss()(_student(), _teachers(), Targets(
            torch.tensor([0, 0]), torch.eye(7)[:2], torch.tensor([1, 1]))), "labelled"),
        (lambda: triplet_loss(torch.zeros(2, 2), torch.zeros(2, 3), torch.zeros(2, 2)),
         "anchor"),
    ],
)
def test_bad_arguments_are_refused(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()
