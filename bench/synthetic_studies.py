"""The fixed set of synthetic studies the imaging benches and tests run on.

Study ``i`` of ``SEED``: three nodules, and in every other study the first one forced to a
pure ground-glass (AIS, lepidic 100) nodule of 5-10 mm, the hardest kind to detect. Studies
are generated once into a cache folder named after a digest of the generator's source, so a
change to the generator makes new studies instead of reusing stale ones.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import training.synthetic
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


@cache
def generator_digest() -> str:
    """12 hex digits of SHA-256 over the generator's Python sources."""
    digest = hashlib.sha256()
    for path in sorted(Path(training.synthetic.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def study(root: Path, index: int, acquisition: str = "standard") -> tuple[Path, dict[str, Any]]:
    """The folder and truth (truth.json as a dict) of study ``index``, generated on first use."""
    folder = root / f"{acquisition}-{SEED}-{index:03d}-{generator_digest()}"
    if not (folder / TRUTH_FILE).is_file():
        generate_study(folder, seed=SEED, index=index, acquisition=acquisition,
                       nodules=nodule_specs(index))
    truth: dict[str, Any] = json.loads((folder / TRUTH_FILE).read_text())
    return folder, truth
