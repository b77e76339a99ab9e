"""The pathology sampler against SYNTHETIC_COHORT.md, over thousands of draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.pathology import HIGH_GRADE, PATTERNS, Grade, Invasiveness, Pattern
from training.synthetic.nodule import sample_shape
from training.synthetic.pathology import (
    CLASS_PROBABILITIES,
    IAC_ALPHA_HIGH,
    IAC_ALPHA_LOW,
    NodulePathology,
    sample_pathology,
)

DRAWS = 4000


@pytest.fixture(scope="module")
def draws() -> list[NodulePathology]:
    rng = np.random.default_rng(20240611)
    return [sample_pathology(rng) for _ in range(DRAWS)]


def _of(draws: list[NodulePathology], c: Invasiveness) -> np.ndarray:
    return np.array([d.proportions for d in draws if d.invasiveness is c], dtype=float)


def test_class_prevalences(draws: list[NodulePathology]) -> None:
    for c, p in CLASS_PROBABILITIES.items():
        observed = sum(d.invasiveness is c for d in draws) / DRAWS
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / DRAWS), (c, observed)


def test_proportions_are_multiples_of_5_summing_to_100(draws: list[NodulePathology]) -> None:
    for d in draws:
        assert len(d.proportions) == 7 and sum(d.proportions) == 100
        assert all(p % 5 == 0 and p >= 0 for p in d.proportions)


def test_ais_is_pure_lepidic_and_mia_keeps_to_its_patterns(draws: list[NodulePathology]) -> None:
    ais, mia = _of(draws, Invasiveness.AIS), _of(draws, Invasiveness.MIA)
    assert len(ais) > 0 and (ais[:, 0] == 100).all()
    assert ((mia[:, 0] >= 70) & (mia[:, 0] <= 95)).all()
    assert (mia[:, 3:] == 0).all()


def test_grade_rule(draws: list[NodulePathology]) -> None:
    high = [PATTERNS.index(p) for p in HIGH_GRADE]
    seen = set()
    for d in draws:
        if d.invasiveness is not Invasiveness.IAC:
            expected = Grade.NA
        elif sum(d.proportions[i] for i in high) >= 20:
            expected = Grade.G3
        else:
            top = max(range(7), key=lambda i: (d.proportions[i], -i))
            expected = Grade.G1 if top == 0 else Grade.G2
        assert d.grade is expected, d
        seen.add(d.grade)
    assert seen == set(Grade)


def _expected_means() -> dict[Invasiveness, np.ndarray]:
    """Analytic means before rounding: lepidic from its U / Beta law, the rest split by the
    mean Dirichlet shares (lepidic and the split are independent)."""
    mia = np.zeros(7)
    mia[0] = (70 + 95) / 2
    mia[1], mia[2] = (100 - mia[0]) * 2 / 3, (100 - mia[0]) / 3
    iac = np.zeros(7)
    iac[0] = 60 * 1.2 / (1.2 + 2.5)
    low, high = np.array(IAC_ALPHA_LOW), np.array(IAC_ALPHA_HIGH)
    iac[1:] = (100 - iac[0]) * 0.5 * (low / low.sum() + high / high.sum())
    ais = np.zeros(7)
    ais[0] = 100
    return {Invasiveness.AIS: ais, Invasiveness.MIA: mia, Invasiveness.IAC: iac}


def test_mean_proportions_follow_the_dirichlet_parameters(draws: list[NodulePathology]) -> None:
    for c, expected in _expected_means().items():
        values = _of(draws, c)
        error = 4 * values.std(axis=0) / math.sqrt(len(values)) + 0.75  # + rounding to 5 %
        assert (np.abs(values.mean(axis=0) - expected) <= error).all(), (
            c, values.mean(axis=0).round(2), expected.round(2))


def test_sizes_and_cores_follow_the_class(draws: list[NodulePathology]) -> None:
    rng = np.random.default_rng(7)
    for d in draws[:2000]:
        shape = sample_shape(d, rng)
        lepidic = d.percent(Pattern.LEPIDIC)
        if d.invasiveness is Invasiveness.AIS:
            assert 5 <= shape.diameter_mm <= 15 and shape.core_diameter_mm == 0
        elif d.invasiveness is Invasiveness.MIA:
            assert 7 <= shape.diameter_mm <= 20
            assert 1.5 <= shape.core_diameter_mm <= 5.0
        else:
            assert 10 <= shape.diameter_mm <= 30
            expected = min(max(5.5, shape.diameter_mm * (1 - lepidic / 100)), shape.diameter_mm)
            assert shape.core_diameter_mm == pytest.approx(expected)
        assert -700 <= shape.shell_hu <= -500 and 0 <= shape.core_hu <= 60
        assert shape.lobulation == pytest.approx(
            0.15 * d.percent(Pattern.ACINAR, Pattern.PAPILLARY) / 100)
        if d.percent(Pattern.MICROPAPILLARY, Pattern.SOLID):
            assert 6 <= len(shape.spikes) <= 14
        else:
            assert shape.spikes == ()
        assert len(shape.bubbles) == round(8 * d.percent(Pattern.CRIBRIFORM,
                                                         Pattern.COMPLEX_GLANDULAR) / 100)
        offset = float(np.linalg.norm(shape.core_offset_mm))
        assert offset <= min(0.15 * shape.diameter_mm,
                             (shape.diameter_mm - shape.core_diameter_mm) / 2) + 1e-9


def test_bad_proportions_are_refused() -> None:
    with pytest.raises(ValueError, match="proportions"):
        NodulePathology(Invasiveness.IAC, (50, 50, 1, 0, 0, 0, 0))
