"""Whole indexes (manifest lists) on the move: every image of an index, then the index, as
``skopeo copy --all`` and ``podman manifest push --all`` move them.

An image of the index whose layers the store keeps uncompressed is gzipped on its way to a
registry or an ``oci:`` layout, as a single image is (``recompress``): that makes it a new manifest,
so the index written names the new digests (its entries keep their platforms and annotations).
An index nothing changed in is copied byte for byte. To a registry, the images go first (by
digest), the index last (by tag), so that a registry never holds an index naming what it lacks;
``--format docker`` writes Docker schema 2 manifests and a Docker manifest list instead of OCI.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PybuildError, RegistryError, UsageError
from ..layout import (
    BlobInfoCache,
    Descriptor,
    Digest,
    ImageConfig,
    ImageStore,
    Index,
    Layout,
    Platform,
    copy_blobs,
    destination,
    locate,
    mediatype,
    read_index,
)
from .recompress import has_uncompressed_layers, needs_compressing, recompress_image
from .reference import RegistryReference
from .transport import (
    ArchiveReference,
    ImageReference,
    LayoutReference,
    compresses,
    fetch_remote_referrers,
    inspect_remote,
    parse_image_reference,
)

if TYPE_CHECKING:
    from .registry import Progress, RegistryOptions

Moved = dict[Digest, Descriptor]  # what was named in the source -> what it is at the destination


def _entry(old: Descriptor, new: Descriptor) -> Descriptor:
    """``old``'s index entry (platform, annotations) naming ``new``."""
    return dataclasses.replace(old, media_type=new.media_type, digest=new.digest, size=new.size)


def _images(index: Index, label: str) -> list[Descriptor]:
    for entry in index.manifests:
        if entry.media_type not in mediatype.MANIFESTS:
            raise UsageError(
                f"index in {label} lists {entry.media_type} {entry.digest}: "
                "only indexes of images can be copied whole"
            )
    return list(index.manifests)


def _new_index(index: Index, entries: list[Descriptor], media_type: str | None = None) -> bytes:
    """The index with ``entries`` (and ``media_type``), or its own bytes when that changes nothing."""
    media_type = media_type or index.media_type
    if [e.to_dict() for e in entries] == [
        e.to_dict() for e in index.manifests
    ] and media_type == index.media_type:
        return index.to_bytes()
    return Index.build(entries, media_type=media_type, annotations=index.annotations or None).to_bytes()


def copy_index(
    src: Layout,
    desc: Descriptor,
    dst: Layout,
    tag: str | None,
    *,
    compression: str | None = None,
    cache: BlobInfoCache | None = None,
) -> tuple[Descriptor, Moved]:
    """Every image of the index ``desc`` into ``dst``, then the index, tagged ``tag``: layers
    compressed into ``compression`` when given, else uncompressed ones gzipped when ``dst`` is not
    ``src``'s own store kind (see ``copy_image``). Returns the index written and what moved."""
    index = read_index(src, desc)
    moved: Moved = {}
    entries = []
    with dst.writing():
        for child in _images(index, src.label):
            if compression is not None or has_uncompressed_layers(src, child):
                new = recompress_image(
                    src, child, dst, compression or "gzip", only_uncompressed=compression is None, cache=cache
                )
            else:
                copy_blobs(src, dst, child)
                new = child
            moved[child.digest] = new
            entries.append(_entry(child, new))
        raw = _new_index(index, entries)
        digest, size = dst.blobs.put(raw, desc.digest.algorithm)
        out = Descriptor(index.media_type, digest, size)
        moved[desc.digest] = out
        if tag is not None:
            dst.set_tag(tag, out)
    return out, moved


def push_index(
    src: Layout,
    desc: Descriptor,
    ref: RegistryReference,
    *,
    options: RegistryOptions | None = None,
    progress: Progress | None = None,
    cache: BlobInfoCache | None = None,
    compression: str | None = None,
    format: str | None = None,
) -> tuple[Descriptor, Moved]:
    """Push every image of the index ``desc`` (by digest), then the index (by ``ref``'s tag).
    ``format`` "oci" or "docker" writes every manifest and the index in that format (None keeps
    theirs); uncompressed layers are gzipped, or every layer put in ``compression``."""
    from .registry import Outbound
    from .registry.push import Pusher, staging_at

    if format not in (None, "oci", "docker"):
        raise UsageError(f"--format {format!r}: expected oci or docker")
    index = read_index(src, desc)
    children = _images(index, src.label)
    docker = None if format is None else format == "docker"
    moved: Moved = {}
    entries = []
    pusher = Pusher.open(ref, options, progress, cache)
    try:
        with tempfile.TemporaryDirectory(prefix="pybuild-push-") as tmp:
            staging = staging_at(Path(tmp) / "compressed")
            for child in children:
                own_docker = child.media_type == mediatype.DOCKER_MANIFEST
                if (
                    compression is not None
                    or has_uncompressed_layers(src, child)
                    or docker not in (None, own_docker)
                ):
                    outbound = Outbound(compression or "gzip", only_uncompressed=compression is None)
                    new = pusher.push_converted(src, child, outbound, staging, docker=docker, top=False)
                else:
                    pusher.push_tree(src, child, top=False)
                    new = child
                moved[child.digest] = new
                entries.append(_entry(child, new))
        media = (
            index.media_type
            if docker is None
            else (mediatype.DOCKER_MANIFEST_LIST if docker else mediatype.OCI_INDEX)
        )
        raw = _new_index(index, entries, media)
        out = Descriptor(media, Digest.of_bytes(raw, desc.digest.algorithm), len(raw))
        pusher.put_manifest(raw, media, out.digest, top=True)
    finally:
        pusher.registry.close()
    moved[desc.digest] = out
    return out, moved


