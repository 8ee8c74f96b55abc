"""The one tree comparison: record a tree, then compare a tree against the record or another tree.

``compare(before, root)`` walks ``root`` (parents first) and says, for every entry that differs from
``before``, how: ``added`` (nothing there before, or below a directory that is new), ``changed``
(same type, other content or metadata), ``replaced`` (another type of entry, or a directory that
is not the recorded inode any more: ``rm -rf d && mkdir d``), or ``deleted`` (the top of a subtree
that is gone, below a directory that is still there). The callers turn that into a changeset
(changeset.changes_of: repack, ``diff_trees``, an in-place build) or an upperdir (the copy
fallback in run/treecopy.py).

What "differs" means, in one place (``unchanged``):

- a record of the *same* tree knows inode numbers and ctimes: an inode whose ctime has not moved
  has not changed (any write, chmod, chown, xattr or rename moves it);
- otherwise type, mode, owner, mtime (to ``resolution_ns``), size, link target, device number and
  xattrs (not overlay's own) are compared, and file content where the metadata cannot tell, if the
  old content can still be read; where it cannot, a moved ctime means changed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import LayerError
from .overlay import is_overlay_xattr

NOTHING: frozenset[str] = frozenset()


def walk(root: Path | str, skip: Container[str] = NOTHING) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) for every entry below ``root``, parents before children, names sorted;
    the relative paths in ``skip`` are left out with everything below them."""
    base = os.fspath(root)
    prefix = "" if base.endswith("/") else "/"
    stack = [""]
    while stack:
        rel = stack.pop()
        where = f"{base}{prefix}{rel}" if rel else base
        try:
            # names only: a directory of 100,000 files kept as DirEntry objects, each caching its
            # stat, costs ~60 MiB; the names cost a tenth of that
            with os.scandir(where) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:
            raise LayerError(f"cannot read {Path(base) / rel}: {exc.strerror or exc}") from None
        subdirs = []
        for name in names:
            path = f"{rel}/{name}" if rel else name
            if path in skip:
                continue
            st = os.lstat(f"{where}/{name}" if where != "/" else f"/{name}")
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(path)
        stack.extend(reversed(subdirs))


