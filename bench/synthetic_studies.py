"""The fixed set of synthetic studies the imaging benches and tests run on.

Study ``i`` of ``SEED``: three nodules, and in every other study the first one forced to a
pure ground-glass (AIS, lepidic 100) nodule of 5-10 mm, the hardest kind to detect. Studies
are generated once into a cache folder and reused while their truth file exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.synthetic.pathology import NodulePathology
from training.synthetic.scene import NoduleSpec
from training.synthetic.study import TRUTH_FILE, generate_study

SEED = 2026
PURE_GGO = NodulePathology("AIS", (100, 0, 0, 0, 0, 0, 0))


def nodule_specs(index: int) -> list[NoduleSpec]:
    """The forced nodules of study ``index``: a small pure ground-glass one every other study."""
    if index % 2:
        return [NoduleSpec(), NoduleSpec(), NoduleSpec()]
    diameter = 5.0 + (index // 2 % 6)  # 5..10 mm
    return [NoduleSpec(PURE_GGO, diameter), NoduleSpec(), NoduleSpec()]


def study(cache: Path, index: int, acquisition: str = "standard") -> tuple[Path, dict[str, Any]]:
    """The folder and truth (truth.json as a dict) of study ``index``, generated on first use."""
    folder = cache / f"{acquisition}-{SEED}-{index:03d}"
    if not (folder / TRUTH_FILE).is_file():
        generate_study(folder, seed=SEED, index=index, acquisition=acquisition,
                       nodules=nodule_specs(index))
    truth: dict[str, Any] = json.loads((folder / TRUTH_FILE).read_text())
    return folder, truth
