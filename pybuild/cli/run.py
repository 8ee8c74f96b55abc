"""Running images: run, doctor."""

from __future__ import annotations

import typer

from .application import app, state_of
from .options import IsolationOption, isolation_value, pairs
from .output import echo_json


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
    isolation: str | None = IsolationOption,
    platform: str | None = typer.Option(
        None,
        "--platform",
        help="OS/ARCH[/VARIANT]: the image of a list to run (default: this machine's); a foreign one "
        "runs under qemu-user emulation.",
    ),
) -> None:
    """Run a command in a throwaway container from an image; exits with the command's status."""
    from ..bundle.process import Bind, run_image

    binds = [Bind.parse(spec) for spec in volume]
    given = list(command or [])
    if given[:1] == ["--"]:
        given = given[1:]
    state = state_of(ctx)
    status = run_image(
        state.store,
        ref,
        command=given,
        env=pairs(env, "--env"),
        user=user,
        cwd=workdir,
        network=network,
        binds=binds,
        isolation=isolation_value(isolation),
        platform=platform,
    )
    raise typer.Exit(status)


@app.command()
def doctor(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    isolation: str | None = typer.Option(
        None, "--isolation", help="Check this mode (native, fuse, copy, inplace) instead of the one probed."
    ),
) -> None:
    """Probe what a RUN needs here, name the mode builds will use, and say how to fix what is missing."""
    from ..run import doctor as run_doctor

    checks = run_doctor(state_of(ctx).store_path, isolation_value(isolation))
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
