"""The code table and the summary-image example in docs/ match what the writers produce."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.results import codes
from pipeline.results.sc import SIZE
from tests.conftest import REPO_ROOT
from tests.pipeline.results.sc_example import NODULE_EXAMPLE, STATUS_EXAMPLE

CODE_TABLE = REPO_ROOT / "docs" / "conformance-codes.md"


def test_code_table_lists_every_code_used() -> None:
    text = CODE_TABLE.read_text()
    missing = [c.value for c in codes.private_codes() if f"| `{c.value}` | {c.meaning} |"
               not in text]
    assert not missing, f"99LUNGPATH codes missing from {CODE_TABLE.name}: {missing}"
    missing = [c.value for c in codes.standard_codes() if c.value not in text]
    assert not missing, f"standard codes missing from {CODE_TABLE.name}: {missing}"


def test_summary_examples_are_summary_images() -> None:
    for path in (NODULE_EXAMPLE, STATUS_EXAMPLE):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert pixels.shape == (SIZE, SIZE, 3), path
        assert path.name in (REPO_ROOT / "docs" / "result-objects.md").read_text()
