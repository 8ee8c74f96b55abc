"""Manifest lists, as podman has them: manifest create, add, remove, inspect, push."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ..errors import InvalidDigest, UsageError
from ..layout import (
    Descriptor,
    Digest,
    ImageStore,
    add_to_list,
    copy_blobs,
    create_list,
    is_list,
    locate,
    parse_name,
    parse_platform,
    read_index,
    read_list,
    remove_from_list,
    select_manifest,
)
from .application import app, state_of
from .options import (
    AuthfileOption,
    CertDirOption,
    CompressionOption,
    CredsOption,
    NoReferrersOption,
    TlsOption,
    registry_options,
)
from .output import transfer_progress, write_file

manifest_app = typer.Typer(
    help="Manifest lists (image indexes) in the store: create, add, remove, inspect, push.",
    no_args_is_help=True,
)
app.add_typer(manifest_app, name="manifest")

AllImagesOption = typer.Option(False, "--all", help="When IMAGE is a list: add every image of it.")


def _list_name(name: str) -> str:
    if name.startswith(("oci:", "docker://", "docker-archive:", "oci-archive:")):
        raise UsageError(f"{name!r}: a manifest list is named in the store (NAME[:TAG])")
    return str(parse_name(name))


def _images(
    store: ImageStore, ref: str, everything: bool, platform: str | None, options: Any
) -> list[Descriptor]:
    """The images ``ref`` names, put in the store when they are elsewhere (pulled from a registry,
    untagged: the list keeps them): one, chosen for ``platform`` (default: this machine's) when it
    is a list, or with ``everything`` all of them. Call inside ``store.writing()``."""
    wanted = parse_platform(platform) if platform else None
    if ref.startswith("docker://"):
        from ..remote import parse_registry_reference, pull
        from ..remote.indexes import pull_index

        remote = parse_registry_reference(ref)
        if everything:
            found = pull_index(remote, store, None, options=options)
        else:
            found = pull(remote, store, None, platform=wanted, options=options)
    else:
        located = locate(store, ref)
        found = located.descriptor
        if located.layout.root != store.root:
            copy_blobs(located.layout, store, found)
    if is_list(found) and everything:
        return list(read_index(store, found).manifests)
    return [select_manifest(store, found, wanted)]


@manifest_app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The list's name in the store."),
    images: list[str] = typer.Argument(None, help="Images to add (store names, oci:DIR:TAG, docker://REF)."),
    amend: bool = typer.Option(False, "--amend", help="Add to the list when it exists already."),
    everything: bool = AllImagesOption,
) -> None:
    """Create a manifest list, with the images given (each for its platform)."""
    store = state_of(ctx).store
    list_name = _list_name(name)
    with store.writing():
        found = [d for ref in images or [] for d in _images(store, ref, everything, None, None)]
        desc = create_list(store, list_name, found, amend=amend)
    typer.echo(desc.digest.encoded)


@manifest_app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The list."),
    image: str = typer.Argument(..., help="The image: a store name, oci:DIR[:TAG] or docker://REF."),
    everything: bool = AllImagesOption,
    platform: str | None = typer.Option(
        None,
        "--platform",
        help="When IMAGE is a list: the image for OS/ARCH[/VARIANT] (default: this machine's).",
    ),
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
) -> None:
    """Add an image to a manifest list (made if missing), under the platform its config names."""
    if everything and platform is not None:
        raise UsageError("--all and --platform: give one of them")
    store = state_of(ctx).store
    options = registry_options(creds, tls_verify, cert_dir, authfile)
    with store.writing():
        found = _images(store, image, everything, platform, options)
        desc = add_to_list(store, _list_name(name), found)
    for d in found:
        typer.echo(f"added {d.digest}")
    typer.echo(desc.digest.encoded)


@manifest_app.command("remove")
def remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The list."),
    digest: str = typer.Argument(..., help="The digest of the image to take out (sha256:...)."),
) -> None:
    """Take an image out of a manifest list."""
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest as exc:
        raise UsageError(str(exc)) from None
    store = state_of(ctx).store
    desc = remove_from_list(store, _list_name(name), parsed)
    typer.echo(desc.digest.encoded)


@manifest_app.command("inspect")
def inspect_list(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The list in the store, or docker://REF in a registry."),
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
) -> None:
    """Print a manifest list's JSON, as podman does."""
    if name.startswith("docker://"):
        from ..remote import parse_registry_reference

        ref = parse_registry_reference(name)
        registry = registry_options(creds, tls_verify, cert_dir, authfile).registry(ref.registry)
        try:
            _, raw = registry.get_manifest(ref, f"inspecting {ref.short}")
        finally:
            registry.close()
        doc = json.loads(raw)
    else:
        _, index = read_list(state_of(ctx).store, _list_name(name))
        doc = index.to_dict()
    typer.echo(json.dumps(doc, indent=4))


@manifest_app.command("push")
def push(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The list."),
    dst: str = typer.Argument(..., help="docker://HOST/REPO[:TAG] (or oci:DIR:TAG, oci-archive:FILE)."),
    everything: bool = typer.Option(
        True, "--all/--no-all", help="Push the list's images first (default); --no-all: only the list."
    ),
    format_: str = typer.Option(
        "oci", "--format", help="oci (OCI index and manifests) or docker (a Docker manifest list)."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the pushed digest."),
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
    digestfile: Path | None = typer.Option(None, "--digestfile", help="Write the pushed list's digest here."),
    compression: str | None = CompressionOption,
    no_referrers: bool = NoReferrersOption,
) -> None:
    """Push a manifest list: its images (by digest), then the list (by tag); prints its digest."""
    from ..remote.images import push_target
    from ..remote.indexes import push_list

    if format_ not in ("oci", "docker"):
        raise UsageError(f"--format {format_!r}: expected oci or docker")
    store = state_of(ctx).store
    list_name = _list_name(name)
    read_list(store, list_name)  # a list, not an image
    options = registry_options(creds, tls_verify, cert_dir, authfile)
    with transfer_progress(quiet) as progress:
        desc = push_list(
            store,
            list_name,
            push_target(dst),
            options=options,
            progress=progress,
            images=everything,
            format=format_,
            compression=compression,
            referrers=not no_referrers,
        )
    if digestfile is not None:
        write_file(digestfile, str(desc.digest).encode())
    typer.echo(str(desc.digest))
