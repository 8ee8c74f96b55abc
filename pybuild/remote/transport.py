"""Transports the CLI names: ``docker://``, ``docker-archive:``, ``oci-archive:``, ``oci:`` and store names.

``copy_image`` moves one image from any of them to any other; ``inspect_remote`` reads a registry
image's manifest and config without pulling layers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DigestMismatch, RegistryError, UsageError
from ..layout import (
    BlobInfoCache,
    Descriptor,
    Digest,
    ImageStore,
    Layout,
    Platform,
    copy_blobs,
    destination,
    locate,
    parse_name,
    parse_reference,
    referenced_blobs,
    select_manifest,
)
from ..layout.document import DOCUMENT_LIMIT
from .auth import Credentials
from .reference import RegistryReference, parse_registry_reference

if TYPE_CHECKING:  # the registry client (urllib3) loads when a registry is used, not for local copies
    from .registry import Progress, RegistryOptions


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


@dataclass
class CopyReport:
    """What a copy between two layouts (the store, oci:) did, filled in by ``copy_image``: the blobs
    it copied and the blobs the image has (None when the copy went another way)."""

    blobs_copied: int | None = None
    blobs_total: int | None = None


def _docker_into_oci(src: str, dst: str, store: ImageStore) -> bool:
    """Whether the copy of ``src`` into the layout ``dst`` names is one of a Docker image or list
    into an oci: layout, which takes only OCI (convert.py)."""
    from .convert import needs_oci

    found = locate(store, src)
    return destination(store, dst)[0].root != store.root and needs_oci(found.layout, found.descriptor)


def _copy_between_layouts(
    src: str, dst: str, store: ImageStore, report: CopyReport | None, referrers: bool
) -> Descriptor | None:
    """The image ``src`` names put into ``dst``'s layout and tagged there, its blobs shared as they
    are; None when that is not enough (an oci: layout gets uncompressed layers gzipped, and OCI
    manifests for Docker ones)."""
    found = locate(store, src)
    layout, tag = destination(store, dst)
    if layout.root != store.root:
        from .convert import needs_oci
        from .recompress import needs_compressing  # (compression code loads only when needed)

        if needs_compressing(found.layout, found.descriptor) or needs_oci(found.layout, found.descriptor):
            return None
    desc = found.descriptor
    with layout.writing():
        copied = 0 if found.layout.root == layout.root else copy_blobs(found.layout, layout, desc)
        layout.set_tag(tag, Descriptor(desc.media_type, desc.digest, desc.size))
        if referrers and found.layout.root != layout.root:
            from .referrers import LayoutDestination, carry_referrers, unchanged

            carry_referrers(found.layout, unchanged(found.layout, desc), LayoutDestination(layout))
    if report is not None:
        report.blobs_copied = copied
        report.blobs_total = len({d.digest for d in referenced_blobs(found.layout, desc)})
    return desc


def _options(
    explicit: RegistryOptions | None, creds: Credentials | str | None, tls_verify: bool
) -> RegistryOptions:
    from .registry import RegistryOptions

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
    report: CopyReport | None = None,
    referrers: bool = True,
    all_platforms: bool = False,
) -> Descriptor:
    """Copy one image from ``src`` to ``dst`` (any transport, store names too, image ID prefixes for
    the store); the descriptor written.

    ``compression`` ("gzip", "zstd", "none") re-compresses the layers on the way (a docker-archive
    takes only "none": its layers are plain tars, as skopeo writes them). Otherwise blobs are
    copied as they are, except that uncompressed layers are gzipped on their way to a registry, an
    OCI layout or an oci-archive (as skopeo does; the store keeps built layers uncompressed), once:
    the store's blob-info cache remembers the result.

    Indexes are resolved to the manifest for ``platform`` (the host's by default), except between
    two layouts where the whole index is copied when no platform is given. ``src_options`` and
    ``dest_options`` say how to reach each side's registry (else ``creds``/``src_creds``/
    ``dest_creds`` and ``tls_verify``). ``digestfile`` receives the written manifest's digest.
    Nothing is named in ``dst`` unless the whole image is there and verified. Between two layouts
    (the store, oci:) with no platform and no compression asked for, the blobs are shared as they
    are and ``report`` says how many were copied.

    With ``referrers``, the image's OCI 1.1 referrers (and theirs) go along from the store, a layout
    or a registry to a layout or a registry (see ``remote.referrers``); what is wrong with one is a
    warning (``errors.warn``), and the image is copied all the same.

    With ``all_platforms`` (``copy --all``), an index is copied whole from and to any transport but
    docker-archive: every image, then the index (``remote.indexes``); a single image is copied as
    one.
    """
    source = parse_image_reference(src)
    dest = parse_image_reference(dst)
    docker_archive = isinstance(dest, ArchiveReference) and dest.transport == "docker-archive"
    if docker_archive and compression in ("gzip", "zstd"):  # docker save writes, docker load reads
        raise UsageError(
            f"--compression {compression}: {dst}: docker-archive layers are plain tars",
            hints=["leave --compression out (or give none): layers are decompressed on the way"],
        )
    local = isinstance(source, LayoutReference) and isinstance(dest, LayoutReference)
    if all_platforms and platform is not None:
        raise UsageError("--all and --platform: give one of them")
    if local and platform is None and compression is None:
        shared = _copy_between_layouts(src, dst, store, report, referrers)
        if shared is not None:
            _write_digestfile(digestfile, shared)
            return shared
    # an index between layouts goes whole; into an oci: layout a Docker one is converted below
    if (all_platforms or (local and platform is None)) and not (local and _docker_into_oci(src, dst, store)):
        from .indexes import copy_all

        whole = copy_all(
            source,
            dest,
            src,
            dst,
            store=store,
            src_options=_options(src_options, src_creds or creds, tls_verify),
            dest_options=_options(dest_options, dest_creds or creds, tls_verify),
            progress=progress,
            compression=compression,
            referrers=referrers,
        )
        if whole is not None:
            _write_digestfile(digestfile, whole)
            return whole
    from .convert import convert_to_oci, needs_oci
    from .recompress import has_uncompressed_layers, recompress_image
    from .referrers import LayoutDestination, carry_referrers, push_referrers, unchanged
    from .registry import Outbound, pull, push, push_converted, staging_at

    src_opts = _options(src_options, src_creds or creds, tls_verify)
    dest_opts = _options(dest_options, dest_creds or creds, tls_verify)
    cache = BlobInfoCache(store.root)
    with tempfile.TemporaryDirectory(prefix="pybuild-copy-") as tmpdir:
        # 1. Get the image into a layout (no copy when the source already is one).
        if isinstance(source, LayoutReference):
            found = locate(store, src)
            layout, desc = found.layout, found.descriptor
            if platform is not None or not isinstance(dest, LayoutReference):
                desc = select_manifest(layout, desc, platform)
        elif (
            isinstance(dest, LayoutReference)
            and isinstance(source, RegistryReference)
            and compression is None
        ):
            out, tag = destination(store, dst)
            into_store = out.root == store.root
            with out.writing():
                desc = pull(
                    source,
                    out,
                    tag if into_store else None,
                    platform=platform,
                    options=src_opts,
                    progress=progress,
                    cache=cache if into_store else None,
                )
                # an oci: layout takes only OCI: a Docker image is converted there, in place (the
                # Docker manifest stays behind, untagged, for gc)
                converted = (
                    None if into_store or not needs_oci(out, desc) else convert_to_oci(out, desc, out)[1]
                )
                desc = desc if converted is None else converted[desc.digest]
                if not into_store:
                    out.set_tag(tag, desc)
            if referrers and converted is None:
                fetch_remote_referrers(source, src_opts, [desc.digest], out, progress)
            elif referrers and converted is not None:  # theirs name the Docker manifest: carried over
                fetched = Layout.create(Path(tmpdir) / "referrers")
                fetch_remote_referrers(source, src_opts, list(converted), fetched, progress)
                carry_referrers(fetched, converted, LayoutDestination(out))
            _write_digestfile(digestfile, desc)
            return desc
        else:
            layout = Layout.create(Path(tmpdir) / "staging")
            if isinstance(source, RegistryReference):
                desc = pull(source, layout, None, platform=platform, options=src_opts, progress=progress)
                if referrers and not isinstance(dest, ArchiveReference):
                    fetch_remote_referrers(source, src_opts, [desc.digest], layout, progress)
            elif source.transport == "docker-archive":
                from .archive import read_docker_archive

                desc = read_docker_archive(source.path, layout, name=source.name)
            else:
                from .archive import read_oci_archive

                desc = read_oci_archive(source.path, layout, source.name)
                desc = select_manifest(layout, desc, platform)
        # like skopeo: plain tar layers (the store keeps built layers uncompressed) are gzipped on
        # their way to a registry, an OCI layout or an oci-archive, unless --compression says
        auto = compression is None and compresses(dest) and has_uncompressed_layers(layout, desc)
        convert = compression is not None or auto
        moved: dict[Digest, Descriptor] = {}  # what the referrers name -> what it is at the destination
        # 2. Write it out.
        if isinstance(dest, LayoutReference):
            out = destination(store, dst)[0]
            oci = out.root != store.root  # an oci: layout takes only OCI (convert.py)
            with out.writing():
                if convert:
                    image = select_manifest(layout, desc, platform)
                    desc = recompress_image(
                        layout,
                        image,
                        out,
                        compression or "gzip",
                        only_uncompressed=auto,
                        cache=cache,
                        oci=oci,
                    )
                    moved = {image.digest: desc}
                elif oci and needs_oci(layout, desc):
                    desc, moved = convert_to_oci(layout, desc, out)
                else:
                    copy_blobs(layout, out, desc)
                    moved = unchanged(layout, desc)
                out.set_tag(destination(store, dst)[1], desc)
                if referrers:
                    carry_referrers(layout, moved, LayoutDestination(out))
        elif isinstance(dest, RegistryReference):
            if convert:
                image = select_manifest(layout, desc, platform)
                desc = push_converted(
                    layout,
                    image,
                    dest,
                    Outbound(compression or "gzip", only_uncompressed=auto),
                    staging_at(Path(tmpdir) / "compressed"),
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
                push_referrers(layout, moved, dest, options=dest_opts, progress=progress, cache=cache)
        else:
            oci = dest.transport == "oci-archive"  # takes only OCI, as an oci: layout
            if convert:
                staging = Layout.create(Path(tmpdir) / "recompressed")
                manifest = select_manifest(layout, desc, platform)
                desc = recompress_image(
                    layout,
                    manifest,
                    staging,
                    compression or "gzip",
                    only_uncompressed=auto,
                    cache=cache,
                    oci=oci,
                )
                layout = staging
            elif oci and needs_oci(layout, desc):
                staging = Layout.create(Path(tmpdir) / "converted")
                desc, _ = convert_to_oci(layout, desc, staging)
                layout = staging
            from .archive import write_docker_archive, write_oci_archive

            if dest.transport == "docker-archive":
                write_docker_archive(layout, desc, dest.path, [dest.name] if dest.name else [], platform)
            else:
                write_oci_archive(layout, desc, dest.path, dest.name)
    _write_digestfile(digestfile, desc)
    return desc


def fetch_remote_referrers(
    source: RegistryReference,
    options: RegistryOptions,
    roots: list[Digest],
    layout: Layout,
    progress: Progress | None,
) -> None:
    from .referrers import fetch_referrers

    registry = options.registry(source.registry)
    try:
        fetch_referrers(registry, source.repository, roots, layout, progress=progress)
    finally:
        registry.close()


def compresses(dest: ImageReference) -> bool:
    """Whether uncompressed layers get compressed on their way to ``dest``: yes for registries, OCI
    layouts and oci-archives; not for the store (it keeps what it gets) or docker-archive (whose
    layers are plain tars)."""
    if isinstance(dest, RegistryReference):
        return True
    return dest.transport in ("oci", "oci-archive")


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
    from .registry import resolve_manifest
    from .registry.validate import check_config, parse_manifest

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
