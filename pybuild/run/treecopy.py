"""The copy fallback: the stacked lowers copied into a private tree, and, after the run, the
difference between that tree and what was copied written into the upperdir in overlay format.

The stacked view follows overlay's rules over the layer directories (diff/overlay.py:
``LowerStack``). The copy is recorded as soon as it is made (diff/trees.py: ``TreeRecord``, each
entry's source being the layer directory's file), and after the run the copy is compared with that
record by the one tree comparison (``compare``): an entry whose inode and ctime have not moved is
unchanged; otherwise metadata, xattrs and content (against the layer directory's file) tell. A
directory that is not the copied inode any more (``rm -rf d && mkdir d``) is new, and opaque, as
overlay makes it; the copied directories' inodes are held open during the run so their numbers
cannot be reused.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import stat
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..diff.overlay import Entry, LowerStack, make_whiteout, mark_opaque
from ..diff.trees import NOTHING, Difference, TreeRecord, compare, read_xattrs


@dataclass
class CopiedRoot:
    root: Path
    record: TreeRecord  # the copy as made; sources: the layer directories' entries
    held: set[int] = field(default_factory=set)  # O_PATH fds of the copied directories
    skip: Container[str] = NOTHING  # paths below root that are not part of the tree (in-place mode)

    def close(self) -> None:
        for fd in self.held:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.held.clear()


def copy_entry(source: str, st: os.stat_result, target: str, links: dict[tuple[int, int], str]) -> bool:
    """Make ``target`` like ``source`` (a directory only as an empty one with mode 0700: its
    metadata comes later, in ``set_meta``). False where the entry cannot be made (a device node
    without privilege)."""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        os.mkdir(target, 0o700)
        return True
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            os.link(links[key], target)
            return True
        shutil.copyfile(source, target, follow_symlinks=False)
        if st.st_nlink > 1:
            links[key] = target
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(source), target)
    else:
        try:
            os.mknod(target, mode, st.st_rdev)
        except OSError:
            return False
    set_meta(target, st, read_xattrs(source))
    return True


def set_meta(target: str, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
    """Owner, mode, xattrs and times (to the nanosecond) of ``st`` on ``target``, in the order that
    keeps setuid bits and file capabilities."""
    os.lchown(target, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, stat.S_IMODE(st.st_mode))
    for name, value in xattrs.items():
        with contextlib.suppress(OSError):
            os.setxattr(target, name, value, follow_symlinks=False)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_view(view: dict[str, Entry], root: Path) -> list[str]:
    """Copy the entries of a stacked ``view`` (``LowerStack.view``) into the empty directory
    ``root``; returns the directories made. An entry the copy cannot make (a device node without
    privilege) is left out."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[str] = []
    base = os.fspath(root)
    for rel, entry in view.items():
        target = f"{base}/{rel}"
        if copy_entry(entry.source, entry.st, target, links) and stat.S_ISDIR(entry.st.st_mode):
            dirs.append(rel)
    for rel in reversed(dirs):  # children first: writing into a directory moves its mtime
        entry = view[rel]
        set_meta(f"{base}/{rel}", entry.st, read_xattrs(entry.source))
    return dirs


def hold_directories(root: Path, dirs: list[str]) -> set[int]:
    """O_PATH descriptors of the directories ``dirs`` under ``root``, held so that their inode
    numbers cannot be reused while a command runs (``compare`` tells a new directory by its inode)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and len(dirs) + 64 > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held: set[int] = set()
    base = os.fspath(root).rstrip("/")
    for rel in dirs:
        with contextlib.suppress(OSError):
            held.add(os.open(f"{base}/{rel}", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW))
    return held


def copy_stack(lowers: list[Path], root: Path) -> CopiedRoot:
    """Copy the stacked ``lowers`` into ``root`` (which must not exist) and record the copy. An entry
    the copy cannot make (a device node without privilege) is left out, so it is not in the record."""
    view = LowerStack(lowers).view()
    root.mkdir(mode=0o755)
    dirs = copy_view(view, root)
    copied = CopiedRoot(root, TreeRecord.of(root, sources={rel: e.source for rel, e in view.items()}))
    copied.held = hold_directories(root, dirs)
    return copied


def write_difference(
    copied: CopiedRoot, upper: Path, rootless: bool, differences: Iterable[Difference] | None = None
) -> None:
    """Write into ``upper`` (an empty upperdir) what overlay would hold after the same changes
    (``differences``: the comparison of the copy with its record, when the caller has made it)."""
    root, up = os.fspath(copied.root).rstrip("/"), str(upper)
    # directories made in the upperdir, and the metadata they get once their content is written
    made: dict[str, tuple[os.stat_result, dict[str, bytes]]] = {}
    links: dict[tuple[int, int], str] = {}

    def ensure_parent(rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if not parent or parent in made or os.path.isdir(os.path.join(up, parent)):
            return
        ensure_parent(parent)
        os.mkdir(os.path.join(up, parent), 0o700)
        # a parent of a change that is not new was copied from a layer (in place, it may also be a
        # directory the container had around pybuild's own paths: then it is taken as it is)
        source = copied.record.source(parent) or f"{root}/{parent}"
        made[parent] = (os.lstat(source), read_xattrs(source))

    if differences is None:
        differences = compare(copied.record, copied.root, skip=copied.skip)
    for d in differences:
        ensure_parent(d.path)
        source, target = f"{root}/{d.path}", os.path.join(up, d.path)
        if d.kind == "deleted":
            if not os.path.lexists(target) and not make_whiteout(target):
                raise OSError(f"cannot make a whiteout at {target}")
            continue
        assert d.st is not None
        if stat.S_ISDIR(d.st.st_mode):
            if not os.path.isdir(target):
                os.mkdir(target, 0o700)
            made[d.path] = (d.st, read_xattrs(source))
            if d.kind == "replaced":  # a directory made over a deleted entry is opaque, as overlay makes it
                mark_opaque(target)
        else:
            copy_entry(source, d.st, target, links)
    for rel in sorted(made, key=lambda r: r.count("/"), reverse=True):
        st, attrs = made[rel]
        set_meta(os.path.join(up, rel), st, attrs)
