"""Running images: run, doctor."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import UsageError
from ..layout import (
    load_image,
)
from .app import app, state_of
from .options import pairs
from .output import echo_json
from .refs import locate


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The image to run."),
    command: list[str] = typer.Argument(None, help="The command (after --); default: Entrypoint + Cmd."),
    network: str = typer.Option("host", "--network", help="host (shared, the default) or none."),
    volume: list[str] = typer.Option([], "-v", "--volume", help="SRC:DST[:ro] bind mount."),
    env: list[str] = typer.Option([], "-e", "--env", help="K=V: set an environment variable."),
    user: str | None = typer.Option(None, "--user", help="User (name or uid[:gid]); default: the image's."),
    workdir: str | None = typer.Option(None, "--workdir", help="Working directory; default: the image's."),
) -> None:
    """Run a command in a throwaway container from an image; exits with the command's status."""
    import tempfile

    from ..run import RunSpec, run_container
    from ..run.layers import layer_dirs, remove_tree

    if network not in ("host", "none"):
        raise UsageError(f"--network {network!r}: expected host or none")
    mounts = []
    for spec in volume:
        parts = spec.split(":")
        if (
            len(parts) not in (2, 3)
            or not parts[0]
            or not parts[1].startswith("/")
            or parts[2:] not in ([], ["ro"], ["rw"])
        ):
            raise UsageError(f"--volume {spec!r}: expected SRC:DST[:ro] with an absolute DST")
        if not os.path.exists(parts[0]):
            raise UsageError(f"--volume {spec!r}: {parts[0]} does not exist")
        mounts.append((os.path.abspath(parts[0]), parts[1], parts[2:] == ["ro"]))
    state = state_of(ctx)
    found = locate(state, ref)
    image = load_image(found.layout, found.descriptor)
    runtime = image.config.runtime
    given = list(command or [])
    if given[:1] == ["--"]:
        given = given[1:]
    args = given or list(runtime.get("Entrypoint") or []) + list(runtime.get("Cmd") or [])
    if not args:
        raise UsageError(f"{ref} has no Entrypoint or Cmd: give a command after --")
    environment = {e.partition("=")[0]: e for e in runtime.get("Env") or []}
    for k, v in pairs(env, "--env").items():
        environment[k] = f"{k}={v}"
    lowers = layer_dirs(state.store, image)
    scratch = state.store.private.run_workspaces
    scratch.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix="ctr-", dir=scratch))
    try:
        (top / "upper").mkdir()
        result = run_container(
            RunSpec(
                lowerdirs=lowers,
                upperdir=top / "upper",
                args=args,
                env=list(environment.values()),
                cwd=workdir or runtime.get("WorkingDir") or "/",
                user=user if user is not None else runtime.get("User") or "",
                network=network,
                mounts=mounts,
            )
        )
    finally:
        remove_tree(top)
    raise typer.Exit(result.exit_status)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check that rootless builds can work here, and say how to fix what is missing."""
    from ..run import doctor as run_doctor

    checks = run_doctor()
    if as_json:
        echo_json([c.__dict__ for c in checks])
    else:
        for c in checks:
            mark = "ok     " if c.ok else ("problem" if c.required else "warning")
            typer.echo(f"{mark}  {c.name}: {c.detail}")
            if not c.ok and c.fix:
                typer.echo(f"         fix: {c.fix}")
    if any(c.required and not c.ok for c in checks):
        raise typer.Exit(1)
