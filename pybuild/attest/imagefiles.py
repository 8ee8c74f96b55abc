"""An image's files, read from its layer blobs without unpacking them: only the few an SBOM needs.

The layers are streamed bottom first through pybuild/diff's decompression and tar reader. Each
layer's changes apply to what the layers below left, as layer.md says: an entry replaces the lower
entry at its path (and, if it is not a directory, everything below that path), a whiteout
``.wh.NAME`` removes NAME and everything below it, an opaque marker ``DIR/.wh..wh..opq`` removes the
lower content of DIR; whiteouts never hide entries of their own layer. Only wanted files' bytes are
kept, each up to a size limit, so memory stays bounded whatever the image holds.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from ..diff import open_layer
from ..diff.overlay import tar_marker
from ..diff.tarreader import LNKTYPE, SYMTYPE, TarEntry, TarReader, member_parts
from ..errors import LayerError, UnsafeLayer
from ..layout import Descriptor, Layout, mediatype

MiB = 1 << 20
DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
TOTAL_LIMIT = 512 * MiB  # all kept files together
_DIST_INFO = re.compile(r"(?:.+/)?(?:site|dist)-packages/[^/]+\.dist-info/METADATA")
_EGG_INFO = re.compile(r"(?:.+/)?(?:site|dist)-packages/[^/]+\.egg-info(?:/PKG-INFO)?")
_COPYRIGHT = re.compile(r"usr/share/doc/[^/]+/copyright")
_CHUNK = 1 << 20


def sbom_file_limit(path: str) -> int | None:
    """The size limit of a file an SBOM reads (``path`` relative to the root), or None for others."""
    if path in (DPKG_STATUS, APK_INSTALLED):
        return 64 * MiB
    if path.startswith(DPKG_STATUS_D) and "/" not in path[len(DPKG_STATUS_D) :]:
        return None if path.endswith(".md5sums") else 4 * MiB
    if path in OS_RELEASE:
        return 64 << 10
    if _COPYRIGHT.fullmatch(path):
        return 1 * MiB
    if path.endswith(("/METADATA", "/PKG-INFO", ".egg-info")) and (
        _DIST_INFO.fullmatch(path) or _EGG_INFO.fullmatch(path)
    ):
        return 4 * MiB
    return None


@dataclass(frozen=True)
class ImageFile:
    """A wanted file as the image shows it: its bytes, or a symlink's target, or why it was not read."""

    path: str
    data: bytes | None = None
    link: str | None = None
    problem: str | None = None


@dataclass
class ImageFiles:
    """The wanted files of an image's final filesystem, by path relative to the root ("etc/os-release")."""

    files: dict[str, ImageFile] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def read(self, path: str, _depth: int = 0) -> bytes | None:
        """The bytes at ``path``, following symlinks among the kept files; None where there are none."""
        found = self.files.get(path)
        if found is None or _depth > 8:
            return None
        if found.link is not None:
            target = posixpath.normpath(posixpath.join(posixpath.dirname("/" + path), found.link))
            return self.read(target.lstrip("/"), _depth + 1)
        return found.data

    def paths(self, pattern: re.Pattern[str] | None = None) -> list[str]:
        return sorted(p for p in self.files if pattern is None or pattern.fullmatch(p))


class _LayerChanges:
    """What one layer does to the files below it, gathered while its tar is read."""

    def __init__(self, below: dict[str, ImageFile]) -> None:
        self.below = below
        # the parent directories of the files below: only there does a non-directory cut anything
        self.below_dirs = {"/".join(p.split("/")[:i]) for p in below for i in range(1, p.count("/") + 1)}
        self.replaced: set[str] = set()  # paths of files below where an entry of this layer stands
        self.cut: set[str] = set()  # non-directories of this layer standing where a directory was
        self.removed: set[str] = set()  # whiteout targets
        self.opaque: set[str] = set()  # directories whose lower content is hidden
        self.added: dict[str, ImageFile] = {}


