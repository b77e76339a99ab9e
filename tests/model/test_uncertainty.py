from __future__ import annotations

import math

import pytest
import torch

from model.uncertainty import FLIPS, flip_views, normalised_entropy


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        ((1.0, 0.0, 0.0), 0.0),
        ((0.0, 0.0, 1.0), 0.0),
        ((1 / 3, 1 / 3, 1 / 3), 100.0),
        ((0.5, 0.5, 0.0), 100 * math.log(2) / math.log(3)),  # 63.09
        ((0.8, 0.1, 0.1), 58.1672),  # -(0.8 ln 0.8 + 0.2 ln 0.1) / ln 3
        ((0.98, 0.01, 0.01), 10.1858),
        ((0.6, 0.3, 0.1), 81.7345),
        ((0.5, 0.5), 100.0),
    ],
)
def test_normalised_entropy_table(probabilities: tuple[float, ...], expected: float) -> None:
    got = normalised_entropy(torch.tensor([probabilities]))
    assert got.item() == pytest.approx(expected, abs=1e-3)
    assert 0 <= got.item() <= 100


def test_uncertainty_stays_in_range_for_any_probabilities() -> None:
    torch.manual_seed(1)
    logits = torch.randn(1000, 3) * torch.logspace(-3, 3, 1000).unsqueeze(1)
    values = normalised_entropy(logits.softmax(1))
    assert float(values.min()) >= 0 and float(values.max()) <= 100


@pytest.mark.parametrize("bad", [torch.tensor([[0.5, 0.6, 0.0]]), torch.tensor([[-0.1, 1.1]]),
                                 torch.tensor([1.0, 0.0]), torch.tensor([[1.0]])])
def test_refuses_what_is_not_probabilities(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="probabilities"):
        normalised_entropy(bad)


def test_flip_views_are_view_major() -> None:
    batch = torch.arange(2 * 8).reshape(2, 1, 2, 2, 2).float()
    views = flip_views(batch)
    assert views.shape == (2 * len(FLIPS), 1, 2, 2, 2)
    assert torch.equal(views[:2], batch)
    assert torch.equal(views[2:4], batch.flip(2))
    assert torch.equal(views[6:8], batch.flip(4))
