"""pybuild's own store: an OCI image layout under $XDG_DATA_HOME/pybuild, tags being full names."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import AmbiguousImage, ImageNotFound, PybuildError, UsageError
from .descriptor import Descriptor
from .image import load_image
from .imagelayout import Layout
from .reference import parse_name, parse_reference
from .referrers import is_artifact

# what an image built without a name is tagged in the store (so that index.json references it)
UNTAGGED = "localhost/pybuild-untagged"
_HEX_PREFIX = re.compile(r"(?:sha256:)?([0-9a-f]{6,64})")


def default_store_path() -> Path:
    explicit = os.environ.get("PYBUILD_STORE")
    if explicit:
        return Path(explicit)
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "pybuild"


class ImageStore(Layout):
    """The store. ``lookup`` takes a name (normalised), or an image ID (config digest) prefix."""

    @classmethod
    def at(cls, root: Path | str | None = None) -> ImageStore:
        path = Path(root) if root is not None else default_store_path()
        store = cls.create(path, label=f"store {path}")
        assert isinstance(store, ImageStore)
        return store

    def lookup(self, text: str) -> tuple[str | None, Descriptor]:
        """(tag, descriptor) for a name or an ID prefix."""
        try:
            name = str(parse_name(text))
        except UsageError:
            name = None
        tags = self.tags()
        if name is not None:
            for tag, desc in reversed(tags):
                if tag == name:
                    return tag, desc
        match = _HEX_PREFIX.fullmatch(text)
        if match:
            prefix = match.group(1)
            # by image ID: a build and its pushed-and-pulled copy have different manifests but
            # one config, so they are one image; only different configs make a prefix ambiguous
            hits: dict[str, tuple[str, Descriptor]] = {}
            for tag, desc in tags:
                image_id = self.image_id(desc)
                if image_id.startswith(prefix) or desc.digest.encoded.startswith(prefix):
                    hits[image_id or desc.digest.encoded] = (tag, desc)  # the newest entry wins
            if len(hits) == 1:
                return next(iter(hits.values()))
            if len(hits) > 1:
                candidates = ", ".join(f"{iid[:12]} ({tag})" for iid, (tag, _) in sorted(hits.items()))
                raise AmbiguousImage(
                    f"image ID prefix {text!r} is ambiguous in {self.label}: it matches {candidates}",
                    hints=["give more of the ID, or a name"],
                )
        raise ImageNotFound(f"image {name or text!r} is not in {self.label}")

    def listing(self) -> list[tuple[str | None, Descriptor]]:
        """Every image in the store as (name, descriptor), index order; None for an image with no
        name (built untagged, or in index.json without a ref name), listed once, and only when no
        name points at the same manifest (as podman lists `<none>`)."""
        named: set[str] = set()
        entries: list[tuple[str | None, Descriptor]] = []
        for desc in self.read_index().manifests:
            name = desc.ref_name
            if name is None and is_artifact(self, desc):
                continue  # an SBOM or signature of an image, not an image
            if name is not None and not name.startswith(UNTAGGED + ":"):
                named.add(str(desc.digest))
            entries.append((name, desc))
        out: list[tuple[str | None, Descriptor]] = []
        seen: set[str] = set()
        for tag, desc in entries:
            name = tag
            if tag is None or tag.startswith(UNTAGGED + ":"):
                if str(desc.digest) in named or str(desc.digest) in seen:
                    continue
                seen.add(str(desc.digest))
                name = None
            out.append((name, desc))
        return out

    def image_id(self, desc: Descriptor) -> str:
        try:
            return load_image(self, desc).manifest.config.digest.encoded
        except PybuildError:  # an unreadable image simply has no ID to match
            return ""


@dataclass(frozen=True)
class Located:
    """An image found by a reference: where it is, its descriptor, and the tag it was found under."""

    layout: Layout
    descriptor: Descriptor
    name: str | None


def locate(store: ImageStore, text: str) -> Located:
    """The image ``text`` names: ``oci:DIR[:TAG]``, or in ``store`` a name or an image ID prefix."""
    ref = parse_reference(text)
    if ref.transport == "oci":
        assert ref.path is not None
        layout = Layout.open(ref.path, label=f"oci:{ref.path}")
        return Located(layout, layout.resolve(ref.name), ref.name)
    tag, desc = store.lookup(text)
    return Located(store, desc, tag)


def untag(store: ImageStore, text: str) -> Located:
    """`pybuild rm`: remove the name ``text`` (in ``store``, or oci:DIR[:TAG]); its blobs go at the
    next gc. Returns what it named."""
    found = locate(store, text)
    if found.name is None:
        raise UsageError(f"{text!r} names no tag in {store.label}")
    found.layout.remove_tag(found.name)
    return found


def destination(store: ImageStore, text: str) -> tuple[Layout, str]:
    """The layout a reference writes into (an ``oci:`` layout is created if missing) and the tag."""
    ref = parse_reference(text)
    if ref.transport == "oci":
        assert ref.path is not None
        return Layout.create(ref.path, label=f"oci:{ref.path}"), ref.name
    return store, ref.name


def open_store(path: Path | str | None = None) -> ImageStore:
    """The image store at ``path`` (default $PYBUILD_STORE, else $XDG_DATA_HOME/pybuild), created if
    missing."""
    return ImageStore.at(path)


def open_layout(path: Path | str, *, create: bool = False) -> Layout:
    """The OCI image layout at ``path``; with ``create``, a new empty one when there is none."""
    label = f"oci:{path}"
    return Layout.create(path, label=label) if create else Layout.open(path, label=label)