def read_image_files(
    layout: Layout,
    layers: list[Descriptor],
    wanted: Callable[[str], int | None] = sbom_file_limit,
) -> ImageFiles:
    """The files ``wanted`` names (it returns a size limit, or None to pass a file by) of the
    filesystem that ``layers`` (bottom first, blobs in ``layout``) make."""
    result = ImageFiles()
    budget = [TOTAL_LIMIT]
    for i, layer in enumerate(layers):
        what = f"layer {i + 1} ({layer.digest}) in {layout.label}"
        if mediatype.layer_compression(layer.media_type) is None:
            result.skipped.append(f"{what}: media type {layer.media_type} is not a layer, not read")
            continue
        if layer.urls and not layout.blobs.exists(layer.digest):
            result.skipped.append(f"{what}: foreign layer not in the layout, not read")
            continue
        changes = _LayerChanges(result.files)
        with layout.blobs.open(layer.digest, layer.size) as blob:
            _read_layer(blob, layer.media_type, what, wanted, changes, result, budget)
        _apply(result.files, changes)
    return result


def _read_layer(
    blob: BinaryIO,
    media_type: str,
    what: str,
    wanted: Callable[[str], int | None],
    changes: _LayerChanges,
    result: ImageFiles,
    budget: list[int],
) -> None:
    stream = open_layer(blob, media_type, what)
    reader = TarReader(stream, what)
    try:
        while (entry := reader.next()) is not None:
            try:
                parts = member_parts(entry.name)
            except UnsafeLayer as exc:
                raise LayerError(f"{what}: {exc}") from None
            if not parts:
                continue
            base = parts[-1]
            parent = "/".join(parts[:-1])
            marker = tar_marker(base)
            if marker is not None:
                kind, name = marker
                if kind == "opaque":
                    changes.opaque.add(parent)
                else:
                    changes.removed.add(f"{parent}/{name}".lstrip("/"))
                continue
            path = "/".join(parts)
            if path in changes.below:
                changes.replaced.add(path)
            if not entry.isdir() and path in changes.below_dirs:
                changes.cut.add(path)
            limit = wanted(path)
            if limit is None or entry.isdir():
                continue
            found = _keep(reader, entry, path, limit, changes, result, budget)
            changes.added[path] = found
            if found.problem is not None:
                result.skipped.append(f"/{path}: {found.problem}")
        # the tar's end-of-archive blocks are not the end of the stream: read on, so that the blob
        # reader reaches EOF and checks the blob's size and digest
        while stream.read(_CHUNK):
            pass
    finally:
        reader.close()


def _keep(
    reader: TarReader,
    entry: TarEntry,
    path: str,
    limit: int,
    changes: _LayerChanges,
    result: ImageFiles,
    budget: list[int],
) -> ImageFile:
    if entry.type == SYMTYPE:
        return ImageFile(path, link=entry.linkname)
    if entry.type == LNKTYPE:
        try:
            target = "/".join(member_parts(entry.linkname))
        except UnsafeLayer:
            return ImageFile(path, problem=f"hard link to {entry.linkname!r} outside the root, not read")
        source = changes.added.get(target) or result.files.get(target)
        if source is None or source.data is None:
            return ImageFile(path, problem=f"hard link to /{target}, which was not read")
        return ImageFile(path, data=source.data)
    if not entry.isreg():
        return ImageFile(path, problem="not a regular file, not read")
    if entry.size > limit:
        return ImageFile(path, problem=f"{entry.size} bytes, over the {limit}-byte limit: not read")
    if entry.size > budget[0]:
        return ImageFile(path, problem="over the limit for all files read from one image: not read")
    data = _read_data(reader, entry.size)
    budget[0] -= len(data)
    return ImageFile(path, data=data)


def _read_data(reader: TarReader, size: int) -> bytes:
    parts = []
    got = 0
    while got < size:
        chunk = reader.read(min(_CHUNK, size - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    if got != size:
        raise LayerError(f"{reader.what} is truncated or corrupt: entry data ends early")
    return b"".join(parts)


def _under(path: str, folder: str) -> bool:
    return folder == "" or path.startswith(folder + "/")


def _apply(files: dict[str, ImageFile], changes: _LayerChanges) -> None:
    """Apply one layer's changes to the files the layers below left."""
    if files:
        gone = [
            path
            for path in files
            if (
                path in changes.replaced
                or path in changes.removed
                or any(_under(path, d) for d in changes.opaque)
                or any(_under(path, r) for r in changes.removed)
                or _below_cut(path, changes.cut)
            )
        ]
        for path in gone:
            del files[path]
    files.update(changes.added)


def _below_cut(path: str, cut: set[str]) -> bool:
    """Whether a non-directory of this layer stands at one of ``path``'s parent directories."""
    parts = path.split("/")
    return any("/".join(parts[:i]) in cut for i in range(1, len(parts)))