def pull_index(
    ref: RegistryReference,
    layout: Layout,
    tag: str | None,
    *,
    options: RegistryOptions | None = None,
    progress: Progress | None = None,
    cache: BlobInfoCache | None = None,
) -> Descriptor:
    """Pull every image of the index ``ref`` names into ``layout`` (each verified, as ``pull``
    does), then the index, tagged ``tag`` only once they are all there. A single image is pulled
    as it is."""
    from .registry import RegistryOptions, pull

    registry = (options or RegistryOptions()).registry(ref.registry)
    what = f"pulling {ref.short}"
    try:
        top, raw = registry.get_manifest(ref, what)
        if top.media_type not in mediatype.INDEXES:
            return pull(ref, layout, tag, registry=registry, progress=progress, cache=cache)
        try:
            index = Index.parse(raw, f"registry {registry.host}: {what}: index {top.digest}")
            children = _images(index, f"registry {registry.host}")
        except PybuildError as exc:
            raise RegistryError(str(exc)) from None
        with layout.writing():  # gc waits: nothing names the images until the index is tagged
            for child in children:
                got = pull(
                    ref.with_digest(child.digest),
                    layout,
                    None,
                    registry=registry,
                    progress=progress,
                    cache=cache,
                )
                if got.digest != child.digest:  # pragma: no cover - pull checks the digest it asked for
                    raise RegistryError(
                        f"registry {registry.host}: {what}: {child.digest} came back as {got.digest}"
                    )
            layout.blobs.put(raw, top.digest.algorithm)
            if tag is not None:
                layout.set_tag(tag, Descriptor(top.media_type, top.digest, top.size))
    finally:
        registry.close()
    return Descriptor(top.media_type, top.digest, top.size)


def remote_platforms(ref: RegistryReference, options: RegistryOptions | None = None) -> list[Platform]:
    """The platforms of the image or index ``ref`` names, read from the registry (an image's
    from its config)."""
    from .registry import RegistryOptions

    registry = (options or RegistryOptions()).registry(ref.registry)
    what = f"inspecting {ref.short}"
    try:
        desc, raw = registry.get_manifest(ref, what)
    finally:
        registry.close()
    if desc.media_type in mediatype.INDEXES:
        try:
            index = Index.parse(raw, f"registry {ref.registry}: {what}: index {desc.digest}")
        except PybuildError as exc:
            raise RegistryError(str(exc)) from None
        return [m.platform for m in index.manifests if m.platform is not None and m.platform.os != "unknown"]
    _, config = inspect_remote(ref.with_digest(desc.digest), options=options)
    return [ImageConfig.parse(config, f"registry {ref.registry}: {what}: config").platform]


