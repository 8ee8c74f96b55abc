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
    BlobInfoCache,
    Descriptor,
    Digest,
    ImageStore,
    Layout,
    Platform,
    copy_blobs,
    parse_name,
    parse_reference,
    select_manifest,
)
from ..layout.document import DOCUMENT_LIMIT
from .auth import Credentials
from .recompress import has_uncompressed_layers, recompress_image
from .reference import RegistryReference, parse_registry_reference
from .referrers import (
    LayoutDestination,
    Warn,
    carry_referrers,
    fetch_referrers,
    log_warning,
    push_referrers,
    unchanged,
)
from .registry import Outbound, Progress, RegistryOptions, pull, push, push_converted, resolve_manifest
from .registry.validate import check_config, parse_manifest


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
    """Any transport pybuild reads or writes. ``docker-archive:``, ``oci-archive:`` and ``oci:`` are
    ``PATH[:REF]`` split at the first colon, as containers/image splits them: REF may be a full name."""
    if text.startswith("docker://"):
        return parse_registry_reference(text)
    for transport in ("docker-archive", "oci-archive"):
        if text.startswith(f"{transport}:"):
            path, sep, name = text[len(transport) + 1 :].partition(":")
            if not path:
                raise UsageError(f"invalid reference {text!r}: expected {transport}:PATH[:REF]")
            if sep and not name:
                raise UsageError(f"invalid reference {text!r}: empty reference after {transport}:{path}:")
            if transport == "docker-archive" and name:
                name = _archive_name(text, name)
            return ArchiveReference(transport, Path(path), name or None)
    ref = parse_reference(text)
    return LayoutReference(ref.transport, ref.name, ref.path)


def _archive_name(text: str, name: str) -> str:
    """A docker-archive's REF: a name with a tag (``:latest`` when it has none), never a digest."""
    try:
        parsed = parse_name(name)
    except UsageError as exc:
        raise UsageError(f"invalid reference {text!r}: {exc}") from None
    if parsed.digest is not None:
        raise UsageError(f"invalid reference {text!r}: docker-archive names carry a tag, not a digest")
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


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


