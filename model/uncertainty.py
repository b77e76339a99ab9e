"""The predictive uncertainty the Predictor reports, 0 (certain) to 100.

Method: test-time augmentation by flips. Each crop is seen as itself and mirrored along each
of its three axes (4 views; a nodule has no preferred orientation, so a flip is a plausible
other acquisition of it). The invasiveness probabilities of the views are averaged, and the
uncertainty is the entropy of that average, normalised by its maximum log(3):

    U = 100 * H(mean_v p_v) / log(3),   H(p) = -sum_c p_c log p_c

It is 0 for a one-hot prediction and 100 for the uniform one. Because the average mixes the
views, U grows both when the network hesitates on every view (aleatoric) and when the views
disagree (the network is not invariant on this crop, an epistemic sign). Only task 1 enters:
a mixed growth pattern is a finding, not a doubt.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: the flips of test-time augmentation, as dims of an (N, 1, D, H, W) batch; () = identity
FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))


def normalised_entropy(probabilities: Tensor) -> Tensor:
    """100 * H(p) / log(C) for each row of (N, C) probabilities, in [0, 100]."""
    if probabilities.dim() != 2 or probabilities.shape[1] < 2:
        raise ValueError(
            f'Argument "probabilities" must be shaped (N, C>=2), got {tuple(probabilities.shape)}.'
        )
    if bool((probabilities < 0).any()) or not torch.allclose(
        probabilities.sum(1), torch.ones_like(probabilities[:, 0]), atol=1e-3
    ):
        raise ValueError('Argument "probabilities" must be non-negative rows summing to 1.')
    p = probabilities.double()
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
    return (100 * entropy / math.log(p.shape[1])).clamp(0, 100)


def flip_views(batch: Tensor, flips: tuple[tuple[int, ...], ...] = FLIPS) -> Tensor:
    """The batch's views stacked view-major: rows ``v * N + i`` = crop i under flip v."""
    return torch.cat([batch.flip(dims) if dims else batch for dims in flips], dim=0)
