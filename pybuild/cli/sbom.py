"""pybuild sbom: an image's SBOM, printed, written or attached."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

from ..errors import UsageError
from ..layout import locate
from ..layout.mutate import created_time, source_date_epoch
from .application import app, state_of
from .options import PlatformOption
from .output import write_file


@app.command()
def sbom(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME[:TAG], an image ID, or oci:DIR[:TAG]."),
    sbom_format: str = typer.Option("spdx", "--format", help="spdx (SPDX 2.3 JSON) or cyclonedx (1.5 JSON)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the document to FILE."),
    attach: bool = typer.Option(False, "--attach", help="Store it as an OCI 1.1 referrer of the image."),
    platform: str | None = PlatformOption,
    timestamp: int | None = typer.Option(
        None, "--timestamp", help="Its creation time in seconds since the epoch (SOURCE_DATE_EPOCH, or now)."
    ),
) -> None:
    """Make an SBOM of an image: its Debian, Alpine and Python packages, and its layers."""
    from .. import attest
    from ..layout import attach as attach_artifact
    from ..layout import parse_platform
    from ..layout.document import parse_created

    if sbom_format not in ("spdx", "cyclonedx"):
        raise UsageError(f"--format {sbom_format!r}: expected spdx or cyclonedx")
    found = locate(state_of(ctx).store, ref)
    inventory = attest.inventory(
        found.layout, found.descriptor, parse_platform(platform) if platform else None
    )
    if timestamp is not None:
        created = datetime.fromtimestamp(timestamp, UTC)
    else:
        created = parse_created(created_time(source_date_epoch())) or datetime.now(UTC)
    name = ref if ref.startswith("oci:") else (found.name or ref)  # an oci: layout's tags are bare
    if sbom_format == "spdx":
        data, media_type = attest.spdx_document(inventory, name=name, created=created), attest.SPDX_JSON
    else:
        data = attest.cyclonedx_document(inventory, name=name, created=created)
        media_type = attest.CYCLONEDX_JSON
    if output is not None:
        write_file(output, data)
    elif not attach:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    if attach:
        stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        artifact = attach_artifact(
            found.layout,
            inventory.image,
            media_type,
            media_type,
            data,
            {"org.opencontainers.image.created": stamp},
        )
        typer.echo(
            f"attached {media_type} {artifact.digest} to {inventory.image.digest} in {found.layout.label}"
        )
