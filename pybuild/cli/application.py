"""The Typer app, the state every command shares (the store), and the global options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .. import __version__

if TYPE_CHECKING:
    from ..layout import ImageStore


class Interrupted(Exception):
    """Ctrl-C (or SIGINT/SIGTERM during a RUN) inside a command."""


class _Group(typer.core.TyperGroup):
    """Typer turns a KeyboardInterrupt into a silent `Exit(130)`; keep it visible to :func:`main`."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted from None


app = typer.Typer(
    cls=_Group,
    name="pybuild",
    help="Rootless OCI container image toolchain: build, unpack, repack and move images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class State:
    """What the global options chose. The store is opened (and the layout code loaded) on first use:
    `login` never needs it."""

    explicit_store: Path | None = None
    _store: ImageStore | None = None

    @property
    def store_path(self) -> Path:
        from ..layout.imagestore import default_store_path

        return self.explicit_store or default_store_path()

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            from ..layout import ImageStore

            self._store = ImageStore.at(self.store_path)
        return self._store


def state_of(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pybuild {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    store: Path | None = typer.Option(
        None, "--store", envvar="PYBUILD_STORE", help="The image store (default $XDG_DATA_HOME/pybuild)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Rootless OCI container image toolchain."""
    ctx.obj = State(explicit_store=store)
