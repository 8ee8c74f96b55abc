"""Runtime bundles: unpack, repack."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import UsageError
from ..layout import (
    Descriptor,
    Layout,
    copy_blobs,
    load_image,
)
from .app import app, state_of
from .refs import destination, locate


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
    from ..bundle.unpack import unpack_image

    found = locate(state_of(ctx), ref)
    image = load_image(found.layout, found.descriptor)
    unpack_image(image, bundle, rootless=True if rootless else None, source=ref)


@app.command()
def repack(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., help="A bundle made by `pybuild unpack`."),
    tag_: str = typer.Option(..., "-t", "--tag", help="Name for the new image (store name or oci:DIR:TAG)."),
    compression: str = typer.Option("gzip", "--compression", help="gzip, zstd or none."),
    comment: str = typer.Option("", "--comment", help="History comment for the new layer."),
) -> None:
    """Turn what changed in an unpacked bundle into a new layer on top of its image."""
    from ..bundle.unpack import read_record, repack_bundle

    if compression not in ("gzip", "zstd", "none"):
        raise UsageError(f"--compression {compression!r}: expected gzip, zstd or none")
    record = read_record(bundle)
    source = Layout.open(record["layout"])
    desc = Descriptor.from_dict(record["manifest"], f"{bundle}: manifest")
    layout, name = destination(state_of(ctx), tag_)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    with layout.writing():
        if layout.root != source.root:
            copy_blobs(source, layout, desc)
        image = load_image(layout, desc)
        if image.is_docker and compression == "zstd":
            raise UsageError(f"{tag_}: Docker-format images have gzip or plain tar layers, not zstd")
        new = repack_bundle(
            bundle,
            image,
            layout,
            compression=compression,
            source_date_epoch=int(epoch) if epoch and epoch.isdigit() else None,
            history_comment=comment,
        )
        layout.set_tag(name, new)
    typer.echo(str(new.digest))