def _options(
    explicit: RegistryOptions | None, creds: Credentials | str | None, tls_verify: bool
) -> RegistryOptions:
    return explicit if explicit is not None else RegistryOptions(creds, tls_verify)


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
    src_options: RegistryOptions | None = None,
    dest_options: RegistryOptions | None = None,
    progress: Progress | None = None,
    digestfile: Path | str | None = None,
    compression: str | None = None,
    referrers: bool = True,
    warn: Warn = log_warning,
) -> Descriptor:
    """Copy one image from ``src`` to ``dst`` (any transport, store names too); the descriptor written.

    ``compression`` ("gzip", "zstd", "none") re-compresses the layers on the way. Otherwise blobs are
    copied as they are, except that uncompressed layers are gzipped on their way to a registry, an
    OCI layout or an oci-archive (as skopeo does; the store keeps built layers uncompressed), once:
    the store's blob-info cache remembers the result.

    Indexes are resolved to the manifest for ``platform`` (the host's by default), except between
    two layouts where the whole index is copied when no platform is given. ``src_options`` and
    ``dest_options`` say how to reach each side's registry (else ``creds``/``src_creds``/
    ``dest_creds`` and ``tls_verify``). ``digestfile`` receives the written manifest's digest.
    Nothing is named in ``dst`` unless the whole image is there and verified.

    With ``referrers``, the image's OCI 1.1 referrers (and theirs) go along from the store, a layout
    or a registry to a layout or a registry (see ``remote.referrers``); what is wrong with one is a
    ``warn`` line, and the image is copied all the same.
    """
    source = parse_image_reference(src)
    dest = parse_image_reference(dst)
    src_opts = _options(src_options, src_creds or creds, tls_verify)
    dest_opts = _options(dest_options, dest_creds or creds, tls_verify)
    cache = BlobInfoCache(store.root)
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
                options=src_opts,
                progress=progress,
                cache=cache if out.root == store.root else None,
            )
            if referrers:
                _fetch_referrers(source, src_opts, [desc.digest], out, progress, warn)
            _write_digestfile(digestfile, desc)
            return desc
        else:
            layout = Layout.create(Path(tmpdir) / "staging")
            if isinstance(source, RegistryReference):
                desc = pull(source, layout, None, platform=platform, options=src_opts, progress=progress)
                if referrers and not isinstance(dest, ArchiveReference):
                    _fetch_referrers(source, src_opts, [desc.digest], layout, progress, warn)
            elif source.transport == "docker-archive":
                from .archive import read_docker_archive

                desc = read_docker_archive(source.path, layout, name=source.name)
            else:
                from .archive import read_oci_archive

                desc = read_oci_archive(source.path, layout, source.name)
                desc = select_manifest(layout, desc, platform)
        # like skopeo: plain tar layers (the store keeps built layers uncompressed) are gzipped on
        # their way to a registry, an OCI layout or an oci-archive, unless --compression says
        auto = compression is None and _compresses(dest) and has_uncompressed_layers(layout, desc)
        convert = compression is not None or auto
        moved: dict[Digest, Descriptor] = {}  # what the referrers name -> what it is at the destination
        # 2. Write it out.
        if isinstance(dest, LayoutReference):
            out = _dest_layout(dest, store)
            with out.writing():
                if convert:
                    image = select_manifest(layout, desc, platform)
                    desc = recompress_image(
                        layout, image, out, compression or "gzip", only_uncompressed=auto, cache=cache
                    )
                    moved = {image.digest: desc}
                else:
                    copy_blobs(layout, out, desc)
                    moved = unchanged(layout, desc)
                out.set_tag(_dest_tag(dest), desc)
                if referrers:
                    carry_referrers(layout, moved, LayoutDestination(out), warn=warn)
        elif isinstance(dest, RegistryReference):
            if convert:
                image = select_manifest(layout, desc, platform)
                desc = push_converted(
                    layout,
                    image,
                    dest,
                    Outbound(compression or "gzip", only_uncompressed=auto),
                    Layout.create(Path(tmpdir) / "compressed"),
                    options=dest_opts,
                    progress=progress,
                    cache=cache,
                )
                moved = {image.digest: desc}
            else:
                moved = unchanged(layout, desc)
                same = isinstance(source, RegistryReference) and source.registry == dest.registry
                push(
                    layout,
                    desc,
                    dest,
                    options=dest_opts,
                    progress=progress,
                    mount_from=source.repository if same and isinstance(source, RegistryReference) else None,
                    cache=cache,
                )
            if referrers:
                push_referrers(
                    layout, moved, dest, options=dest_opts, progress=progress, cache=cache, warn=warn
                )
        else:
            if convert:
                staging = Layout.create(Path(tmpdir) / "recompressed")
                manifest = select_manifest(layout, desc, platform)
                desc = recompress_image(
                    layout, manifest, staging, compression or "gzip", only_uncompressed=auto, cache=cache
                )
                layout = staging
            from .archive import write_docker_archive, write_oci_archive

            if dest.transport == "docker-archive":
                write_docker_archive(layout, desc, dest.path, [dest.name] if dest.name else [], platform)
            else:
                write_oci_archive(layout, desc, dest.path, dest.name)
    _write_digestfile(digestfile, desc)
    return desc


def _fetch_referrers(
    source: RegistryReference,
    options: RegistryOptions,
    roots: list[Digest],
    layout: Layout,
    progress: Progress | None,
    warn: Warn,
) -> None:
    registry = options.registry(source.registry)
    try:
        fetch_referrers(registry, source.repository, roots, layout, warn=warn, progress=progress)
    finally:
        registry.close()


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
    options: RegistryOptions | None = None,
) -> tuple[bytes, bytes]:
    """(manifest bytes, config bytes) of a registry image, without pulling layers; both verified
    and validated as a pull validates them."""
    if isinstance(ref, str):
        ref = parse_registry_reference(ref)
    registry = _options(options, creds, tls_verify).registry(ref.registry)
    what = f"inspecting {ref.short}"
    where = f"registry {ref.registry}: {what}"
    try:
        desc, raw = resolve_manifest(registry, ref, platform, what)
        manifest = parse_manifest(raw, desc, where)
        config = manifest.config
        with registry.open_blob(ref.repository, config, what) as resp:
            data = resp.read(DOCUMENT_LIMIT)
    finally:
        registry.close()
    if len(data) != config.size or Digest.of_bytes(data, config.digest.algorithm) != config.digest:
        raise DigestMismatch(f"{where}: config {config.digest} is corrupt")
    check_config(data, manifest, where)
    return raw, data
