"""The one settings object of lungpath.

Settings come from, in decreasing precedence: command-line options, ``LUNGPATH_*``
environment variables, an optional TOML file (``--config``), and the defaults below. The
defaults are the embedded mode: everything under ``./var/`` (SQLite database, local store,
the server-less SQLAlchemy broker), so a fresh checkout runs with nothing else installed.

The object is built once by the composition root (the CLI) and passed down; no other module
reads the environment. Validation happens here, at start, so a bad value stops the process
with one line naming the setting instead of failing deep inside a handler later.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.routing import RoutingRules

ENV_PREFIX = "LUNGPATH_"

#: Broker URL schemes lungpath supports: kombu's SQLAlchemy transport (server-less), Redis
#: and RabbitMQ (AMQP).
BROKER_SCHEMES = ("sqla+sqlite", "sqla+postgresql", "redis", "rediss", "amqp", "amqps", "pyamqp")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")

# DICOM PS3.5 Table 6.2-1: AE titles are up to 16 characters of the Default Character
# Repertoire without backslash or control characters, and not entirely spaces.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


class SettingsError(ValueError):
    """A setting has a value lungpath cannot run with.

    ``setting`` is the field name; ``str(error)`` is one line naming the setting, its
    environment variable and what is wrong, fit to print before exiting with code 2.
    """

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        env = ENV_PREFIX + setting.upper() if setting else ""
        where = f"{setting} ({env})" if setting else "configuration"
        super().__init__(f"invalid setting {where}: {reason}")


def validate_ae_title(value: str) -> str:
    """Return ``value`` if it is a valid DICOM AE title, else raise ``ValueError``."""
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError(
            f"{value!r} is not a DICOM AE title (1-16 printable ASCII characters, "
            "no backslash, not all spaces)"
        )
    return value


def _validate_allow_entry(value: str) -> str:
    """``AE`` or ``AE@address[/prefix]``: a calling AE, optionally bound to peer addresses."""
    title, at, address = value.partition("@")
    validate_ae_title(title)
    if at:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ValueError(f"{value!r}: {address!r} is not an IP address or network") from None
    return value


class Destination(BaseModel):
    """A DICOM peer that receives lungpath's result objects (SR, SC, SEG)."""

    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    #: Only studies sent by this calling AE go here; ``None`` means the default destination.
    for_calling_ae: str | None = None
    #: Reach it over TLS: its certificate must chain to ``tls_ca_file`` (else the system's
    #: CAs) and name ``host``; the node shows ``tls_cert_file`` if the peer asks for one.
    tls: bool = False

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return validate_ae_title(value)


