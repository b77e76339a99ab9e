"""The ``lungpath`` command line.

Every command lives in a module of this package by area and registers itself on ``main``.
Commands build the settings through ``Context.settings`` so that a bad value always ends the
same way: one line naming the setting, exit code 2. A command whose capability has not been
built yet says so and exits 3 rather than pretending to work.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from lungpath import __version__
from lungpath.settings import Settings, SettingsError, load_settings

EXIT_BAD_SETTING = 2
EXIT_NOT_AVAILABLE = 3


@dataclass
class Context:
    """What the top-level group hands to every command."""

    config_file: Path | None

    def settings(self, **overrides: Any) -> Settings:
        """Load the settings with this command's options on top; exit 2 on a bad value."""
        try:
            settings = load_settings(self.config_file, overrides)
        except SettingsError as e:
            fail(str(e), EXIT_BAD_SETTING)
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
        return settings


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``lungpath: message`` on stderr and exit with ``code``."""
    click.echo(f"lungpath: {message}", err=True)
    sys.exit(code)


def not_available(command: str, capability: str) -> NoReturn:
    """End a command whose capability is not part of this build yet (exit code 3)."""
    fail(f"'{command}' is not available in this version: {capability} is not built yet",
         EXIT_NOT_AVAILABLE)


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="LUNGPATH_CONFIG",
    help="TOML settings file (below environment variables and options in precedence).",
)
@click.pass_context
def main(ctx: click.Context, config_file: Path | None) -> None:
    """lungpath: a DICOM node that predicts lung adenocarcinoma pathology with SD-MdaNet.

    Settings come from options, LUNGPATH_* environment variables, the --config file and the
    defaults (embedded mode under ./var/), in that order of precedence.
    """
    ctx.obj = Context(config_file=config_file)


@main.command()
def version() -> None:
    """Print the lungpath version."""
    click.echo(f"lungpath {__version__}")


def _register() -> None:
    from lungpath.cli import audit, model_commands, node, results, synth  # noqa: F401


_register()
