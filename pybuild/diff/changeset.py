"""Changesets: what differs between a lower and an upper tree, or what an overlay upperdir holds."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import LayerError

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTRS = ("user.overlay.opaque", "trusted.overlay.opaque")
WHITEOUT_XATTRS = ("user.overlay.whiteout", "trusted.overlay.whiteout")
REFUSED_XATTRS = ("overlay.redirect", "overlay.metacopy")


@dataclass(frozen=True, order=True)
class Change:
    """One entry of a changeset. ``kind``: "add" (take the entry from the upper tree), "delete"
    (a whiteout ``.wh.NAME``) or "opaque" (``DIR/.wh..wh..opq``: hide the lower content of DIR)."""

    path: str
    kind: str


def walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) for every entry below ``root``, parents before children."""
    base = os.fspath(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(f"{base}/{rel}" if rel else base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise LayerError(f"cannot read {Path(root) / rel}: {exc.strerror or exc}") from None
        subdirs = []
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(path)
        stack.extend(reversed(subdirs))


def _lstat(path: Path | str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def lstat_in(root: Path, path: str) -> os.stat_result | None:
    """lstat of ``root/path`` where every parent must be a real directory (no symlink followed)."""
    return _ParentDirs(os.fspath(root)).lstat(path)


class _ParentDirs:
    """``lstat_in`` for many paths below one root: which directories are real is looked up once each."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._real: dict[str, bool] = {"": True}

    def lstat(self, path: str) -> os.stat_result | None:
        parent = path.rpartition("/")[0]
        if parent and not self.real_dir(parent):
            return None
        return _lstat(f"{self.root}/{path}")

    def real_dir(self, path: str) -> bool:
        real = self._real
        todo = []
        while path not in real:
            todo.append(path)
            path = path.rpartition("/")[0]
        ok = real[path]
        for below in reversed(todo):
            if ok:
                st = _lstat(f"{self.root}/{below}")
                ok = st is not None and stat.S_ISDIR(st.st_mode)
            real[below] = ok
        return ok


def _xattrs(path: Path | str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def _meta(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What a layer entry records: mode, owner, size and mtime in whole seconds (what tar keeps)."""
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    return (st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns // 1_000_000_000)


def _exact(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)


def _same_content(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def diff_trees(lower: Path, upper: Path) -> list[Change]:
    """The changes that turn ``lower`` into ``upper``: type, mode, owner, size, mtime, link target and
    xattrs are compared, and content where the metadata cannot tell them apart."""
    lower, upper = Path(lower), Path(upper)
    changes: list[Change] = []
    lower_dirs = _ParentDirs(os.fspath(lower))
    for path, st in walk(upper):
        old = lower_dirs.lstat(path)
        if old is None or stat.S_IFMT(old.st_mode) != stat.S_IFMT(st.st_mode):
            if old is not None and stat.S_ISDIR(old.st_mode):
                changes.append(Change(path, "delete"))  # a directory replaced by something else
            changes.append(Change(path, "add"))
            continue
        same = _meta(old) == _meta(st)
        if same and stat.S_ISLNK(st.st_mode):
            same = os.readlink(lower / path) == os.readlink(upper / path)
        if same and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            same = old.st_rdev == st.st_rdev
        if same:
            same = _xattrs(lower / path) == _xattrs(upper / path)
        if same and stat.S_ISREG(st.st_mode):
            same = (old.st_dev, old.st_ino) == (st.st_dev, st.st_ino) or _same_content(
                lower / path, upper / path
            )
        if not same:
            changes.append(Change(path, "add"))
    covered: set[str] = set()  # deleted, or replaced by a non-directory: their children need nothing
    for path, st in walk(lower):
        parent = path.rpartition("/")[0]
        if parent and parent in covered:
            covered.add(path)
            continue
        now = _lstat(upper / path)
        if now is None:
            covered.add(path)
            changes.append(Change(path, "delete"))
        elif stat.S_ISDIR(st.st_mode) and not stat.S_ISDIR(now.st_mode):
            covered.add(path)
    return changes


def _lower_stat(lowers: list[_ParentDirs], path: str) -> os.stat_result | None:
    """The entry a path names in the stacked lowers (top first), or None where none has it."""
    for lower in lowers:
        st = lower.lstat(path)
        if st is None:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None  # whited out in a lower layer
        return st
    return None


def scan_upperdir(upper: Path, lowers: list[Path]) -> list[Change]:
    """The changeset an overlay upperdir holds over ``lowers`` (top first)."""
    upper = Path(upper)
    base = os.fspath(upper)
    below_dirs = [_ParentDirs(os.fspath(lower)) for lower in lowers]
    changes: list[Change] = []
    for path, st in walk(upper):
        attrs = _xattrs(f"{base}/{path}")
        for name in attrs:
            if name.endswith(REFUSED_XATTRS):
                raise LayerError(
                    f"upperdir {upper} uses {name} on {path}: redirect_dir and metacopy are not supported",
                    hints=["mount overlay without redirect_dir and metacopy"],
                )
        below = _lower_stat(below_dirs, path)
        if (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0) or any(x in attrs for x in WHITEOUT_XATTRS):
            if below is not None:
                changes.append(Change(path, "delete"))
            continue
        if stat.S_ISDIR(st.st_mode):
            opaque = any(attrs.get(x) == b"y" for x in OPAQUE_XATTRS)
            if opaque and below is not None and stat.S_ISDIR(below.st_mode):
                changes.append(Change(path, "opaque"))
                changes.append(Change(path, "add"))
                continue
            if below is not None and stat.S_ISDIR(below.st_mode) and _exact(below) == _exact(st):
                continue  # copied up, not changed itself (copy-up keeps the exact mtime; any change moves it)
        changes.append(Change(path, "add"))
    return changes
