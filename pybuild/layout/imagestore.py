"""pybuild's own store: an OCI image layout under $XDG_DATA_HOME/pybuild, tags being full names."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ImageNotFound, PybuildError, UsageError
from .descriptor import Descriptor
from .image import load_image
from .imagelayout import Layout
from .reference import parse_name

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
            hits = {}
            for tag, desc in tags:
                image_id = self.image_id(desc)
                if image_id.startswith(prefix) or desc.digest.encoded.startswith(prefix):
                    hits[desc.digest] = (tag, desc)
            if len(hits) == 1:
                return next(iter(hits.values()))
            if len(hits) > 1:
                raise UsageError(f"image ID prefix {text!r} is ambiguous in {self.label}")
        raise ImageNotFound(f"image {name or text!r} is not in {self.label}")

    def image_id(self, desc: Descriptor) -> str:
        try:
            return load_image(self, desc).manifest.config.digest.encoded
        except PybuildError:  # an unreadable image simply has no ID to match
            return ""
