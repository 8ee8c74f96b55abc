"""The overlay format, defined once: how a layer directory or an upperdir marks deletions and opaque
directories, how a layer tar spells them, and how overlay stacks layer directories.

- On disk (overlayfs, and pybuild's layer directories): a deleted name is a *whiteout*, a character
  device 0/0 (or, where mknod is refused, an empty file with ``*.overlay.whiteout``); a directory
  whose lower content is hidden is *opaque*, ``*.overlay.opaque=y`` (``user.`` as pybuild writes it,
  since native overlay is always mounted with ``userxattr``; ``trusted.`` as root overlay writes it).
- In a layer tar (image-spec layer.md): a whiteout is ``DIR/.wh.NAME``, an opaque directory
  ``DIR/.wh..wh..opq``.
- fuse-overlayfs writes its own markers in an upperdir (``.wh.NAME`` files, ``.wh..wh..opq`` files or
  ``.wh..opq`` devices, ``user.fuseoverlayfs.*`` xattrs); run/rootfs.py rewrites them with these.
- Stacking (``LowerStack``): layer directories top first; a whiteout hides the name below it, an
  opaque directory hides the lower content of that directory (a layer's root is never opaque), and
  anything but a directory hides what lies below it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"  # in a tar: DIR/.wh..wh..opq
OPAQUE_XATTR = "user.overlay.opaque"  # what pybuild writes
OPAQUE_XATTRS = ("user.overlay.opaque", "trusted.overlay.opaque")
WHITEOUT_XATTR = "user.overlay.whiteout"
WHITEOUT_XATTRS = ("user.overlay.whiteout", "trusted.overlay.whiteout")
OVERLAY_XATTR_PREFIXES = ("user.overlay.", "trusted.overlay.")
REFUSED_XATTR_SUFFIXES = ("overlay.redirect", "overlay.metacopy")  # redirect_dir and metacopy upperdirs
FUSE_OPAQUE_FILES = (".wh..wh..opq", ".wh..opq")  # fuse-overlayfs: a file, or a 0/0 device
FUSE_XATTR_PREFIX = "user.fuseoverlayfs."
FUSE_OPAQUE_XATTR = "user.fuseoverlayfs.opaque"


# --- whiteouts and opaque directories on disk ---------------------------------------------------


def is_whiteout(st: os.stat_result) -> bool:
    """A whiteout device: a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_whiteout_entry(st: os.stat_result, xattrs: Mapping[str, bytes]) -> bool:
    """A whiteout in either form overlay reads: the 0/0 device, or a file marked by xattr."""
    return is_whiteout(st) or any(name in xattrs for name in WHITEOUT_XATTRS)


def opaque_in(xattrs: Mapping[str, bytes]) -> bool:
    """Whether a directory with these xattrs is opaque."""
    return any(xattrs.get(name) == b"y" for name in OPAQUE_XATTRS)


def is_opaque(path: str | Path) -> bool:
    """Whether the directory at ``path`` is opaque (never follows a symlink)."""
    for name in OPAQUE_XATTRS:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


def is_overlay_xattr(name: str) -> bool:
    """An xattr of the format itself (opaque, whiteout, origin...), never content of a layer."""
    return name.startswith(OVERLAY_XATTR_PREFIXES)


def make_whiteout(name: str, dir_fd: int | None = None) -> bool:
    """Make a whiteout at ``name`` (relative to ``dir_fd`` if given): the 0/0 device, or where mknod
    is refused, an empty file marked with ``user.overlay.whiteout`` (which overlay reads too). False
    when neither could be made; other errors of mknod are raised."""
    try:
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)
        return True
    except PermissionError:
        pass
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o000, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        os.setxattr(f"/proc/self/fd/{fd}", WHITEOUT_XATTR, b"y")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def mark_opaque(target: str | Path | int) -> None:
    """Mark a directory opaque, as pybuild's layer directories and upperdirs do: ``target`` is its
    path (never followed if a symlink) or an open descriptor of it."""
    if isinstance(target, int):
        os.setxattr(target, OPAQUE_XATTR, b"y")
    else:
        os.setxattr(target, OPAQUE_XATTR, b"y", follow_symlinks=False)


# --- the tar spelling ---------------------------------------------------------------------------


def tar_whiteout(base: str) -> str:
    """The tar member name (last component) that deletes ``base``."""
    return WHITEOUT_PREFIX + base


def tar_marker(base: str) -> tuple[str, str] | None:
    """What a tar member's last component marks: ("opaque", "") for ``.wh..wh..opq``, ("whiteout",
    NAME) for ``.wh.NAME``, None for an ordinary name."""
    if not base.startswith(WHITEOUT_PREFIX):
        return None
    if base == OPAQUE_MARKER:
        return "opaque", ""
    return "whiteout", base[len(WHITEOUT_PREFIX) :]


# --- stacking layer directories -------------------------------------------------------------------


@dataclass
class Entry:
    source: str  # the path in the layer directory that provides it
    st: os.stat_result


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


class LowerStack:
    """What overlay shows over layer directories in overlay format (top first). Which layers make
    up each directory is worked out once per directory."""

    def __init__(self, lowers: list[Path] | list[str]) -> None:
        # every layer's root takes part: overlay ignores an opaque marker on a layer's root
        self._dirs: dict[str, list[str] | None] = {"": [os.fspath(lower) for lower in lowers]}

    def dir_layers(self, rel: str) -> list[str] | None:
        """The layer paths that make up the directory ``rel`` (top first), None where the stack
        shows no directory there: down to the first opaque one, stopping at a layer where the name
        is not a directory; a layer without the name does not interrupt the stack."""
        if rel in self._dirs:
            return self._dirs[rel]
        parent, _, name = rel.rpartition("/")
        above = self.dir_layers(parent)
        layers: list[str] | None = None
        if above is not None:
            for layer in above:
                path = f"{layer}/{name}"
                st = _lstat(path)
                if st is None:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    break  # a whiteout or a non-directory: nothing of the name below shows
                if layers is None:
                    layers = []
                layers.append(path)
                if is_opaque(path):
                    break
        self._dirs[rel] = layers
        return layers

    def entry(self, rel: str) -> Entry | None:
        """The entry the stack shows at ``rel``, or None."""
        parent, _, name = rel.rpartition("/")
        for layer in self.dir_layers(parent) or ():
            path = f"{layer}/{name}"
            st = _lstat(path)
            if st is not None:
                return None if is_whiteout(st) else Entry(path, st)
        return None

    def view(self) -> dict[str, Entry]:
        """Every entry the stack shows, by relative path, parents first (names sorted)."""
        view: dict[str, Entry] = {}
        stack: list[str] = [""]
        while stack:
            rel = stack.pop()
            found: dict[str, str] = {}
            for layer in self.dir_layers(rel) or ():
                with contextlib.suppress(OSError), os.scandir(layer) as it:
                    for e in it:
                        found.setdefault(e.name, e.path)
            subdirs = []
            for name in sorted(found):
                child = f"{rel}/{name}" if rel else name
                st = os.lstat(found[name])
                if is_whiteout(st):
                    continue
                view[child] = Entry(found[name], st)
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(child)
            stack.extend(reversed(subdirs))
        return view
