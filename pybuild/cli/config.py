"""pybuild config: a new config for an image, its layers shared."""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer

from ..errors import UsageError
from ..layout import (
    ImageConfig,
    commit_image,
    copy_blobs,
    load_image,
)
from .app import app, state_of
from .options import now_rfc3339, pairs
from .refs import destination, locate

CLEARABLE = {
    "cmd": "Cmd",
    "entrypoint": "Entrypoint",
    "env": "Env",
    "labels": "Labels",
    "volumes": "Volumes",
    "exposedports": "ExposedPorts",
}


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
    found = locate(state, ref)
    image = load_image(found.layout, found.descriptor)
    for field in clear:
        if field.lower() not in CLEARABLE:
            raise UsageError(f"--clear {field!r}: expected one of {', '.join(CLEARABLE)}")
    env_pairs = pairs(env, "--env")
    label_pairs = pairs(label, "--label")
    ports = []
    for port in expose:
        number, _, proto = port.partition("/")
        if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
            raise UsageError(f"--expose {port!r}: expected PORT[/tcp|udp|sctp]")
        ports.append(f"{int(number)}/{proto or 'tcp'}")
    for path in volume:
        if not path.startswith("/"):
            raise UsageError(f"--volume {path!r}: expected an absolute path")
    created = now_rfc3339()
    command = "pybuild config " + " ".join(shlex.quote(a) for a in sys.argv[2:])

    def change(doc: dict[str, Any]) -> None:
        runtime = doc.setdefault("config", {}) or {}
        doc["config"] = runtime
        for field in clear:
            runtime.pop(CLEARABLE[field.lower()], None)
        if cmd:
            runtime["Cmd"] = list(cmd)
        if entrypoint:
            runtime["Entrypoint"] = list(entrypoint)
        if env_pairs:
            current = [e for e in runtime.get("Env") or [] if e.partition("=")[0] not in env_pairs]
            runtime["Env"] = current + [f"{k}={v}" for k, v in env_pairs.items()]
        if workdir is not None:
            runtime["WorkingDir"] = workdir
        if user is not None:
            runtime["User"] = user
        if label_pairs:
            runtime["Labels"] = {**(runtime.get("Labels") or {}), **label_pairs}
        for path in volume:
            runtime.setdefault("Volumes", {})
            runtime["Volumes"] = runtime["Volumes"] or {}
            runtime["Volumes"][path] = {}
        for port in ports:
            runtime["ExposedPorts"] = runtime.get("ExposedPorts") or {}
            runtime["ExposedPorts"][port] = {}
        if stopsignal is not None:
            runtime["StopSignal"] = stopsignal
        if author is not None:
            doc["author"] = author
        doc["created"] = created
        doc.setdefault("history", []).append({"created": created, "created_by": command, "empty_layer": True})

    new_config: ImageConfig = image.config.changed(change)
    layout, name = destination(state, tag_ or ref) if tag_ or found.name else (found.layout, "")
    if not name:
        raise UsageError(f"{ref!r} has no name to update: give one with -t")
    with layout.writing():
        if layout.root != found.layout.root:
            copy_blobs(found.layout, layout, found.descriptor)
        desc = commit_image(
            layout,
            new_config,
            image.layers,
            docker=image.is_docker,
            annotations=image.manifest.annotations or None,
        )
        layout.set_tag(name, desc)
    typer.echo(str(desc.digest))
