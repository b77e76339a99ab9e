from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.pathology import (
    Grade,
    Invasiveness,
    NodulePrediction,
    Pattern,
    iaslc_grade,
    predominant,
    round_proportions,
)


@pytest.mark.parametrize(
    ("fractions", "expected"),
    [
        ([1, 0, 0, 0, 0, 0, 0], [100, 0, 0, 0, 0, 0, 0]),
        ([0.333, 0.333, 0.334, 0, 0, 0, 0], [35, 30, 35, 0, 0, 0, 0]),
        ([1, 1, 1, 0, 0, 0, 0], [35, 35, 30, 0, 0, 0, 0]),  # tie: earlier pattern first
        ([0.72, 0.18, 0.10, 0, 0, 0, 0], [70, 20, 10, 0, 0, 0, 0]),
        ([0.02] * 7, [15, 15, 15, 15, 15, 15, 10]),
    ],
)
def test_largest_remainder_rounding(fractions: list[float], expected: list[int]) -> None:
    assert round_proportions(fractions) == expected


@given(st.lists(st.floats(0, 10), min_size=7, max_size=7).filter(lambda v: sum(v) > 1e-6))
def test_rounding_invariants(fractions: list[float]) -> None:
    rounded = round_proportions(fractions)
    assert sum(rounded) == 100 and all(p % 5 == 0 and p >= 0 for p in rounded)
    total = sum(fractions)
    assert all(abs(r - 100 * f / total) < 5 for r, f in zip(rounded, fractions, strict=True))


@pytest.mark.parametrize("bad", [[0] * 7, [-1, 2, 0, 0, 0, 0, 0], [float("nan")] * 7])
def test_rounding_refuses_bad_input(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        round_proportions(bad)


@pytest.mark.parametrize(
    ("invasiveness", "proportions", "grade"),
    [
        ("AIS", [100, 0, 0, 0, 0, 0, 0], Grade.NA),
        ("MIA", [80, 10, 0, 10, 0, 0, 0], Grade.NA),
        ("IAC", [50, 30, 20, 0, 0, 0, 0], Grade.G1),
        ("IAC", [30, 50, 20, 0, 0, 0, 0], Grade.G2),
        ("IAC", [35, 45, 5, 5, 10, 0, 0], Grade.G2),  # 15 % high grade
        ("IAC", [60, 20, 0, 0, 20, 0, 0], Grade.G3),  # exactly 20 % -> G3
        ("IAC", [40, 40, 0, 5, 5, 5, 5], Grade.G3),
        ("IAC", [40, 40, 20, 0, 0, 0, 0], Grade.G1),  # tie lepidic/acinar -> lepidic
    ],
)
def test_grade_rule(invasiveness: str, proportions: list[int], grade: Grade) -> None:
    assert iaslc_grade(invasiveness, proportions) is grade


def test_predominant_tie_goes_to_the_earlier_pattern() -> None:
    assert predominant([0, 40, 40, 20, 0, 0, 0]) is Pattern.ACINAR


def test_prediction_derives_labels_and_validates() -> None:
    prediction = NodulePrediction((0.1, 0.2, 0.7), (30, 50, 0, 0, 20, 0, 0), 12.5)
    assert prediction.invasiveness is Invasiveness.IAC
    assert prediction.predominant is Pattern.ACINAR
    assert prediction.grade is Grade.G3
    assert prediction.as_dict()["proportions"]["solid"] == 20  # type: ignore[index]
    with pytest.raises(ValueError, match="proportions"):
        NodulePrediction((0.1, 0.2, 0.7), (30, 50, 0, 0, 21, 0, 0), 1)
    with pytest.raises(ValueError, match="probabilities"):
        NodulePrediction((0.5, 0.2, 0.7), (100, 0, 0, 0, 0, 0, 0), 1)
    with pytest.raises(ValueError, match="uncertainty"):
        NodulePrediction((0.1, 0.2, 0.7), (100, 0, 0, 0, 0, 0, 0), 101)
