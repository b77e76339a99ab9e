from __future__ import annotations

from pathlib import Path

import pytest

from lungpath.settings import Settings, SettingsError, load_settings

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_are_the_embedded_mode(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.port == 11112
    assert settings.store_path == Path("var/store")
    assert settings.database.startswith("sqlite:///") and settings.database.endswith("lungpath.db")
    assert settings.broker.startswith("sqla+sqlite:///")
    assert (clean_env / "var" / "store").is_dir()


def test_precedence_cli_over_env_over_file_over_defaults(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "lungpath.toml"
    config.write_text('port = 2000\nae_title = "FROMFILE"\nstable_seconds = 7\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("LUNGPATH_PORT", "3000")
    monkeypatch.setenv("LUNGPATH_AE_TITLE", "FROMENV")
    settings = load_settings(config, {"port": 4000, "host": None})
    assert settings.port == 4000  # CLI beats env and file
    assert settings.ae_title == "FROMENV"  # env beats file
    assert settings.stable_seconds == 7  # file beats default
    assert settings.host == "0.0.0.0"  # an unset CLI option does not hide the file
    assert settings.min_free_disk_mb == Settings.model_fields["min_free_disk_mb"].default


@pytest.mark.parametrize(
    ("overrides", "setting", "words"),
    [
        ({"port": 70000}, "port", "1..65535"),
        ({"ae_title": "NAME\\WITH\\BACKSLASH"}, "ae_title", "AE title"),
        ({"ae_title": "A" * 17}, "ae_title", "AE title"),
        ({"broker_url": "kafka://localhost"}, "broker_url", "unknown broker scheme"),
        ({"database_url": "mysql://localhost/x"}, "database_url", "unknown database scheme"),
        ({"tls_cert_file": "cert.pem", "tls_key_file": "missing.key"}, "tls_cert_file",
         "does not exist"),
        ({"log_level": "LOUD"}, "log_level", "one of"),
        ({"device": "tpu"}, "device", "cuda"),
        ({"stable_seconds": -1}, "stable_seconds", "greater than 0"),
        ({"destinations": [{"ae_title": "PACS", "host": "h", "port": 0}]}, "destinations",
         "port"),
    ],
)
def test_bad_values_name_the_setting(
    clean_env: Path, overrides: dict[str, object], setting: str, words: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, overrides)
    assert info.value.setting == setting
    message = str(info.value)
    assert "\n" not in message
    assert f"LUNGPATH_{setting.upper()}" in message and words in message


def test_missing_tls_key_file_is_named(clean_env: Path) -> None:
    (clean_env / "cert.pem").write_text("x")
    with pytest.raises(SettingsError) as info:
        load_settings(None, {"tls_cert_file": "cert.pem", "tls_key_file": "node.key"})
    assert info.value.setting == "tls_key_file"


def test_store_that_cannot_be_created(clean_env: Path) -> None:
    blocker = clean_env / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SettingsError) as info:
        load_settings(None, {"store_dir": blocker / "store"})
    assert info.value.setting == "store_dir"


def test_env_values_are_validated(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNGPATH_PORT", "eleven")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.setting == "port"


def test_config_file_errors(clean_env: Path) -> None:
    bad = clean_env / "bad.toml"
    bad.write_text("port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad)
    unknown = clean_env / "unknown.toml"
    unknown.write_text("prot = 104\n")
    with pytest.raises(SettingsError) as info:
        load_settings(unknown)
    assert info.value.setting == "prot"
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(clean_env / "nope.toml")


def test_destinations_from_env_json(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LUNGPATH_DESTINATIONS", '[{"ae_title": "PACS", "host": "127.0.0.1", "port": 4242}]'
    )
    (destination,) = load_settings().destinations
    assert (destination.ae_title, destination.port) == ("PACS", 4242)
