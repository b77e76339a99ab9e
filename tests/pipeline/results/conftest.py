from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import Dataset

from tests.conftest import require_tool
from tests.pipeline.results.synthetic import SPHERES, ct_series

#: the one dciodvfy warning lungpath's objects may raise (docs/conformance-codes.md): the
#: private coding scheme is not in DICOM's list of defined coding schemes
ACCEPTED_WARNINGS = frozenset({
    "Warning - Unrecognized defined term <99LUNGPATH> for value 1 of attribute "
    "<Coding Scheme Designator>",
})


@pytest.fixture(scope="package")
def series() -> list[Dataset]:
    """A 64 x 64 x 20 synthetic CT series with the three nodules of ``SPHERES``."""
    return ct_series(list(SPHERES))


def save(dataset: Dataset, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)
    return path


def dciodvfy(path: Path) -> list[str]:
    """Run dicom3tools' validator; return its Error and Warning lines."""
    done = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True,
                          text=True, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    return [line.strip() for line in lines if line.startswith(("Error", "Warning"))]


def assert_valid(path: Path) -> None:
    """No dciodvfy error, and no warning beyond the documented ones."""
    reported = dciodvfy(path)
    errors = [line for line in reported if line.startswith("Error")]
    assert not errors, errors
    assert set(reported) <= ACCEPTED_WARNINGS, set(reported) - ACCEPTED_WARNINGS
