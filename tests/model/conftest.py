from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

#: a network small enough to train in a test: two blocks of one layer, 16^3 crops
TINY: dict[str, Any] = {"stem_channels": 4, "block_layers": (1, 1), "growth": 4,
                        "bottleneck": 2, "embedding_dim": 8}
TINY_PLAIN: dict[str, Any] = {"widths": (4, 8), "embedding_dim": 8}


@pytest.fixture(autouse=True)
def _seeded_one_thread() -> Iterator[None]:
    """Seeded, and on one thread: the test machine's cores are shared, and two threads
    contending with other processes make small 3D networks an order of magnitude slower."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
