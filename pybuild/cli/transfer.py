"""Moving images: tag, copy, pull, push."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..layout import Descriptor
from .application import State, app, state_of
from .options import (
    AuthfileOption,
    CertDirOption,
    CompressionOption,
    CredsOption,
    NoReferrersOption,
    PlatformOption,
    TlsOption,
    flag_bool,
    registry_options,
)
from .output import transfer_progress


def transfer(
    state: State,
    src: str,
    dst: str,
    *,
    quiet: bool = False,
    platform: str | None = None,
    src_options: Any = None,
    dest_options: Any = None,
    digestfile: Path | None = None,
    compression: str | None = None,
    referrers: bool = True,
    all_platforms: bool = False,
) -> tuple[Descriptor, str]:
    """Copy an image between any two transports, and with ``referrers`` its OCI 1.1 referrers;
    returns (descriptor written, a summary line)."""
    from ..layout import parse_platform
    from ..remote import CopyReport, copy_image

    report = CopyReport()
    with transfer_progress(quiet) as progress:
        desc = copy_image(
            src,
            dst,
            store=state.store,
            platform=parse_platform(platform) if platform else None,
            src_options=src_options,
            dest_options=dest_options,
            progress=progress,
            digestfile=digestfile,
            compression=compression,
            report=report,
            referrers=referrers,
            all_platforms=all_platforms,
        )
    if report.blobs_copied is not None:
        return desc, f"copied {report.blobs_copied} of {report.blobs_total} blobs; {dst} is {desc.digest}"
    return desc, f"{dst} is {desc.digest}"


@app.command()
def tag(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="An image in the store, or oci:DIR[:TAG] (its blobs are copied in)."),
    dst: str = typer.Argument(..., help="The new name, in the store or oci:DIR[:TAG]."),
) -> None:
    """Give an image another name."""
    transfer(state_of(ctx), src, dst, quiet=True)


@app.command()
def copy(
    ctx: typer.Context,
    src: str = typer.Argument(
        ..., help="Store name, oci:DIR[:TAG], docker://REF, docker-archive:F, oci-archive:F."
    ),
    dst: str = typer.Argument(..., help="Destination, any of the same transports."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing."),
    platform: str | None = PlatformOption,
    creds: str | None = CredsOption,
    src_creds: str | None = typer.Option(
        None, "--src-creds", help="USER[:PASSWORD] for the source registry."
    ),
    dest_creds: str | None = typer.Option(None, "--dest-creds", help="USER[:PASSWORD] for the destination."),
    tls_verify: str | None = TlsOption,
    src_tls_verify: str | None = typer.Option(
        None, "--src-tls-verify", metavar="[=true|false]", help="--tls-verify for the source registry."
    ),
    dest_tls_verify: str | None = typer.Option(
        None, "--dest-tls-verify", metavar="[=true|false]", help="--tls-verify for the destination."
    ),
    authfile: Path | None = AuthfileOption,
    src_authfile: Path | None = typer.Option(None, "--src-authfile", help="--authfile for the source."),
    dest_authfile: Path | None = typer.Option(
        None, "--dest-authfile", help="--authfile for the destination."
    ),
    cert_dir: Path | None = CertDirOption,
    src_cert_dir: Path | None = typer.Option(None, "--src-cert-dir", help="--cert-dir for the source."),
    dest_cert_dir: Path | None = typer.Option(
        None, "--dest-cert-dir", help="--cert-dir for the destination."
    ),
    digestfile: Path | None = typer.Option(
        None, "--digestfile", help="Write the copied manifest's digest here."
    ),
    compression: str | None = CompressionOption,
    no_referrers: bool = NoReferrersOption,
    everything: bool = typer.Option(
        False, "--all", "-a", help="Copy every platform of an index (manifest list), and the index."
    ),
) -> None:
    """Copy an image between the store, OCI layouts, archives and registries (blobs are copied as
    they are, but uncompressed layers are gzipped for a registry, an OCI layout or an oci-archive;
    --compression asks for another), with its OCI 1.1 referrers. An index is resolved to the image
    for --platform (this machine's by default), except with --all (every image, then the index,
    like `skopeo copy --all`) and between two layouts (the store, oci:), where it is copied whole."""
    default_tls = flag_bool(tls_verify, "--tls-verify")
    src_options = registry_options(
        src_creds or creds,
        src_tls_verify,
        src_cert_dir or cert_dir,
        src_authfile or authfile,
        flag="--src-tls-verify",
        default_tls=default_tls,
    )
    dest_options = registry_options(
        dest_creds or creds,
        dest_tls_verify,
        dest_cert_dir or cert_dir,
        dest_authfile or authfile,
        flag="--dest-tls-verify",
        default_tls=default_tls,
    )
    _, summary = transfer(
        state_of(ctx),
        src,
        dst,
        quiet=quiet,
        platform=platform,
        src_options=src_options,
        dest_options=dest_options,
        digestfile=digestfile,
        compression=compression,
        referrers=not no_referrers,
        all_platforms=everything,
    )
    if not quiet:
        typer.echo(summary)


@app.command()
def pull(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="docker://HOST/REPO[:TAG|@DIGEST], or a name such as alpine."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image digest."),
    platform: str | None = PlatformOption,
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
    referrers: bool = typer.Option(
        False, "--referrers", help="Fetch its OCI 1.1 referrers (SBOMs, provenance, ...) too."
    ),
    all_platforms: bool = typer.Option(
        False, "--all-platforms", help="Pull every image of an index (manifest list), and the index."
    ),
) -> None:
    """Pull an image from a registry into the store, under its full name (an index: the image for
    --platform, this machine's by default, or with --all-platforms the whole list)."""
    from ..remote.images import pull_name

    options = registry_options(creds, tls_verify, cert_dir, authfile)
    text, name = pull_name(ref)
    desc, _ = transfer(
        state_of(ctx),
        text,
        name,
        quiet=quiet,
        platform=platform,
        src_options=options,
        referrers=referrers,
        all_platforms=all_platforms,
    )
    typer.echo(str(desc.digest) if quiet else f"pulled {name} {desc.digest}")


@app.command()
def push(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="The image: a store name or oci:DIR[:TAG]."),
    dst: str = typer.Argument(..., help="docker://HOST/REPO[:TAG] (or any other transport)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the pushed digest."),
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
    digestfile: Path | None = typer.Option(
        None, "--digestfile", help="Write the pushed manifest's digest here."
    ),
    compression: str | None = CompressionOption,
    no_referrers: bool = NoReferrersOption,
) -> None:
    """Push an image to a registry, with its OCI 1.1 referrers; prints the pushed manifest digest."""
    from ..remote.images import push_target

    target = push_target(dst)
    options = registry_options(creds, tls_verify, cert_dir, authfile)
    desc, _ = transfer(
        state_of(ctx),
        src,
        target,
        quiet=quiet,
        dest_options=options,
        digestfile=digestfile,
        compression=compression,
        referrers=not no_referrers,
    )
    typer.echo(str(desc.digest))
