"""The pathology of one synthetic nodule, sampled first (SYNTHETIC_COHORT.md, "Pathology").

Labels come before images: the nodule's invasiveness and growth-pattern proportions are drawn
here, and the renderer derives its appearance from them, so every radiology-pathology
correlation of the cohort runs in one direction only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.pathology import (
    PATTERNS,
    Grade,
    Invasiveness,
    Pattern,
    check_proportions,
    iaslc_grade,
    predominant,
    round_proportions,
)

#: Prevalence of each invasiveness class.
CLASS_PROBABILITIES: dict[Invasiveness, float] = {
    Invasiveness.AIS: 0.20,
    Invasiveness.MIA: 0.25,
    Invasiveness.IAC: 0.55,
}
#: MIA: lepidic ~ U[70, 95] percent; the rest split acinar:papillary by Dirichlet(2, 1).
MIA_LEPIDIC_RANGE = (70.0, 95.0)
MIA_REST_ALPHA = (2.0, 1.0)
#: IAC: lepidic ~ 60 * Beta(1.2, 2.5) percent.
IAC_LEPIDIC_SCALE = 60.0
IAC_LEPIDIC_BETA = (1.2, 2.5)
#: IAC: Dirichlet parameters over the six non-lepidic patterns (fixed order) per latent grade,
#: each latent grade drawn with probability 0.5.
IAC_ALPHA_LOW = (4.0, 2.5, 0.4, 0.5, 0.3, 0.3)
IAC_ALPHA_HIGH = (1.5, 0.8, 1.5, 2.5, 1.0, 1.0)


@dataclass(frozen=True)
class NodulePathology:
    """The pathology report of one nodule.

    Attributes:
        invasiveness: AIS, MIA or IAC.
        proportions: percentages in the order of ``model.pathology.PATTERNS``, multiples of 5
            summing to 100.
    """

    invasiveness: Invasiveness
    proportions: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "invasiveness", Invasiveness(self.invasiveness))
        check_proportions(self.proportions)

    @property
    def predominant(self) -> Pattern:
        """The largest pattern (ties: the earlier one in the fixed order)."""
        return predominant(self.proportions)

    @property
    def grade(self) -> Grade:
        """The IASLC grade (NA for AIS and MIA)."""
        return iaslc_grade(self.invasiveness, self.proportions)

    def percent(self, *patterns: Pattern) -> int:
        """The summed proportion of ``patterns``, in percent."""
        return sum(self.proportions[PATTERNS.index(p)] for p in patterns)


def sample_pathology(rng: np.random.Generator) -> NodulePathology:
    """Draw one nodule's invasiveness, then its growth-pattern proportions."""
    classes = list(CLASS_PROBABILITIES)
    invasiveness = classes[
        int(rng.choice(len(classes), p=[CLASS_PROBABILITIES[c] for c in classes]))
    ]
    weights = [0.0] * len(PATTERNS)
    if invasiveness is Invasiveness.AIS:
        weights[0] = 100.0
    elif invasiveness is Invasiveness.MIA:
        lepidic = rng.uniform(*MIA_LEPIDIC_RANGE)
        split = rng.dirichlet(MIA_REST_ALPHA)
        weights[0] = lepidic
        weights[1] = (100.0 - lepidic) * split[0]
        weights[2] = (100.0 - lepidic) * split[1]
    else:
        alpha = IAC_ALPHA_HIGH if rng.random() < 0.5 else IAC_ALPHA_LOW
        lepidic = IAC_LEPIDIC_SCALE * rng.beta(*IAC_LEPIDIC_BETA)
        split = rng.dirichlet(alpha)
        weights[0] = lepidic
        weights[1:] = [(100.0 - lepidic) * float(s) for s in split]
    return NodulePathology(invasiveness, tuple(round_proportions(weights)))
