"""The pathology vocabulary SD-MdaNet predicts, and the rules that derive one label from another.

One place for the class and pattern names, the 5 % rounding of proportions and the IASLC grade
rule: the synthetic cohort's labels, the model's outputs and the result SR all use these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Invasiveness(StrEnum):
    """Task 1 classes, in the order of the model's logits."""

    AIS = "AIS"  #: adenocarcinoma in situ (incl. atypical adenomatous hyperplasia)
    MIA = "MIA"  #: minimally invasive adenocarcinoma (invasive component <= 5 mm)
    IAC = "IAC"  #: invasive adenocarcinoma


class Pattern(StrEnum):
    """Task 2 histologic growth patterns, in the order of the model's logits."""

    LEPIDIC = "lepidic"
    ACINAR = "acinar"
    PAPILLARY = "papillary"
    MICROPAPILLARY = "micropapillary"
    SOLID = "solid"
    CRIBRIFORM = "cribriform"
    COMPLEX_GLANDULAR = "complex_glandular"


class Grade(StrEnum):
    """IASLC grade of invasive non-mucinous adenocarcinoma; NA for AIS and MIA."""

    G1 = "G1"  #: lepidic predominant, < 20 % high-grade patterns
    G2 = "G2"  #: acinar or papillary predominant, < 20 % high-grade patterns
    G3 = "G3"  #: >= 20 % high-grade patterns
    NA = "NA"  #: not applicable (AIS, MIA)


INVASIVENESS: tuple[Invasiveness, ...] = tuple(Invasiveness)
PATTERNS: tuple[Pattern, ...] = tuple(Pattern)
HIGH_GRADE: frozenset[Pattern] = frozenset(
    {Pattern.MICROPAPILLARY, Pattern.SOLID, Pattern.CRIBRIFORM, Pattern.COMPLEX_GLANDULAR}
)
PROPORTION_STEP = 5  #: pathologists report proportions in 5 % steps


def round_proportions(fractions: Sequence[float], step: int = PROPORTION_STEP) -> list[int]:
    """Round non-negative weights to percentages in ``step`` % steps summing to 100.

    Largest-remainder (Hamilton) method: each share gets the floor of its exact quota of the
    100 / step units, then the units left go to the largest remainders; ties go to the earlier
    pattern, so the result is deterministic.
    """
    if 100 % step:
        raise ValueError(f'Argument "step" must divide 100, got {step}.')
    if any(f < 0 or math.isnan(f) for f in fractions):
        raise ValueError('Argument "fractions" must be non-negative numbers.')
    total = float(sum(fractions))
    if total <= 0:
        raise ValueError('Argument "fractions" must have a positive sum.')
    units = 100 // step
    quotas = [f / total * units for f in fractions]
    floors = [math.floor(q) for q in quotas]
    left = units - sum(floors)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [n * step for n in floors]


def check_proportions(proportions: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``proportions`` are 7 multiples of 5 summing to 100."""
    if len(proportions) != len(PATTERNS) or sum(proportions) != 100 or any(
        p % PROPORTION_STEP or p < 0 for p in proportions
    ):
        raise ValueError(
            'Argument "proportions" must be 7 multiples of 5 summing to 100, '
            f"got {tuple(proportions)}."
        )


def predominant(proportions: Sequence[float]) -> Pattern:
    """The largest pattern; ties go to the earlier one in the fixed order."""
    if len(proportions) != len(PATTERNS):
        raise ValueError(f'Argument "proportions" must have {len(PATTERNS)} values.')
    best = max(range(len(PATTERNS)), key=lambda i: (proportions[i], -i))
    return PATTERNS[best]


def iaslc_grade(invasiveness: Invasiveness | str, proportions: Sequence[float]) -> Grade:
    """The IASLC grade: IAC only; G3 if high-grade patterns >= 20 %, else G1 if lepidic
    predominant, else G2. AIS and MIA get NA. ``proportions`` are percentages."""
    if Invasiveness(invasiveness) is not Invasiveness.IAC:
        return Grade.NA
    high = sum(p for pattern, p in zip(PATTERNS, proportions, strict=True) if pattern in HIGH_GRADE)
    if high >= 20:
        return Grade.G3
    return Grade.G1 if predominant(proportions) is Pattern.LEPIDIC else Grade.G2


@dataclass(frozen=True)
class NodulePrediction:
    """What the model says about one nodule: the content of one SR measurement group's
    model outputs.

    Attributes:
        probabilities: class probabilities in the order of ``INVASIVENESS``, summing to 1.
        proportions: percentages in the order of ``PATTERNS``, multiples of 5 summing to 100.
        uncertainty: predictive uncertainty, 0 (certain) to 100 (method in the model card).
    """

    probabilities: tuple[float, float, float]
    proportions: tuple[int, ...]
    uncertainty: float

    def __post_init__(self) -> None:
        if len(self.probabilities) != len(INVASIVENESS):
            raise ValueError('Argument "probabilities" must have 3 values (AIS, MIA, IAC).')
        if abs(sum(self.probabilities) - 1.0) > 1e-4 or min(self.probabilities) < 0:
            raise ValueError('Argument "probabilities" must be >= 0 and sum to 1.')
        check_proportions(self.proportions)
        if not 0 <= self.uncertainty <= 100:
            raise ValueError('Argument "uncertainty" must lie in [0, 100].')

    @property
    def invasiveness(self) -> Invasiveness:
        """The most probable class (ties: the less invasive one)."""
        best = max(range(3), key=lambda i: (self.probabilities[i], -i))
        return INVASIVENESS[best]

    @property
    def predominant(self) -> Pattern:
        return predominant(self.proportions)

    @property
    def grade(self) -> Grade:
        return iaslc_grade(self.invasiveness, self.proportions)

    def as_dict(self) -> dict[str, object]:
        """A JSON-able summary (for the Result row and CSV exports)."""
        return {
            "probabilities": dict(zip(INVASIVENESS, self.probabilities, strict=True)),
            "proportions": dict(zip(PATTERNS, self.proportions, strict=True)),
            "invasiveness": self.invasiveness.value,
            "predominant": self.predominant.value,
            "grade": self.grade.value,
            "uncertainty": self.uncertainty,
        }


def proportions_from_mapping(values: Mapping[str, float]) -> list[float]:
    """Values keyed by pattern name, in the fixed pattern order (missing ones are 0)."""
    unknown = set(values) - {p.value for p in PATTERNS}
    if unknown:
        raise ValueError(f"unknown growth pattern(s): {', '.join(sorted(unknown))}")
    return [float(values.get(p.value, 0.0)) for p in PATTERNS]
