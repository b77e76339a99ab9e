"""The deployment files are checked by the tools their platforms use, without a container engine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lungpath.settings import ENV_PREFIX, Settings, load_settings
from tests.conftest import REPO_ROOT, require_tool

DEPLOY = REPO_ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
INSTALL_PREFIX = "/opt/lungpath/.venv/bin/lungpath"


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    done = _run(str(VENV_BIN / "hadolint"), str(DEPLOY / "docker" / dockerfile))
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_is_valid() -> None:
    compose = require_tool("docker-compose")
    done = _run(compose, "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q")
    assert done.returncode == 0, done.stderr


def test_kubernetes_manifests_match_the_schemas() -> None:
    manifests = sorted(str(p) for p in (DEPLOY / "k8s").glob("*.yaml"))
    done = _run(str(VENV_BIN / "kubernetes-validate"), "--strict", *manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == sum(
        len([d for d in yaml.safe_load_all(Path(m).read_text()) if d]) for m in manifests
    )


@pytest.mark.parametrize("unit", ["lungpath-node.service", "lungpath-worker.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    # the units name the install prefix of docs/operations.md; verify them against this one
    text = (DEPLOY / "systemd" / unit).read_text()
    assert INSTALL_PREFIX in text
    copy = tmp_path / unit
    copy.write_text(text.replace(INSTALL_PREFIX, str(VENV_BIN / "lungpath")))
    done = _run(analyze, "verify", str(copy))
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def _environment_names() -> set[str]:
    names: set[str] = set()
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        names |= set(service.get("environment") or {})
    names |= set(compose["x-lungpath-env"])
    for manifest in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(manifest.read_text()):
            names |= set((doc or {}).get("data") or {}) | set((doc or {}).get("stringData") or {})
    for dockerfile in (DEPLOY / "docker").glob("Dockerfile*"):
        names |= set(re.findall(r"\b(LUNGPATH_[A-Z_]+)=", dockerfile.read_text()))
    return {n for n in names if n.startswith(ENV_PREFIX)}


def test_every_variable_in_the_deployment_files_is_a_setting() -> None:
    names = _environment_names()
    assert "LUNGPATH_DATABASE_URL" in names
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert names <= fields, names - fields


def test_example_settings_file_loads(clean_env: Path) -> None:
    settings = load_settings(
        DEPLOY / "lungpath.example.toml",
        {"var_dir": clean_env / "var", "store_dir": clean_env / "store"},
    )
    assert settings.database.startswith("postgresql+psycopg://")
    assert settings.destinations[0].ae_title == "PACS_MAIN"
