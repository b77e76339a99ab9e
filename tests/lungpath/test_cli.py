from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from lungpath.cli import EXIT_BAD_SETTING, main
from lungpath.cli.params import parse_duration, parse_instant
from scp_node.tls import server_context
from tests.pki import pki

__all__ = ["pki"]

pytestmark = pytest.mark.usefixtures("clean_env")


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def test_every_command_has_help() -> None:
    runner = CliRunner()
    commands = _all_commands(main)
    assert ("audit", "summary") in commands and ("synth", "preview") in commands
    for path in commands:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.output


def test_console_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lungpath", "version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("lungpath ")


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"LUNGPATH_PORT": "99999"}, "LUNGPATH_PORT"),
        ({"LUNGPATH_AE_TITLE": "THIS_TITLE_IS_TOO_LONG"}, "LUNGPATH_AE_TITLE"),
        ({"LUNGPATH_BROKER_URL": "nats://127.0.0.1"}, "LUNGPATH_BROKER_URL"),
        ({"LUNGPATH_TLS_CERT_FILE": "/no/such.pem", "LUNGPATH_TLS_KEY_FILE": "/no/such.key"},
         "LUNGPATH_TLS_CERT_FILE"),
        ({"LUNGPATH_STORE_DIR": "/proc/lungpath-store"}, "LUNGPATH_STORE_DIR"),
    ],
)
def test_bad_setting_exits_2_with_one_line(env: dict[str, str], setting: str) -> None:
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == EXIT_BAD_SETTING
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0], result.output


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("port = 0\n")
    result = CliRunner().invoke(main, ["--config", str(config), "serve"])
    assert result.exit_code == EXIT_BAD_SETTING and "LUNGPATH_PORT" in result.output


def test_cli_option_beats_environment() -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "0"], env={"LUNGPATH_PORT": "104"})
    assert result.exit_code == EXIT_BAD_SETTING and "got 0" in result.output


def test_durations_and_instants() -> None:
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("7d") == timedelta(days=7)
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert parse_instant("2d", now) == datetime(2026, 1, 8, tzinfo=UTC)
    assert parse_instant("2026-01-01T12:00:00") == datetime(2026, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither"):
        parse_instant("yesterday")
    result = CliRunner().invoke(main, ["audit", "events", "--since", "soon"])
    assert result.exit_code == 2 and "neither an ISO-8601" in result.output


def test_echo_against_a_real_scp(port: int) -> None:
    received: list[str] = []

    def on_echo(event: evt.Event) -> int:
        received.append(event.assoc.requestor.ae_title)
        return 0x0000

    scp = AE(ae_title="PEER")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", port), block=False,
                              evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        result = CliRunner().invoke(main, ["echo", "127.0.0.1", str(port), "PEER"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert "success (0x0000)" in result.output
    assert received == ["LUNGPATH"]


def test_echo_over_tls_checks_the_peer_certificate(port: int, pki: dict[str, Path]) -> None:
    scp = AE(ae_title="PEER")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", port), block=False, ssl_context=server_context(
        pki["node_cert"], pki["node_key"], pki["ca"]))
    ours = {"LUNGPATH_TLS_CA_FILE": str(pki["ca"]), "LUNGPATH_TLS_CERT_FILE":
            str(pki["client_cert"]), "LUNGPATH_TLS_KEY_FILE": str(pki["client_key"])}
    command = ["echo", "localhost", str(port), "PEER", "--timeout", "5"]
    try:
        trusted = CliRunner().invoke(main, [*command, "--tls"], env=ours)
        plain = CliRunner().invoke(main, command, env=ours)
        stranger_ca = {**ours, "LUNGPATH_TLS_CA_FILE": str(pki["stranger_cert"])}
        untrusted = CliRunner().invoke(main, [*command, "--tls"], env=stranger_ca)
    finally:
        server.shutdown()
    assert trusted.exit_code == 0, trusted.output
    assert "success (0x0000)" in trusted.output
    assert plain.exit_code == 1 and "no association with PEER" in plain.output
    assert untrusted.exit_code == 1 and "TLS handshake failed" in untrusted.output


def test_echo_to_nobody_fails_clearly(port: int) -> None:
    result = CliRunner().invoke(main, ["echo", "127.0.0.1", str(port), "PEER", "--timeout", "2"])
    assert result.exit_code == 1
    assert "no association with PEER" in result.output
