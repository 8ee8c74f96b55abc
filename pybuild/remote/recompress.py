"""Layers on their way out: compressed once, with the blob-info cache remembering the result.

The store keeps built layers uncompressed (as buildah does); an OCI layout, an oci-archive and a
registry get them gzipped (or in ``--compression``). Compressing a layer is the slow part of a push
or of a build into an ``oci:`` layout, so it happens once per layer, compression and level: the
store's ``BlobInfoCache`` maps the layer's diff_id to the compressed blob's digest and size, and
where that blob was seen. A cached answer is only used once checked: the blob is in the destination
with that size (a registry answers HEAD with it; a layout's gzip trailer also names the uncompressed
size), or is copied, verified, from a layout that holds it. Otherwise the layer is compressed again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from ..errors import DigestMismatch, PybuildError, UsageError
from ..layout import (
    BlobInfoCache,
    BlobWriter,
    Descriptor,
    Digest,
    Image,
    Layout,
    StagedBlobs,
    commit_image,
    load_image,
    mediatype,
    read_index,
    stage_copy,
)

LEVELS = {"gzip": 6, "zstd": 3, "none": 0}  # what LayerWriter uses when given no level


def variant(compression: str) -> str:
    """The blob-info cache's name for a compression at pybuild's level: ``gzip-6``."""
    return f"{compression}-{LEVELS[compression]}"


def _plain(layer: Descriptor) -> bool:
    """An uncompressed layer that may be compressed on the way out (not a non-distributable one)."""
    media = layer.media_type
    return mediatype.layer_compression(media) == "none" and "nondistributable" not in media


def has_uncompressed_layers(layout: Layout, desc: Descriptor) -> bool:
    """Whether the image ``desc`` names (a manifest, not an index) has an uncompressed layer."""
    if desc.media_type not in mediatype.MANIFESTS:
        return False
    return any(_plain(layer) for layer in load_image(layout, desc).layers)


def needs_compressing(layout: Layout, desc: Descriptor) -> bool:
    """Whether the image ``desc`` names, or an image of the index it names, has an uncompressed layer."""
    if desc.media_type in mediatype.INDEXES:
        return any(has_uncompressed_layers(layout, child) for child in read_index(layout, desc).manifests)
    return has_uncompressed_layers(layout, desc)


def check_compression(image: Image, compression: str, label: str, *, oci: bool = False) -> None:
    """``compression`` is one pybuild writes, and the image's format (OCI with ``oci``) has it."""
    if compression not in ("gzip", "zstd", "none"):
        raise UsageError(f"unknown compression {compression!r}: expected gzip, zstd or none")
    if image.is_docker and not oci and compression == "zstd":
        raise UsageError(f"{label}: Docker-format images have gzip or plain tar layers, not zstd")


def converts(layer: Descriptor, compression: str, only_uncompressed: bool) -> bool:
    """Whether ``layer`` is compressed anew on its way out; otherwise it goes as it is."""
    if only_uncompressed and not _plain(layer):
        return False
    return mediatype.layer_compression(layer.media_type) != compression


def cached(
    cache: BlobInfoCache | None, layer: Descriptor, diff_id: Digest, compression: str, docker: bool
) -> Descriptor | None:
    """The descriptor the cache names for ``layer`` in ``compression``: still to be checked."""
    if cache is None:
        return None
    found = cache.compressed(diff_id, variant(compression))
    if found is None:
        return None
    media = mediatype.layer_media_type(compression, docker=docker)
    return Descriptor(media, found.digest, found.size, annotations=dict(layer.annotations))


def compress(
    src: Layout,
    layer: Descriptor,
    diff_id: Digest,
    compression: str,
    docker: bool,
    dst: Layout,
    cache: BlobInfoCache | None,
) -> tuple[Descriptor, BlobWriter]:
    """Compress ``layer`` from ``src`` into ``dst`` (sealed, not yet committed: the caller commits or
    aborts the writer). Its content is checked against ``diff_id``, so a damaged layer is never
    re-signed; the result goes into the cache."""
    from ..diff import LayerWriter, open_layer  # (a push whose layers are compressed already never loads it)

    writer = dst.blobs.writer()
    try:
        with src.blobs.open(layer.digest, layer.size) as blob:
            reader = open_layer(blob, layer.media_type, what=f"layer {layer.digest}")
            sink = LayerWriter(writer, compression)
            while chunk := reader.read(1 << 20):
                sink.write(chunk)
            while blob.read(1 << 20):  # reach EOF so the blob's digest is checked
                pass
            stats = sink.close()
        if stats.diff_id != str(diff_id):
            raise DigestMismatch(
                f"layer {layer.digest} in {src.label}: content does not match diff_id {diff_id}"
            )
        digest = writer.seal()
    except BaseException:
        writer.abort()
        raise
    media = mediatype.layer_media_type(compression, docker=docker)
    out = Descriptor(media, digest, writer.size, annotations=dict(layer.annotations))
    if cache is not None:
        cache.record_compressed(diff_id, variant(compression), digest, writer.size)
    return out, writer


