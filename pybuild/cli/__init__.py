"""The Typer app: the only code that prints, formats errors and picks exit codes. One module per
group of commands; importing one registers its commands on the app.

Start-up is kept to what the command line asks for: ``pybuild --version`` prints without loading
Typer at all, and a command loads only its own module (the table is in :mod:`.commands`). ``app``
is loaded on first use, with every command registered, in the order ``--help`` lists them."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself is not imported: it costs as much as the rest of --version
if TYPE_CHECKING:
    from typing import Any

__all__ = ["app", "main"]


def main() -> None:
    """The console entry point (``pybuild.cli:main``); see :func:`pybuild.cli.main.main`."""
    if sys.argv[1:] == ["--version"]:  # the same line as the Typer option prints, without Typer
        from .. import __version__

        print(f"pybuild {__version__}")
        return
    from .main import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from .application import app
        from .commands import load_commands

        load_commands([])
        globals()["app"] = app  # the next access is a plain lookup
        return app
    raise AttributeError(f"module 'pybuild.cli' has no attribute {name!r}")