class Settings(BaseSettings):
    """Everything an operator can set. Field names map to ``LUNGPATH_<NAME>`` variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    # where things live
    var_dir: Path = Path("var")
    store_dir: Path | None = None
    database_url: str | None = None
    broker_url: str | None = None

    # the DICOM node
    ae_title: str = "LUNGPATH"
    host: str = "127.0.0.1"
    port: int = Field(default=11112)
    allowed_calling_aes: list[str] = Field(default_factory=list)
    stable_seconds: float = Field(default=60.0, gt=0)
    min_free_disk_mb: int = Field(default=1024, ge=0)
    max_associations: int = Field(default=16, ge=1)
    max_pdu: int = Field(default=0, ge=0)
    acse_timeout: float = Field(default=30.0, gt=0)
    dimse_timeout: float = Field(default=60.0, gt=0)
    network_timeout: float = Field(default=60.0, gt=0)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    max_instances_per_association: int = Field(default=0, ge=0)  # 0: no limit
    max_study_bytes: int = Field(default=0, ge=0)  # 0: no limit
    receivers: int = Field(default=1, ge=1, le=64)  # receiving processes (SO_REUSEPORT)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    # analysis and delivery
    checkpoint: Path | None = None
    device: str = "auto"
    research_mode: bool = False
    destinations: list[Destination] = Field(default_factory=list)

    # orchestration (pipeline.queue, lungpath.dispatch) and delivery (pipeline.delivery)
    #: prepended to the Celery queue names, so that several nodes (or test runs) can share
    #: one broker without taking each other's tasks
    queue_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]*$", max_length=64)
    #: seconds between two passes of the dispatcher and reconciler in the node
    dispatch_interval: float = Field(default=2.0, gt=0)
    #: seconds the server-less broker's consumers wait between two polls of its database
    broker_polling_interval: float = Field(default=1.0, gt=0)
    #: seconds a study may wait in QUEUED before the reconciler sends its task again
    queued_deadline_seconds: float = Field(default=3600.0, gt=0)
    #: the analysis' soft time limit (the task ends FAILED) and hard limit (the worker
    #: process is killed); a PROCESSING study is re-sent once the hard limit plus
    #: ``reconcile_grace_seconds`` has passed
    analysis_soft_time_limit: float = Field(default=900.0, gt=0)
    analysis_time_limit: float = Field(default=1200.0, gt=0)
    reconcile_grace_seconds: float = Field(default=60.0, ge=0)
    #: sends of one analysis (the first one included) before the study is FAILED
    max_analysis_attempts: int = Field(default=3, ge=1)
    #: worker processes of ``lungpath worker`` (Celery's prefork pool)
    worker_concurrency: int = Field(default=1, ge=1, le=64)
    #: whether ``lungpath serve`` starts a worker child process with the server-less broker
    embedded_worker: bool = True
    #: first retry delay of a delivery; it doubles up to ``delivery_max_backoff_seconds``
    #: and the delivery is given up once ``delivery_window_seconds`` have passed
    delivery_initial_backoff_seconds: float = Field(default=30.0, gt=0)
    delivery_max_backoff_seconds: float = Field(default=3600.0, gt=0)
    delivery_window_seconds: float = Field(default=86400.0, gt=0)

    # which studies are analysed (pipeline.routing) and which series (pipeline.series)
    routing_modalities: list[str] = Field(default_factory=lambda: ["CT"], min_length=1)
    routing_body_parts: list[str] = Field(default_factory=lambda: ["chest", "thorax", "lung"])
    routing_descriptions: list[str] = Field(
        default_factory=lambda: ["chest", "thora", "lung", "pulmo"]
    )
    routing_accept_unlabelled: bool = True
    routing_calling_aes: list[str] = Field(default_factory=list)
    answer_not_analysed: bool = False
    min_series_images: int = Field(default=30, ge=2)

    # operations
    log_level: str = "INFO"
    metrics_port: int | None = None
    #: Audit events older than this many days may be deleted by ``lungpath purge``; unset
    #: keeps them forever. Study data has its own window (``purge --older-than``).
    audit_retention_days: int | None = Field(default=None, ge=1)
    #: Where audit events are also sent as DICOM audit messages (PS3.15 A.5) in RFC 5424
    #: syslog: ``udp://host:port`` (RFC 5426) or ``tls://host:port`` (RFC 5425); unset: not
    #: sent. ``atna_ca_file``: the CA certificates a TLS collector's certificate must chain to.
    atna_syslog_url: str | None = None
    atna_ca_file: Path | None = None

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return validate_ae_title(value)

    @field_validator("allowed_calling_aes")
    @classmethod
    def _calling_aes(cls, value: list[str]) -> list[str]:
        return [_validate_allow_entry(v) for v in value]

    @field_validator("routing_calling_aes")
    @classmethod
    def _routing_aes(cls, value: list[str]) -> list[str]:
        return [validate_ae_title(v) for v in value]

    @field_validator("routing_body_parts", "routing_descriptions")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None
        return value

    @field_validator("port", "metrics_port")
    @classmethod
    def _port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError(f"port must be 1..65535, got {value}")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR")
        if value.upper() not in levels:
            raise ValueError(f"must be one of {', '.join(levels)}, got {value!r}")
        return value.upper()

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "auto" and value != "cpu" and not re.fullmatch(r"cuda(:\d+)?", value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value is not None:
            scheme = value.split("://", 1)[0]
            if "://" not in value or scheme not in BROKER_SCHEMES:
                raise ValueError(
                    f"unknown broker scheme {scheme!r}; use one of {', '.join(BROKER_SCHEMES)}"
                )
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is not None:
            scheme = value.split("://", 1)[0]
            if "://" not in value or scheme not in DATABASE_SCHEMES:
                raise ValueError(
                    f"unknown database scheme {scheme!r}; use one of {', '.join(DATABASE_SCHEMES)}"
                )
        return value

    @model_validator(mode="after")
    def _time_limits(self) -> Settings:
        if self.analysis_soft_time_limit >= self.analysis_time_limit:
            raise _FieldError("analysis_soft_time_limit",
                              f"must be below analysis_time_limit ({self.analysis_time_limit})")
        if self.delivery_initial_backoff_seconds > self.delivery_max_backoff_seconds:
            raise _FieldError("delivery_initial_backoff_seconds",
                              "must not exceed delivery_max_backoff_seconds "
                              f"({self.delivery_max_backoff_seconds})")
        return self

    @field_validator("atna_syslog_url")
    @classmethod
    def _atna_url(cls, value: str | None) -> str | None:
        if value is not None:
            match = re.fullmatch(r"(udp|tls)://([^:/\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", value)
            if match is None or not 0 < int(match.group(3)) <= 65535:
                raise ValueError(f"must be udp://host:port or tls://host:port, got {value!r}")
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        for name in ("tls_cert_file", "tls_key_file", "tls_ca_file", "checkpoint",
                     "atna_ca_file"):
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                raise _FieldError(name, f"file {str(path)!r} does not exist")
        return self

    # -- derived locations: defaults follow var_dir unless set explicitly ---------------

    @property
    def store_path(self) -> Path:
        """Folder of received instances and produced result objects."""
        return self.store_dir if self.store_dir is not None else self.var_dir / "store"

    @property
    def database(self) -> str:
        """SQLAlchemy URL of the audit database (SQLite file under var_dir by default)."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'lungpath.db').resolve()}"

    @property
    def broker(self) -> str:
        """Celery broker URL (kombu's SQLAlchemy transport on SQLite by default)."""
        if self.broker_url is not None:
            return self.broker_url
        return f"sqla+sqlite:///{(self.var_dir / 'broker.db').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        """Whether the broker is the server-less one (kombu's SQLAlchemy transport)."""
        return self.broker.startswith("sqla+")

    @property
    def routing_rules(self) -> RoutingRules:
        """The routing settings as the pipeline's ``RoutingRules``."""
        return RoutingRules(
            modalities=tuple(self.routing_modalities),
            body_part_patterns=tuple(self.routing_body_parts),
            description_patterns=tuple(self.routing_descriptions),
            accept_unlabelled=self.routing_accept_unlabelled,
            calling_aes=tuple(self.routing_calling_aes),
            answer_not_analysed=self.answer_not_analysed,
        )

    @property
    def tls_enabled(self) -> bool:
        """Whether the node serves DICOM over TLS."""
        return self.tls_cert_file is not None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI options arrive as init kwargs; the TOML file is merged in load_settings so
        # that it ranks below the environment.
        return (init_settings, env_settings)


class _FieldError(ValueError):
    """Raised by a model validator to blame one field rather than the whole object."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(reason)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError("", f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError("", f"config file {str(path)!r} is not valid TOML: {e}") from None


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build and validate the settings: ``overrides`` (CLI) > environment > file > defaults.

    Raises ``SettingsError`` with one line naming the first bad setting; the store folder is
    created (or found writable) here so a read-only disk is reported at start.
    """
    file_values = _read_toml(config_file) if config_file is not None else {}
    env_keys = {k[len(ENV_PREFIX) :].lower() for k in os.environ if k.startswith(ENV_PREFIX)}
    unknown = sorted(set(file_values) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(unknown[0], "unknown setting in the config file")
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    # file values only for keys neither the CLI nor the environment sets
    merged = {k: v for k, v in file_values.items() if k not in env_keys and k not in cli}
    merged.update(cli)
    try:
        settings = Settings(**merged)
    except ValidationError as e:
        raise _first_error(e) from None
    _check_store_writable(settings.store_path)
    return settings


def _first_error(error: ValidationError) -> SettingsError:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    field = loc[0] if loc else ""
    ctx_error = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _FieldError):
        return SettingsError(ctx_error.field, str(ctx_error))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    if len(loc) > 1:
        message = f"{'.'.join(loc[1:])}: {message}"
    return SettingsError(field, message)


def _check_store_writable(store: Path) -> None:
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SettingsError("store_dir", f"cannot create {str(store)!r}: {e.strerror}") from None
    if not os.access(store, os.W_OK | os.X_OK):
        raise SettingsError("store_dir", f"{str(store)!r} is not writable")
