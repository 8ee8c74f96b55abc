"""Changesets: what an overlay upperdir holds over its lowers (``scan_upperdir``), and a tree
comparison (trees.compare) as changeset entries (``changes_of``, ``diff_trees``)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LayerError
from .overlay import REFUSED_XATTR_SUFFIXES, LowerStack, is_whiteout_entry, opaque_in
from .trees import Difference, DirTree, Meta, compare, read_xattrs, unchanged, walk


@dataclass(frozen=True, order=True, slots=True)
class Change:
    """One entry of a changeset. ``kind``: "add" (take the entry from the upper tree), "delete"
    (a whiteout ``.wh.NAME``) or "opaque" (``DIR/.wh..wh..opq``: hide the lower content of DIR)."""

    path: str
    kind: str


def changes_of(differences: Iterable[Difference]) -> list[Change]:
    """A tree comparison as changeset entries: what is added, changed or replaced is added (a
    directory replaced by anything is deleted first, so nothing of it shows through); a deleted
    subtree is one whiteout."""
    changes: list[Change] = []
    for d in differences:
        if d.kind == "deleted" or (d.kind == "replaced" and d.was_dir):
            changes.append(Change(d.path, "delete"))
        if d.kind != "deleted":
            changes.append(Change(d.path, "add"))
    return changes


def diff_trees(lower: Path, upper: Path) -> list[Change]:
    """The changes that turn ``lower`` into ``upper``: type, mode, owner, size, mtime (in whole
    seconds, what a tar keeps), link target and xattrs are compared, and content where the
    metadata cannot tell them apart."""
    return changes_of(compare(DirTree(lower), upper, resolution_ns=1_000_000_000))


def _exact(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)


def scan_upperdir(upper: Path, lowers: list[Path]) -> list[Change]:
    """The changeset an overlay upperdir holds over ``lowers`` (top first)."""
    upper = Path(upper)
    base = os.fspath(upper)
    stack = LowerStack(lowers)
    changes: list[Change] = []
    for path, st in walk(upper):
        attrs = read_xattrs(f"{base}/{path}", overlay=True)
        for name in attrs:
            if name.endswith(REFUSED_XATTR_SUFFIXES):
                raise LayerError(
                    f"upperdir {upper} uses {name} on {path}: redirect_dir and metacopy are not supported",
                    hints=["mount overlay without redirect_dir and metacopy"],
                )
        entry = stack.entry(path)
        below = entry.st if entry is not None else None
        if is_whiteout_entry(st, attrs):
            if below is not None:
                changes.append(Change(path, "delete"))
            continue
        if stat.S_ISDIR(st.st_mode):
            if opaque_in(attrs) and below is not None and stat.S_ISDIR(below.st_mode):
                changes.append(Change(path, "opaque"))
                changes.append(Change(path, "add"))
                continue
            if below is not None and stat.S_ISDIR(below.st_mode) and _exact(below) == _exact(st):
                continue  # copied up, not changed itself (copy-up keeps the exact mtime; any change moves it)
        elif (
            entry is not None and below is not None and stat.S_IFMT(below.st_mode) == stat.S_IFMT(st.st_mode)
        ):
            here = f"{base}/{path}"
            if unchanged(
                Meta.of(entry.source, below),
                entry.source,
                Meta.of(here, st, link=False),
                here,
                identity=False,
            ):
                # copied up without a change (a file opened for writing, as lckpwdf does with
                # /etc/.pwd.lock): the layer would carry it for nothing, and no other mode sees it
                continue
        changes.append(Change(path, "add"))
    return changes
