"""What every network of ``model`` returns, and the input check they share."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class ModelOutput(NamedTuple):
    """One forward pass over a batch of N crops.

    Attributes:
        invasiveness: (N, 3) logits in the order of ``pathology.INVASIVENESS``; None for a
            network that does not learn task 1.
        growth: (N, 7) logits in the order of ``pathology.PATTERNS``; softmax gives the
            proportions, the largest is the predominant pattern; None for a network that does
            not learn task 2.
        embedding: (N, E) L2-normalised embedding of the shared features (triplet term);
            None where the network has none.
        attention_masks: the soft masks M of the main branch's residual attention modules,
            one per block, each shaped like its block's features, values in [0, 1].
        task_masks: the task-specific soft masks, invasiveness' masks first (one per depth),
            then growth's, values in [0, 1].
    """

    invasiveness: Tensor | None
    growth: Tensor | None
    embedding: Tensor | None
    attention_masks: tuple[Tensor, ...] = ()
    task_masks: tuple[Tensor, ...] = ()


def check_input(x: Tensor, min_size: int) -> None:
    """Refuse what is not a batch of one-channel cubes of at least ``min_size`` voxels."""
    if x.dim() != 5 or x.shape[1] != 1:
        raise ValueError(
            f"input must be shaped (N, 1, D, H, W), got {tuple(x.shape)}"
        )
    if min(x.shape[2:]) < min_size:
        raise ValueError(
            f"input edges must be >= {min_size} voxels for this configuration, "
            f"got {tuple(x.shape[2:])}"
        )
