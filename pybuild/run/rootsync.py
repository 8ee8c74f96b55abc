"""Bringing a root directory (``/``, in place) to the view of stacked layer directories, changing
only what differs, and remembering where each entry came from.

Every entry ``sync_root`` writes is a copy of one layer directory's entry: its *origin* (the layer
directory, by device and inode, and the path in it). ``Held`` remembers the origin of each entry
and the inode and ctime the entry had while that was true (after a step, an entry the step wrote
has the step's upperdir as origin: the layer directory it becomes). The next sync keeps an entry
whose origin is the one the new view wants and whose inode and ctime have not moved (nothing
touched it since); everything else is removed and copied again. So switching between stages that
share their base, or exporting from another stage for COPY --from, costs the files that differ,
not the image. Hard-linked entries are always copied again (their link group is rebuilt whole),
directories always get their metadata back (adding and removing entries moves their times).

The layer directories named in ``Held`` are held open (O_PATH) while it lives: a removed directory's
inode number cannot come back as another layer's and pass for it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..diff.overlay import Entry
from ..diff.trees import Difference, TreeRecord, read_xattrs, walk
from ..errors import RunError
from .cleanup import force_remove
from .treecopy import copy_entry, set_meta

Ident = tuple[int, int]  # a layer directory: (st_dev, st_ino)
Origin = tuple[Ident, str]  # an entry of a layer directory: the directory, the path in it


def identity(path: Path | str) -> Ident:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def origins_of(lowerdirs: list[Path], view: dict[str, Entry]) -> dict[str, Origin]:
    """The origin of every entry of ``view`` (``LowerStack(lowerdirs).view()``)."""
    ids = {os.fspath(p): identity(p) for p in lowerdirs}
    return {rel: (ids[entry.source[: -len(rel) - 1]], rel) for rel, entry in view.items()}


@dataclass
class Held:
    """What the root holds: the stack (top first) and, where the last step changed something, its
    upperdir on top; the origin of each entry, and its (inode, ctime) while that origin was true."""

    stack: list[Ident]
    upper: Ident | None
    origin: dict[str, Origin]
    seen: dict[str, tuple[int, int]]
    fds: list[int] = field(default_factory=list)  # the layer directories named, held open

    def hold(self, paths: Iterable[Path]) -> None:
        for path in paths:
            with contextlib.suppress(OSError):
                self.fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    def after_step(self, record: TreeRecord, differences: list[Difference], upper: Path) -> None:
        """What the root holds once a step made ``differences`` (to the root as ``record``-ed
        before it), written into ``upper``."""
        self.seen = {rel: (m.ino, m.ctime_ns) for rel, m in record.entries.items()}
        if not differences:
            return
        if self.upper is None:
            self.upper = identity(upper)
            self.hold([upper])
        gone = [d.path for d in differences if d.kind in ("deleted", "replaced")]
        if gone:
            tops = tuple(gone)
            under = tuple(p + "/" for p in gone)
            self.origin = {k: v for k, v in self.origin.items() if k not in tops and not k.startswith(under)}
            self.seen = {k: v for k, v in self.seen.items() if k not in tops and not k.startswith(under)}
        for d in differences:
            if d.st is not None:
                self.origin[d.path] = (self.upper, d.path)
                self.seen[d.path] = (d.st.st_ino, d.st.st_ctime_ns)


def sync_root(
    root: str,
    view: dict[str, Entry],
    origins: dict[str, Origin],
    skip: Container[str],
    keep: Callable[[str], bool],
    held: Held | None,
) -> None:
    """Make ``root`` show ``view``: what is not in it is removed (except directories ``keep`` names,
    on the way to skipped paths), what differs from what ``held`` says it holds is copied again;
    the paths in ``skip`` are left alone with everything below them."""
    base = root.rstrip("/")
    present: set[str] = set()
    gone: set[str] = set()
    for rel, st in list(walk(root, skip)):  # (walked first: removing as it walks would pull its floor)
        parent = rel.rpartition("/")[0]
        if parent in gone:
            gone.add(rel)
            continue
        want = view.get(rel)
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and keep(rel):  # on the way to what is never touched: never removed
            if want is not None and not stat.S_ISDIR(want.st.st_mode):
                raise RunError(
                    f"in-place mode: the image's /{rel} is not a directory, and pybuild's paths are in it"
                )
            present.add(rel)
            continue
        if want is None:
            pass
        elif (is_dir and stat.S_ISDIR(want.st.st_mode)) or (
            held is not None
            and stat.S_IFMT(st.st_mode) == stat.S_IFMT(want.st.st_mode)
            and want.st.st_nlink == 1
            and held.origin.get(rel) == origins[rel]
            and held.seen.get(rel) == (st.st_ino, st.st_ctime_ns)
        ):
            present.add(rel)
            continue
        force_remove(Path(f"{base}/{rel}"))
        gone.add(rel)
    links: dict[tuple[int, int], str] = {}
    skipped: set[str] = set()
    dirs: list[str] = []
    for rel, entry in view.items():
        if rel in skip or rel.rpartition("/")[0] in skipped:
            skipped.add(rel)
            continue
        made = rel in present or copy_entry(entry.source, entry.st, f"{base}/{rel}", links)
        if made and stat.S_ISDIR(entry.st.st_mode):
            dirs.append(rel)
    for rel in reversed(dirs):  # children first: writing into a directory moves its mtime
        entry = view[rel]
        set_meta(f"{base}/{rel}", entry.st, read_xattrs(entry.source))
