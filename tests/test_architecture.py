"""The "may import" table of DESIGN.md, enforced by import-linter, and the package layout."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = ("lungpath", "db", "model", "scp_node", "pipeline", "training")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--config",
         str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": ""},
    )


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__", "weights"))
    return root


@pytest.mark.parametrize("package", PACKAGES)
def test_top_level_packages_are_this_repository(package: str) -> None:
    # db, model and pipeline are also names of unrelated PyPI distributions: make sure the
    # ones imported are ours.
    module = importlib.import_module(package)
    assert Path(module.__file__ or "").resolve().is_relative_to(REPO_ROOT)


def test_import_contracts_hold() -> None:
    done = _lint_imports(REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("db/_forbidden.py", "import model\n", "db imports nothing of ours"),
        ("scp_node/_forbidden.py", "from pipeline import __doc__\n",
         "scp_node may import only db"),
        ("scp_node/_forbidden.py", "import torch\n", "the node side never imports torch"),
        ("model/_forbidden.py", "import lungpath.cli\n", "model imports nothing of ours"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(
    tmp_path: Path, module: str, statement: str, contract: str
) -> None:
    root = _copy_tree(tmp_path)
    assert _lint_imports(root).returncode == 0
    (root / module).write_text(statement)
    done = _lint_imports(root)
    assert done.returncode != 0
    assert f"{contract} BROKEN" in done.stdout, done.stdout
