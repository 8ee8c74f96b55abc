"""Transports the CLI names: ``docker://``, ``docker-archive:``, ``oci-archive:``, ``oci:`` and store names.

``copy_image`` moves one image from any of them to any other; ``inspect_remote`` reads a registry
image's manifest and config without pulling layers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DigestMismatch, RegistryError, UsageError
from ..layout import (
    Descriptor,
    ImageStore,
    Index,
    Layout,
    Manifest,
    Platform,
    copy_blobs,
    mediatype,
    parse_name,
    parse_reference,
    select_manifest,
)
from .archive import read_docker_archive, read_oci_archive, write_docker_archive, write_oci_archive
from .auth import Credentials
from .reference import RegistryReference, parse_registry_reference
from .registry import Progress, Registry, pick_manifest, pull, push


@dataclass(frozen=True)
class ArchiveReference:
    """``docker-archive:PATH[:NAME:TAG]`` or ``oci-archive:PATH[:NAME]``; ``name`` may be None."""

    transport: str  # "docker-archive" or "oci-archive"
    path: Path
    name: str | None = None


@dataclass(frozen=True)
class LayoutReference:
    """``oci:DIR[:TAG]`` (transport "oci") or a store name (transport "store")."""

    transport: str
    name: str
    path: Path | None = None


ImageReference = RegistryReference | ArchiveReference | LayoutReference


def parse_image_reference(text: str) -> ImageReference:
    """Any transport pybuild reads or writes."""
    if text.startswith("docker://"):
        return parse_registry_reference(text)
    for transport in ("docker-archive", "oci-archive"):
        if text.startswith(f"{transport}:"):
            rest = text[len(transport) + 1 :]
            # PATH:NAME, split at the first colon as containers/image does: the name may hold
            # `/` and `:` itself (localhost:5000/app:v1, an OCI ref.name like localhost/app:v1)
            path, _, name = rest.partition(":")
            if transport == "docker-archive" and name and ":" not in name.rsplit("/", 1)[-1]:
                name += ":latest"  # RepoTags are NAME:TAG; containers/image adds latest too
            if not path:
                raise UsageError(f"invalid reference {text!r}: expected {transport}:PATH")
            return ArchiveReference(transport, Path(path), name or None)
    ref = parse_reference(text)
    return LayoutReference(ref.transport, ref.name, ref.path)


def _source_layout(ref: LayoutReference, store: ImageStore) -> tuple[Layout, Descriptor]:
    if ref.transport == "store":
        _, desc = store.lookup(ref.name)
        return store, desc
    assert ref.path is not None
    layout = Layout.open(ref.path)
    return layout, layout.resolve(ref.name)


def _dest_layout(ref: LayoutReference, store: ImageStore) -> Layout:
    if ref.transport == "store":
        return store
    assert ref.path is not None
    return Layout.create(ref.path)


def copy_image(
    src: str,
    dst: str,
    *,
    store: ImageStore,
    platform: Platform | None = None,
    creds: Credentials | str | None = None,
    src_creds: Credentials | str | None = None,
    dest_creds: Credentials | str | None = None,
    tls_verify: bool = True,
    progress: Progress | None = None,
    digestfile: Path | str | None = None,
    compression: str | None = None,
) -> Descriptor:
    """Copy one image from ``src`` to ``dst`` (any transport, store names too); the descriptor written.

    ``compression`` ("gzip", "zstd", "none") re-compresses the layers on the way. Otherwise blobs are
    copied as they are, except that uncompressed layers are gzipped on their way to a registry, an
    OCI layout or an oci-archive (as skopeo does; the store keeps built layers uncompressed).

    Indexes are resolved to the manifest for ``platform`` (the host's by default), except between
    two layouts where the whole index is copied when no platform is given. ``digestfile`` receives
    the written manifest's digest.
    """
    source = parse_image_reference(src)
    dest = parse_image_reference(dst)
    src_creds = src_creds or creds
    dest_creds = dest_creds or creds
    with tempfile.TemporaryDirectory(prefix="pybuild-copy-") as tmpdir:
        # 1. Get the image into a layout (no copy when the source already is one).
        if isinstance(source, LayoutReference):
            layout, desc = _source_layout(source, store)
            if platform is not None or not isinstance(dest, LayoutReference):
                desc = select_manifest(layout, desc, platform)
        elif (
            isinstance(dest, LayoutReference)
            and isinstance(source, RegistryReference)
            and compression is None
        ):
            out = _dest_layout(dest, store)
            desc = pull(
                source,
                out,
                _dest_tag(dest),
                platform=platform,
                creds=src_creds,
                tls_verify=tls_verify,
                progress=progress,
            )
            _write_digestfile(digestfile, desc)
            return desc
        else:
            layout = Layout.create(Path(tmpdir) / "staging")
            if isinstance(source, RegistryReference):
                desc = pull(
                    source,
                    layout,
                    None,
                    platform=platform,
                    creds=src_creds,
                    tls_verify=tls_verify,
                    progress=progress,
                )
            elif source.transport == "docker-archive":
                desc = read_docker_archive(source.path, layout, name=source.name)
            else:
                desc = read_oci_archive(source.path, layout, source.name)
                desc = select_manifest(layout, desc, platform)
        from .recompress import has_uncompressed_layers, recompress_image

        # like skopeo: plain tar layers (the store keeps built layers uncompressed) are gzipped on
        # their way to a registry, an OCI layout or an oci-archive, unless --compression says
        auto = compression is None and _compresses(dest) and has_uncompressed_layers(layout, desc)
        if compression is not None or auto:
            staging = Layout.create(Path(tmpdir) / "recompressed")
            manifest = select_manifest(layout, desc, platform)
            desc = recompress_image(layout, manifest, staging, compression or "gzip", only_uncompressed=auto)
            layout = staging
        # 2. Write it out.
        if isinstance(dest, LayoutReference):
            out = _dest_layout(dest, store)
            with out.writing():
                copy_blobs(layout, out, desc)
                out.set_tag(_dest_tag(dest), desc)
        elif isinstance(dest, RegistryReference):
            mount_from = (
                source.repository
                if isinstance(source, RegistryReference)
                and source.registry == dest.registry
                and compression is None
                and not auto
                else None
            )
            push(
                layout,
                desc,
                dest,
                creds=dest_creds,
                tls_verify=tls_verify,
                progress=progress,
                mount_from=mount_from,
            )
        elif dest.transport == "docker-archive":
            write_docker_archive(layout, desc, dest.path, [dest.name] if dest.name else [], platform)
        else:
            write_oci_archive(layout, desc, dest.path, dest.name)
    _write_digestfile(digestfile, desc)
    return desc


def _compresses(dest: ImageReference) -> bool:
    """Whether uncompressed layers get compressed on their way to ``dest``: yes for registries, OCI
    layouts and oci-archives; not for the store (it keeps what it gets) or docker-archive (whose
    layers are plain tars)."""
    if isinstance(dest, RegistryReference):
        return True
    return dest.transport in ("oci", "oci-archive")


def _dest_tag(ref: LayoutReference) -> str:
    return str(parse_name(ref.name)) if ref.transport == "store" else ref.name


def _write_digestfile(path: Path | str | None, desc: Descriptor) -> None:
    if path is None:
        return
    try:
        Path(path).write_text(str(desc.digest))
    except OSError as exc:
        raise RegistryError(f"cannot write digest file {path}: {exc.strerror or exc}") from None


def inspect_remote(
    ref: str | RegistryReference,
    *,
    platform: Platform | None = None,
    creds: Credentials | str | None = None,
    tls_verify: bool = True,
) -> tuple[bytes, bytes]:
    """(manifest bytes, config bytes) of a registry image, without pulling layers; both verified."""
    if isinstance(ref, str):
        ref = parse_registry_reference(ref)
    registry = Registry(ref.registry, creds=creds, tls_verify=tls_verify)
    what = f"inspecting {ref.short}"
    desc, raw = registry.get_manifest(ref, what)
    if desc.media_type in mediatype.INDEXES:
        chosen = pick_manifest(
            Index.parse(raw, f"registry {ref.registry}: {what}: index"), platform, ref.registry, what
        )
        desc, raw = registry.get_manifest(ref.with_digest(chosen.digest), what)
    manifest = Manifest.parse(raw, f"registry {ref.registry}: {what}: manifest")
    config = manifest.config
    with registry.open_blob(ref.repository, config.digest, what) as resp:
        data = resp.read(limit=max(config.size, 1))
    hasher = config.digest.hasher()
    hasher.update(data)
    if len(data) != config.size or hasher.hexdigest() != config.digest.encoded:
        raise DigestMismatch(f"registry {ref.registry}: {what}: config {config.digest} is corrupt")
    return raw, data
