"""Finding the image a reference names, and the layout a reference writes into."""

from __future__ import annotations

from dataclasses import dataclass

from ..layout import (
    Descriptor,
    Layout,
    copy_blobs,
    parse_reference,
)
from .app import State


@dataclass
class Located:
    layout: Layout
    descriptor: Descriptor
    name: str | None  # the tag it was found under


def locate(state: State, text: str) -> Located:
    ref = parse_reference(text)
    if ref.transport == "oci":
        assert ref.path is not None
        layout = Layout.open(ref.path, label=f"oci:{ref.path}")
        return Located(layout, layout.resolve(ref.name), ref.name)
    tag, desc = state.store.lookup(text)
    return Located(state.store, desc, tag)


def destination(state: State, text: str) -> tuple[Layout, str]:
    """The layout a reference writes into and the tag to write."""
    ref = parse_reference(text)
    if ref.transport == "oci":
        assert ref.path is not None
        return Layout.create(ref.path, label=f"oci:{ref.path}"), ref.name
    return state.store, ref.name


def store_image(src: Layout, descriptor: Descriptor, dst: Layout, tag: str) -> int:
    """Copy an image's blobs (if the layouts differ) and tag it in ``dst``. Returns blobs copied."""
    with dst.writing():
        copied = 0 if src.root == dst.root else copy_blobs(src, dst, descriptor)
        dst.set_tag(tag, Descriptor(descriptor.media_type, descriptor.digest, descriptor.size))
    return copied


# --- output helpers ------------------------------------------------------------------------------
