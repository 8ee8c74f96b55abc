"""The Typer app: the only code that prints, formats errors and picks exit codes. One module per
group of commands; importing them registers the commands on the app, in the order `--help` lists."""

# isort: off
from . import inspect, sbom, transfer, login, store, config, build, cache, bundle, run  # noqa: F401
from .app import app
from .main import main

# isort: on

__all__ = ["app", "main"]
