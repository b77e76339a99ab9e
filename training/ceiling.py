"""How well can the predominant pattern be ranked from what a CT shows of the synthetic cohort?

The cohort draws each nodule's pathology first and renders imaging signs from it
(SYNTHETIC_COHORT.md). Several patterns share one sign: lobulation grows with acinar +
papillary, spiculation with micropapillary + solid, bubble lucencies with cribriform + complex
glandular; the ground-glass part tracks lepidic. So even a reader that measures a sign exactly
learns only a sum of proportions, and the predominant pattern stays uncertain.

This module measures that limit for nested readers, from one that sees the invasiveness only to
one that reads every sign exactly. It draws nodules with the cohort's own pathology sampler,
estimates each reader's best proportion estimate, E[proportion | what it reads], by averaging
over a large sample, and scores it like a model: the predominant-pattern macro AUC of
``training.evaluate`` on fresh sets of held-out draws, on the raw estimates and on the estimates
rounded to 5 % steps as the node reports them. A trained network's figure is read against these
lines: it cannot beat the reader of every sign, and if it lands on a weaker reader's line it
reads no more than that reader does. Two simplifications: a sign is read exactly, in 5 % steps
of its sum (in the reader's favour); the air bronchogram (present with probability
papillary / 100) is left out (against it: it would tell papillary from acinar a little). Once
three sums are read the fourth follows (the proportions sum to 100), so the last sign added
changes nothing.

    python -m training.ceiling [--draws 500000] [--sets 20]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.pathology import INVASIVENESS, PATTERNS, Pattern, round_proportions
from training import metrics
from training.evaluate import MIN_PATTERN_POSITIVES, predominant_classes
from training.synthetic.pathology import sample_pathology

#: What each imaging sign of the cohort encodes: the patterns whose summed proportion sets it.
SIGNS: dict[str, tuple[Pattern, ...]] = {
    "ground glass": (Pattern.LEPIDIC,),
    "spiculation": (Pattern.MICROPAPILLARY, Pattern.SOLID),
    "lobulation": (Pattern.ACINAR, Pattern.PAPILLARY),
    "bubble lucencies": (Pattern.CRIBRIFORM, Pattern.COMPLEX_GLANDULAR),
}
#: The readers, each seeing the invasiveness and the signs named, in the order they are added.
READERS: tuple[tuple[str, ...], ...] = tuple(
    tuple(list(SIGNS)[:n]) for n in range(len(SIGNS) + 1)
)
HELD_OUT_NODULES = 1500


@dataclass(frozen=True)
class Draws:
    """Nodules drawn from the cohort's pathology sampler."""

    invasiveness: np.ndarray  #: (N,) class index
    proportions: np.ndarray  #: (N, 7) fractions

    @classmethod
    def sample(cls, count: int, rng: np.random.Generator) -> Draws:
        drawn = [sample_pathology(rng) for _ in range(count)]
        return cls(
            invasiveness=np.array([INVASIVENESS.index(p.invasiveness) for p in drawn],
                                  dtype=np.int64),
            proportions=np.array([p.proportions for p in drawn], dtype=np.float64) / 100,
        )

    def reading(self, signs: Sequence[str]) -> np.ndarray:
        """One integer per nodule naming what a reader of ``signs`` sees: the invasiveness
        and each sign's summed proportion in 5 % steps."""
        key = self.invasiveness.copy()
        for sign in signs:
            columns = [PATTERNS.index(p) for p in SIGNS[sign]]
            steps = np.rint(self.proportions[:, columns].sum(axis=1) * 20).astype(np.int64)
            key = key * 21 + steps
        return key


@dataclass(frozen=True)
class ReaderScore:
    """One reader's predominant-pattern macro AUC over the held-out sets (mean and SD)."""

    signs: tuple[str, ...]
    raw: tuple[float, float]
    rounded: tuple[float, float]
    unseen: float  #: share of held-out nodules whose reading never occurred in the draws

    @property
    def name(self) -> str:
        return "invasiveness" + "".join(f" + {s}" for s in self.signs)


@dataclass(frozen=True)
class Reader:
    """E[proportions | reading] of one reader, estimated once from the training draws."""

    signs: tuple[str, ...]
    keys: np.ndarray  #: the readings drawn, sorted
    means: np.ndarray  #: (len(keys), 7) mean fractions of each reading

    @classmethod
    def fit(cls, train: Draws, signs: Sequence[str]) -> Reader:
        keys, index = np.unique(train.reading(signs), return_inverse=True)
        counts = np.bincount(index)
        means = np.stack([np.bincount(index, weights=train.proportions[:, k]) / counts
                          for k in range(len(PATTERNS))], axis=1)
        return cls(tuple(signs), keys, means)

    def estimate(self, held_out: Draws, fallback: Reader | None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The estimate for each held-out nodule, and the mask of the readings never drawn,
        which take ``fallback``'s estimate (the invasiveness-only reader's)."""
        wanted = held_out.reading(self.signs)
        where = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        unseen = self.keys[where] != wanted
        estimate = self.means[where]
        if unseen.any():
            if fallback is None:
                raise ValueError("a held-out reading was never drawn and there is no fallback: "
                                 "draw more nodules")
            estimate[unseen] = fallback.estimate(held_out, None)[0][unseen]
        return estimate, unseen


def served(estimate: np.ndarray) -> np.ndarray:
    """The estimates as the node reports them: 5 % steps summing to 100 (the Predictor's
    rounding), as fractions."""
    return np.array([round_proportions(row.tolist()) for row in estimate], dtype=np.float64) / 100


def score_readers(draws: int, sets: int, seed: int = 0) -> list[ReaderScore]:
    """Every reader of ``READERS`` estimated from ``draws`` nodules and scored on ``sets``
    held-out sets of ``HELD_OUT_NODULES`` nodules."""
    rng = np.random.default_rng(seed)
    train = Draws.sample(draws, rng)
    held = [Draws.sample(HELD_OUT_NODULES, rng) for _ in range(sets)]
    fallback = Reader.fit(train, ())
    scores = []
    for signs in READERS:
        reader = Reader.fit(train, signs)
        raw, rounded, unseen = [], [], []
        for held_out in held:
            estimate, missing = reader.estimate(held_out, fallback)
            truth = predominant_classes(held_out.proportions)
            raw.append(metrics.macro_auc(truth, estimate, MIN_PATTERN_POSITIVES))
            rounded.append(metrics.macro_auc(truth, served(estimate), MIN_PATTERN_POSITIVES))
            unseen.append(float(missing.mean()))
        scores.append(ReaderScore(signs, (float(np.mean(raw)), float(np.std(raw))),
                                  (float(np.mean(rounded)), float(np.std(rounded))),
                                  float(np.mean(unseen))))
    return scores


def table(scores: Sequence[ReaderScore]) -> str:
    """The scores as a Markdown table."""
    lines = ["| reader sees | macro AUC, raw | macro AUC, 5 % steps | readings not drawn |",
             "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.raw[0]:.3f} ± {s.raw[1]:.3f} | "
              f"{s.rounded[0]:.3f} ± {s.rounded[1]:.3f} | {s.unseen:.1%} |" for s in scores]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=500_000,
                        help="nodules drawn to estimate each reader (default 500,000)")
    parser.add_argument("--sets", type=int, default=20,
                        help=f"held-out sets of {HELD_OUT_NODULES} nodules (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.draws < 1 or args.sets < 1:
        parser.error("--draws and --sets must be >= 1")
    print(table(score_readers(args.draws, args.sets, args.seed)))


if __name__ == "__main__":
    main()
