"""pybuild config: a new config for an image, its layers shared."""

from __future__ import annotations

import shlex
import sys

import typer

from ..layout.mutate import CLEARABLE, ConfigChanges, configure
from .application import app, state_of
from .options import pairs


@app.command()
def config(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The image to change."),
    tag_: str | None = typer.Option(None, "-t", "--tag", help="Name for the new image (default: REF)."),
    cmd: list[str] = typer.Option([], "--cmd", help="Cmd (repeat for each argument)."),
    entrypoint: list[str] = typer.Option([], "--entrypoint", help="Entrypoint (repeat for each argument)."),
    env: list[str] = typer.Option([], "--env", help="K=V: set an environment variable."),
    workdir: str | None = typer.Option(None, "--workdir", help="Working directory."),
    user: str | None = typer.Option(None, "--user", help="User (name or uid[:gid])."),
    label: list[str] = typer.Option([], "--label", help="K=V: set a label."),
    volume: list[str] = typer.Option([], "--volume", help="Add a volume path."),
    expose: list[str] = typer.Option([], "--expose", help="Expose a port (PORT[/PROTO])."),
    stopsignal: str | None = typer.Option(None, "--stopsignal", help="Stop signal."),
    author: str | None = typer.Option(None, "--author", help="Image author."),
    clear: list[str] = typer.Option([], "--clear", help=f"Clear a field first: {', '.join(CLEARABLE)}."),
) -> None:
    """Change an image's config (like `umoci config`): a new config and manifest, layers shared."""
    state = state_of(ctx)
    changes = ConfigChanges(
        cmd=cmd,
        entrypoint=entrypoint,
        env=pairs(env, "--env"),
        workdir=workdir,
        user=user,
        labels=pairs(label, "--label"),
        volumes=volume,
        exposed_ports=expose,
        stop_signal=stopsignal,
        author=author,
        clear=clear,
    )
    command = "pybuild config " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    desc = configure(state.store, ref, changes, tag=tag_, created_by=command)
    typer.echo(str(desc.digest))
