"""The predominant-pattern ceiling of the synthetic cohort (training.ceiling)."""

from __future__ import annotations

import numpy as np
import pytest

from training.ceiling import READERS, Draws, Reader, score_readers, served


def _draws(invasiveness: list[int], percents: list[list[int]]) -> Draws:
    return Draws(np.array(invasiveness), np.array(percents, dtype=np.float64) / 100)


def test_a_reading_sees_the_summed_proportions_of_each_sign_and_nothing_else() -> None:
    draws = _draws([2, 2, 2, 1], [
        [10, 40, 10, 20, 10, 5, 5],
        [10, 10, 40, 10, 20, 0, 10],  # same sums as the first: acinar <-> papillary etc.
        [10, 40, 10, 25, 5, 5, 5],  # same sums again (micropapillary + solid = 30)
        [10, 40, 10, 20, 10, 5, 5],  # the first's proportions, another invasiveness
    ])
    every_sign = draws.reading(READERS[-1])
    assert every_sign[0] == every_sign[1] == every_sign[2]
    assert len(set(every_sign[[0, 3]])) == 2
    moved = _draws([2], [[10, 40, 10, 15, 10, 10, 5]])  # 5 % from spiculation to bubbles
    for reader, same in ((READERS[-1], False), (READERS[2], False), (READERS[1], True)):
        # ground glass alone does not see the move
        assert bool(moved.reading(reader)[0] == draws.reading(reader)[0]) == same


def test_a_reader_averages_alike_readings_and_falls_back_when_unseen() -> None:
    train = _draws([2, 2, 1], [
        [20, 80, 0, 0, 0, 0, 0],
        [20, 40, 40, 0, 0, 0, 0],
        [80, 20, 0, 0, 0, 0, 0],
    ])
    held_out = _draws([2, 2], [
        [20, 0, 80, 0, 0, 0, 0],  # read like the first two training nodules
        [50, 50, 0, 0, 0, 0, 0],  # a reading never drawn
    ])
    estimate, unseen = Reader.fit(train, READERS[-1]).estimate(held_out, Reader.fit(train, ()))
    assert unseen.tolist() == [False, True]
    np.testing.assert_allclose(estimate[0], [0.2, 0.6, 0.2, 0, 0, 0, 0])
    np.testing.assert_allclose(estimate[1], [0.2, 0.6, 0.2, 0, 0, 0, 0])  # IAC-only mean


def test_served_estimates_are_five_percent_steps_summing_to_one() -> None:
    out = served(np.array([[0.33, 0.33, 0.34, 0, 0, 0, 0], [0.91, 0.02, 0.02, 0.02, 0.01,
                                                            0.01, 0.01]]))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(out * 20, np.rint(out * 20))


def test_reading_more_signs_ranks_the_predominant_pattern_better() -> None:
    scores = score_readers(draws=10_000, sets=2, seed=3)
    assert [s.signs for s in scores] == list(READERS)
    invasiveness_only, ground_glass, *_, every_sign = scores
    assert ground_glass.raw[0] > invasiveness_only.raw[0] + 0.03
    assert every_sign.raw[0] > ground_glass.raw[0] + 0.05
    assert every_sign.rounded[0] == pytest.approx(every_sign.raw[0], abs=0.02)