def _in_layout(layout: Layout, candidate: Descriptor, uncompressed: int | None) -> bool:
    """``layout`` holds ``candidate`` with its size; for gzip, its trailer's ISIZE (the uncompressed
    size mod 2**32) also matches the layer it stands for."""
    try:
        if not layout.blobs.exists(candidate.digest) or layout.blobs.size(candidate.digest) != candidate.size:
            return False
        if uncompressed is not None and mediatype.layer_compression(candidate.media_type) == "gzip":
            with open(layout.blobs.path_of(candidate.digest), "rb") as f:
                f.seek(-4, os.SEEK_END)
                return int.from_bytes(f.read(4), "little") == uncompressed & 0xFFFFFFFF
    except (OSError, PybuildError):
        return False
    return True


def _from_elsewhere(
    cache: BlobInfoCache, candidate: Descriptor, dst: Layout, uncompressed: int | None
) -> BlobWriter | None:
    """Copy ``candidate`` into ``dst`` from another layout the cache saw it in, verified; None
    when no such layout still holds it (the stale location is forgotten)."""
    for location in cache.locations(candidate.digest):
        if not location.startswith("oci:"):
            continue
        path = location[len("oci:") :]
        if os.path.realpath(path) == os.path.realpath(dst.root):
            continue
        try:
            other = Layout.open(path)
            if _in_layout(other, candidate, uncompressed):
                return stage_copy(other, dst, candidate)
        except DigestMismatch:
            pass  # damaged there: compress anew
        except PybuildError:
            pass
        cache.forget_location(candidate.digest, location)
    return None


def layer_into(
    src: Layout,
    layer: Descriptor,
    diff_id: Digest,
    dst: Layout,
    compression: str,
    only_uncompressed: bool,
    cache: BlobInfoCache | None,
    docker: bool,
    progress: Callable[[str], None] | None = None,
) -> tuple[Descriptor, BlobWriter | None]:
    """``layer`` (from ``src``) for the layout ``dst`` in ``compression`` (see ``recompress_image``):
    the descriptor to name there, and a sealed writer to commit when a blob had to be written
    (None when ``dst`` holds it already). Hold ``dst.writing()``."""
    if not converts(layer, compression, only_uncompressed):
        # (named with OCI's media type unless ``docker``: a Docker image written as OCI, convert.py)
        named = layer if docker else replace(layer, media_type=mediatype.to_oci(layer.media_type))
        if dst.blobs.exists(layer.digest):
            return named, None
        return named, stage_copy(src, dst, layer)
    uncompressed = layer.size if _plain(layer) else None
    candidate = cached(cache, layer, diff_id, compression, docker)
    if candidate is not None and cache is not None:
        if _in_layout(dst, candidate, uncompressed):
            return candidate, None
        writer = _from_elsewhere(cache, candidate, dst, uncompressed)
        if writer is not None:
            return candidate, writer
    if progress is not None:
        progress(f"compressing layer {layer.digest.short} ({compression})")
    return compress(src, layer, diff_id, compression, docker, dst, cache)


def recompress_image(
    src: Layout,
    desc: Descriptor,
    dst: Layout,
    compression: str,
    *,
    only_uncompressed: bool = False,
    cache: BlobInfoCache | None = None,
    progress: Callable[[str], None] | None = None,
    oci: bool = False,
) -> Descriptor:
    """Write ``desc``'s image into ``dst`` with every layer in ``compression``; returns the new manifest.

    Layers already in that compression are copied as they are; with ``only_uncompressed`` so are
    all compressed ones (what skopeo does for an OCI layout or a registry: plain tar layers get
    compressed, gzip and zstd ones stay). A layer the cache knows in that compression is not
    compressed again when ``dst`` holds the result, or another layout does. All or nothing: the new
    blobs appear in ``dst`` only once every one of them is written and verified. With ``oci`` a
    Docker schema 2 image is written with OCI media types (for a destination that takes only OCI:
    see convert.py); its config stays as it is.
    """
    image = load_image(src, desc)
    docker = image.is_docker and not oci
    check_compression(image, compression, src.label, oci=oci)
    location = f"oci:{dst.root}"
    layers: list[Descriptor] = []
    with dst.writing():
        with StagedBlobs() as staged:
            for layer, diff_id in zip(image.layers, image.config.diff_ids, strict=True):
                out, writer = layer_into(
                    src, layer, diff_id, dst, compression, only_uncompressed, cache, docker, progress
                )
                if writer is not None:
                    staged.add(writer)
                layers.append(out)
            staged.commit()
        if cache is not None:
            for layer in layers:
                cache.record_location(layer.digest, location)
        return commit_image(
            dst, image.config, layers, docker=docker, annotations=image.manifest.annotations or None
        )
