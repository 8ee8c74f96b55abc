"""Manifest lists (image indexes) named in a layout, as podman keeps them: an index blob tagged
NAME in index.json, whose entries are images of the same layout, each with the platform its config
says (os, architecture, variant). Made by ``pybuild manifest create`` and by builds with
``--manifest``; changed by add and remove (each change is a new index blob, tagged in one atomic
index.json write); the images they list are kept by gc through them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ImageNotFound, LayoutError, UsageError
from . import mediatype
from .descriptor import Descriptor, Platform
from .digest import Digest
from .document import Index
from .image import load_image, read_index
from .imagelayout import Layout


def is_list(desc: Descriptor) -> bool:
    """Whether ``desc`` names an index (a manifest list), not one image."""
    return desc.media_type in mediatype.INDEXES


def config_platform_of(layout: Layout, desc: Descriptor) -> Platform:
    """An image's platform as its config says it: os, architecture, variant, os.version, os.features."""
    config = load_image(layout, desc).config.to_dict()
    features = config.get("os.features")
    return Platform(
        architecture=str(config.get("architecture") or ""),
        os=str(config.get("os") or ""),
        variant=str(config["variant"]) if config.get("variant") else None,
        os_version=str(config["os.version"]) if config.get("os.version") else None,
        os_features=tuple(str(f) for f in features) if isinstance(features, list) else (),
    )


def list_entry(layout: Layout, desc: Descriptor, annotations: dict[str, str] | None = None) -> Descriptor:
    """The entry a list gets for the image ``desc`` (a manifest in ``layout``): its media type,
    digest and size, and the platform of its config."""
    if desc.media_type not in mediatype.MANIFESTS:
        raise UsageError(f"{desc.digest} in {layout.label} is {desc.media_type}: a list holds images")
    return Descriptor(
        desc.media_type,
        desc.digest,
        desc.size,
        annotations=annotations or {},
        platform=config_platform_of(layout, desc),
    )


def find_list(layout: Layout, name: str) -> tuple[Descriptor, Index] | None:
    """The list tagged ``name`` in ``layout``: (its descriptor, the index), None when no such tag;
    an error when the name is an image's."""
    try:
        desc = layout.resolve(name)
    except ImageNotFound:
        return None
    if not is_list(desc):
        raise UsageError(f"{name} in {layout.label} is an image, not a manifest list")
    return desc, read_index(layout, desc)


def read_list(layout: Layout, name: str) -> tuple[Descriptor, Index]:
    found = find_list(layout, name)
    if found is None:
        raise ImageNotFound(f"no manifest list {name!r} in {layout.label}")
    return found


def _write_list(
    layout: Layout, name: str, entries: Sequence[Descriptor], annotations: Any = None
) -> Descriptor:
    """Put a new index blob with ``entries`` and tag it ``name``: one atomic index.json write."""
    index = Index.build(list(entries), annotations=annotations)
    with layout.writing():
        for entry in entries:
            if not layout.blobs.exists(entry.digest):
                raise LayoutError(f"image {entry.digest} is not in {layout.label}")
        digest, size = layout.blobs.put(index.to_bytes())
        desc = Descriptor(index.media_type, digest, size)
        layout.set_tag(name, desc)
    return desc


def create_list(
    layout: Layout, name: str, images: Sequence[Descriptor] = (), *, amend: bool = False
) -> Descriptor:
    """``pybuild manifest create NAME [IMAGE...]``: a new list (an error when NAME exists, unless
    ``amend``, which adds to it)."""
    found = find_list(layout, name)
    if found is not None and not amend:
        raise UsageError(
            f"manifest list {name!r} already exists in {layout.label}", hints=["--amend adds to it"]
        )
    return add_to_list(layout, name, images)


def add_to_list(
    layout: Layout, name: str, images: Sequence[Descriptor], *, same_platform: bool = False
) -> Descriptor:
    """Add the images (manifests in ``layout``) to the list ``name``, made if missing. An image
    already listed is listed once; with ``same_platform`` (a build's images), an entry for the
    same platform is replaced, so that a rebuild does not pile up."""
    found = find_list(layout, name)
    entries = list(found[1].manifests) if found else []
    annotations = found[1].annotations if found else None
    for image in images:
        entry = list_entry(layout, image)
        entries = [
            e
            for e in entries
            if e.digest != entry.digest and not (same_platform and _same_platform(e.platform, entry.platform))
        ]
        entries.append(entry)
    return _write_list(layout, name, entries, annotations)


def _same_platform(a: Platform | None, b: Platform | None) -> bool:
    if a is None or b is None:
        return False
    return (a.os, a.architecture, a.variant or "") == (b.os, b.architecture, b.variant or "")


def remove_from_list(layout: Layout, name: str, digest: Digest) -> Descriptor:
    """Take the image ``digest`` out of the list ``name``."""
    _, index = read_list(layout, name)
    entries = [e for e in index.manifests if e.digest != digest]
    if len(entries) == len(index.manifests):
        raise ImageNotFound(f"manifest list {name!r} in {layout.label} has no image {digest}")
    return _write_list(layout, name, entries, index.annotations)


def list_platforms(index: Index) -> list[str]:
    """OS/ARCH[/VARIANT] of each entry (``?`` where it names none)."""
    return [str(e.platform) if e.platform else "?" for e in index.manifests]
