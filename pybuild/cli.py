"""The Typer app: the only code that prints, formats errors and picks exit codes."""

from __future__ import annotations

import os
import sys

import typer

from . import __version__
from .errors import PybuildError

app = typer.Typer(
    name="pybuild",
    help="Rootless OCI container image toolchain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pybuild {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Rootless OCI container image toolchain."""


def main() -> None:
    """Console entry point: run the app, turning PybuildError into one line and exit status 1."""
    try:
        app(standalone_mode=True)
    except PybuildError as exc:
        if os.environ.get("PYBUILD_DEBUG") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        for hint in exc.hints:
            print(f"hint: {hint}", file=sys.stderr)
        sys.exit(1)
