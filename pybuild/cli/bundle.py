"""Runtime bundles: unpack, repack."""

from __future__ import annotations

from pathlib import Path

import typer

from .application import app, state_of


@app.command()
def unpack(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The image to unpack."),
    bundle: Path = typer.Argument(..., help="The bundle directory to create (rootfs + config.json)."),
    rootless: bool = typer.Option(
        False, "--rootless", help="Write a rootless config.json (the default when run unprivileged)."
    ),
) -> None:
    """Unpack an image into an OCI runtime bundle that runc can run."""
    from ..bundle.unpack import unpack_ref

    unpack_ref(state_of(ctx).store, ref, bundle, rootless=True if rootless else None)


@app.command()
def repack(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., help="A bundle made by `pybuild unpack`."),
    tag_: str = typer.Option(..., "-t", "--tag", help="Name for the new image (store name or oci:DIR:TAG)."),
    compression: str = typer.Option("gzip", "--compression", help="gzip, zstd or none."),
    comment: str = typer.Option("", "--comment", help="History comment for the new layer."),
) -> None:
    """Turn what changed in an unpacked bundle into a new layer on top of its image."""
    from ..bundle.unpack import repack

    new = repack(bundle, state_of(ctx).store, tag_, compression=compression, comment=comment)
    typer.echo(str(new.digest))