def read_xattrs(path: str | Path, *, overlay: bool = False) -> dict[str, bytes]:
    """The xattrs of ``path`` (never following a symlink); overlay's own only when ``overlay``."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if not overlay and is_overlay_xattr(name):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def same_content(a: str | Path, b: str | Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


@dataclass(frozen=True, slots=True)
class Meta:
    """One entry as recorded. ``link`` and ``xattrs`` are None where they were not read (then they
    are read from the entry's source, if it has one)."""

    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    ino: int = 0
    dev: int = 0
    rdev: int = 0
    link: str | None = None
    xattrs: tuple[tuple[str, bytes], ...] | None = None
    nlink: int = 0  # 0: not recorded (an unpack record)

    @classmethod
    def of(cls, path: str, st: os.stat_result, *, link: bool = True, xattrs: bool = False) -> Meta:
        return cls(
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
            st.st_dev,
            st.st_rdev,
            os.readlink(path) if link and stat.S_ISLNK(st.st_mode) else None,
            tuple(sorted(read_xattrs(path).items())) if xattrs else None,
            st.st_nlink,
        )


class Before(Protocol):
    """What a tree is compared against."""

    identity: bool  # inode numbers and ctimes are those of the compared tree (a record of it)

    def get(self, rel: str) -> Meta | None: ...

    def source(self, rel: str) -> str | None:
        """A path where the old entry can still be read (content, link, xattrs), or None."""

    def paths(self) -> Iterable[str]:
        """Every path, parents first."""


class TreeRecord:
    """A tree as it was: ``Meta`` by relative path, parents first, and optionally, where each
    entry can still be read (the copy fallback's layer directories)."""

    identity = True

    def __init__(self, entries: dict[str, Meta], sources: dict[str, str] | None = None) -> None:
        self.entries = entries
        self.sources = sources or {}

    @classmethod
    def of(
        cls,
        root: Path | str,
        *,
        xattrs: bool = False,
        sources: dict[str, str] | None = None,
        skip: Container[str] = NOTHING,
    ) -> TreeRecord:
        """Record the tree at ``root``: metadata, inode, ctime and link targets, and xattrs if asked;
        the paths in ``skip`` (relative) are left out with everything below them."""
        base = os.fspath(root).rstrip("/")
        entries = {rel: Meta.of(f"{base}/{rel}", st, xattrs=xattrs) for rel, st in walk(root, skip)}
        return cls(entries, sources)

    def get(self, rel: str) -> Meta | None:
        return self.entries.get(rel)

    def source(self, rel: str) -> str | None:
        return self.sources.get(rel)

    def paths(self) -> Iterable[str]:
        return self.entries

    # the bundle's unpack record (.pybuild-unpack.json "tree"): [mode, uid, gid, size, mtime_ns,
    # ctime_ns, ino, link target] per path, as pybuild has always written it
    def to_json(self) -> dict[str, list[Any]]:
        return {
            rel: [m.mode, m.uid, m.gid, m.size, m.mtime_ns, m.ctime_ns, m.ino, m.link]
            for rel, m in self.entries.items()
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TreeRecord:
        """Raises ValueError where ``doc`` is not such a record."""
        entries = {}
        for rel in sorted(doc):  # sorted: parents before children
            row = doc[rel]
            if not (isinstance(row, list) and len(row) == 8 and all(isinstance(n, int) for n in row[:7])):
                raise ValueError(f"bad tree record entry for {rel!r}")
            mode, uid, gid, size, mtime_ns, ctime_ns, ino, link = row
            entries[rel] = Meta(mode, uid, gid, size, mtime_ns, ctime_ns, ino, link=link)
        return cls(entries)


class DirTree:
    """Another directory as the ``before`` side (``diff_trees``): looked up path by path, parents
    that are not real directories (a symlink, a file) hiding what is below them."""

    identity = False

    def __init__(self, root: Path | str) -> None:
        self.root = os.fspath(root)
        self._real: dict[str, bool] = {"": True}

    def _lstat(self, rel: str) -> os.stat_result | None:
        try:
            return os.lstat(f"{self.root}/{rel}")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _real_dir(self, rel: str) -> bool:
        real = self._real
        todo = []
        while rel not in real:
            todo.append(rel)
            rel = rel.rpartition("/")[0]
        ok = real[rel]
        for below in reversed(todo):
            if ok:
                st = self._lstat(below)
                ok = st is not None and stat.S_ISDIR(st.st_mode)
            real[below] = ok
        return ok

    def get(self, rel: str) -> Meta | None:
        parent = rel.rpartition("/")[0]
        if parent and not self._real_dir(parent):
            return None
        st = self._lstat(rel)
        return None if st is None else Meta.of(f"{self.root}/{rel}", st, link=False)

    def source(self, rel: str) -> str | None:
        return f"{self.root}/{rel}"

    def paths(self) -> Iterable[str]:
        return (rel for rel, _ in walk(self.root))


@dataclass(frozen=True)
class Difference:
    path: str
    kind: str  # "added", "changed", "replaced", "deleted"
    st: os.stat_result | None = None  # the entry now (None for "deleted")
    was_dir: bool = False  # "replaced": the old entry was a directory


def _xattrs_of(meta: Meta, source: str | None) -> dict[str, bytes] | None:
    if meta.xattrs is not None:
        return dict(meta.xattrs)
    return read_xattrs(source) if source is not None else None


def unchanged(
    old: Meta, source: str | None, new: Meta, path: str, *, identity: bool, resolution_ns: int = 1
) -> bool:
    """Whether the entry at ``path`` (``new``, same type as ``old``) is what ``old`` recorded."""
    if identity and old.ino == new.ino and old.ctime_ns == new.ctime_ns:
        return True
    if (old.mode, old.uid, old.gid) != (new.mode, new.uid, new.gid):
        return False
    if old.mtime_ns // resolution_ns != new.mtime_ns // resolution_ns:
        return False
    mode = new.mode
    if stat.S_ISREG(mode) and old.size != new.size:
        return False
    if stat.S_ISREG(mode) and new.nlink > 1 and old.nlink and old.nlink != new.nlink:
        return False  # newly hard-linked: the file travels with its new links

    if stat.S_ISLNK(mode):
        target = old.link if old.link is not None else (os.readlink(source) if source else None)
        if target != os.readlink(path):
            return False
    if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and old.rdev != new.rdev:
        return False
    if _xattrs_of(old, source) != read_xattrs(path):
        return False
    if stat.S_ISREG(mode):
        if source is None:
            return False  # the ctime moved and the old content is gone: it may have changed
        if not identity and (old.dev, old.ino) == (new.dev, new.ino):
            return True  # the same file (a hard link between the trees)
        return same_content(source, path)
    return True


def compare(
    before: Before, root: Path | str, *, resolution_ns: int = 1, skip: Container[str] = NOTHING
) -> Iterator[Difference]:
    """How the tree at ``root`` differs from ``before`` (see the module); the paths in ``skip``
    (relative, with everything below them) are neither walked nor reported."""
    base = os.fspath(root).rstrip("/")
    fresh: set[str] = set()  # directories that are new: everything below is added
    kept: set[str] = {""}  # directories that are still the ones recorded: deletions below count
    present: set[str] = set()
    for rel, st in walk(root, skip):
        present.add(rel)
        is_dir = stat.S_ISDIR(st.st_mode)
        parent = rel.rpartition("/")[0]
        old = None if parent in fresh else before.get(rel)
        if old is None:
            if is_dir:
                fresh.add(rel)
            yield Difference(rel, "added", st)
            continue
        if stat.S_IFMT(old.mode) != stat.S_IFMT(st.st_mode) or (
            is_dir and before.identity and old.ino != st.st_ino
        ):
            if is_dir:
                fresh.add(rel)
            yield Difference(rel, "replaced", st, was_dir=stat.S_ISDIR(old.mode))
            continue
        path = f"{base}/{rel}"
        new = Meta.of(path, st, link=False)
        if is_dir:
            kept.add(rel)
        if not unchanged(
            old, before.source(rel), new, path, identity=before.identity, resolution_ns=resolution_ns
        ):
            yield Difference(rel, "changed", st)
    for rel in before.paths():
        if rel not in present and rel.rpartition("/")[0] in kept and rel not in skip:
            yield Difference(rel, "deleted")