def copy_all(
    source: ImageReference,
    dest: ImageReference,
    src: str,
    dst: str,
    *,
    store: ImageStore,
    src_options: RegistryOptions,
    dest_options: RegistryOptions,
    progress: Progress | None = None,
    compression: str | None = None,
    referrers: bool = True,
) -> Descriptor | None:
    """``copy --all``: the index ``src`` names, whole, to ``dst``; with its referrers (and those of
    its images) unless ``referrers`` is False. None when ``src`` names a single image (the caller
    copies it as one)."""
    from .referrers import LayoutDestination, carry_referrers, push_referrers, unchanged

    if isinstance(dest, ArchiveReference) and dest.transport == "docker-archive":
        raise UsageError(
            f"{dst}: a docker-archive holds images, not an index: copy one platform (--platform)"
        )
    cache = BlobInfoCache(store.root)
    with tempfile.TemporaryDirectory(prefix="pybuild-copy-") as tmp:
        # 1. the index in a layout: where it is, or pulled (straight into a layout destination)
        if isinstance(source, LayoutReference):
            found = locate(store, src)
            layout, desc = found.layout, found.descriptor
        elif isinstance(source, RegistryReference):
            into_dest = isinstance(dest, LayoutReference) and compression is None
            layout, tag = (
                destination(store, dst) if into_dest else (Layout.create(Path(tmp) / "staging"), None)
            )
            desc = pull_index(
                source,
                layout,
                tag,
                options=src_options,
                progress=progress,
                cache=cache if layout.root == store.root else None,
            )
            if referrers and not (isinstance(dest, ArchiveReference)):
                roots = [d.digest for d in unchanged(layout, desc).values()]
                fetch_remote_referrers(source, src_options, roots, layout, progress)
            if into_dest:
                return desc
        elif source.transport == "oci-archive":
            from .archive import read_oci_archive

            layout = Layout.create(Path(tmp) / "staging")
            desc = read_oci_archive(source.path, layout, source.name)
        else:
            return None  # a docker-archive holds single images
        if desc.media_type not in mediatype.INDEXES:
            return None
        # 2. out: the images first, then the index
        convert = compression is not None or (compresses(dest) and needs_compressing(layout, desc))
        moved: Moved
        if isinstance(dest, LayoutReference):
            out, tag = destination(store, dst)
            if convert:
                desc, moved = copy_index(layout, desc, out, tag, compression=compression, cache=cache)
            else:
                with out.writing():
                    copy_blobs(layout, out, desc)
                    out.set_tag(tag, Descriptor(desc.media_type, desc.digest, desc.size))
                moved = unchanged(layout, desc)
            if referrers and out.root != layout.root:
                carry_referrers(layout, moved, LayoutDestination(out))
        elif isinstance(dest, RegistryReference):
            desc, moved = push_index(
                layout,
                desc,
                dest,
                options=dest_options,
                progress=progress,
                cache=cache,
                compression=compression,
            )
            if referrers:
                push_referrers(layout, moved, dest, options=dest_options, progress=progress, cache=cache)
        else:
            from .archive import write_oci_archive

            if convert:
                staging = Layout.create(Path(tmp) / "compressed")
                desc, _ = copy_index(layout, desc, staging, None, compression=compression, cache=cache)
                layout = staging
            write_oci_archive(layout, desc, dest.path, dest.name)
    return desc


def push_list(
    store: ImageStore,
    name: str,
    dst: str,
    *,
    options: RegistryOptions | None = None,
    progress: Progress | None = None,
    images: bool = True,
    format: str = "oci",
    compression: str | None = None,
    referrers: bool = True,
) -> Descriptor:
    """``pybuild manifest push``: the list ``name`` in ``store`` to ``dst``, its images first (by
    digest), then the list, in ``format`` ("oci", or "docker": a Docker manifest list). Without
    ``images``, only the list goes (to a registry that has its images already, as they are listed)."""
    dest = parse_image_reference(dst)
    desc = store.resolve(name)
    if not isinstance(dest, RegistryReference):
        if format == "docker":
            raise UsageError(
                f"--format docker: {dst} takes OCI indexes; push to a registry for a Docker list"
            )
        if not images:
            raise UsageError(f"--no-all: {dst} is not a registry; its images go with the list")
        from .transport import copy_image

        return copy_image(
            name, dst, store=store, all_platforms=True, compression=compression, referrers=referrers
        )
    from .referrers import push_referrers

    cache = BlobInfoCache(store.root)
    if images:
        new, moved = push_index(
            store,
            desc,
            dest,
            options=options,
            progress=progress,
            cache=cache,
            compression=compression,
            format=format,
        )
        if referrers:
            push_referrers(store, moved, dest, options=options, progress=progress, cache=cache)
        return new
    return _push_list_only(store, desc, dest, options, format)


def _push_list_only(
    store: ImageStore, desc: Descriptor, dest: RegistryReference, options: RegistryOptions | None, format: str
) -> Descriptor:
    """The index alone, once the registry is found to hold each image it lists."""
    from .registry import RegistryOptions
    from .registry.push import Pusher

    wanted = mediatype.DOCKER_MANIFEST_LIST if format == "docker" else mediatype.OCI_INDEX
    if desc.media_type != wanted:
        raise UsageError(
            f"--no-all --format {format}: the list is {desc.media_type}; its images must be pushed "
            "again in that format (leave out --no-all)"
        )
    pusher = Pusher.open(dest, options or RegistryOptions(), None, None)
    what = f"pushing {dest.short}"
    try:
        for entry in read_index(store, desc).manifests:
            try:
                pusher.registry.get_manifest(dest.with_digest(entry.digest), what)
            except PybuildError:
                raise RegistryError(
                    f"registry {dest.registry}: {what}: it has no image {entry.digest} the list names",
                    hints=["push the list with its images (without --no-all)"],
                ) from None
        raw = store.blobs.read(desc.digest, desc.size)
        pusher.put_manifest(raw, desc.media_type, desc.digest, top=True)
    finally:
        pusher.registry.close()
    return Descriptor(desc.media_type, desc.digest, desc.size)
