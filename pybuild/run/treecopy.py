"""The copy fallback: the stacked lowers copied into a private tree, and, after the run, the
difference between that tree and the lowers written into the upperdir in overlay format.

The stacked view follows overlay's rules over overlay-format layer directories (top first): a 0/0
character device hides the name below it, a directory with ``*.overlay.opaque=y`` hides the lower
content of that directory, and anything but a directory hides what lies below it.

The comparison: an entry whose inode and ctime have not moved since the copy is unchanged; otherwise
type, mode, owner, size, mtime (to the nanosecond), link target, device number and xattrs are
compared, and the content of regular files where the metadata cannot tell. A directory that is not
the copied inode any more (``rm -rf d && mkdir d``) is new, and opaque, as overlay makes it; the
copied directories' inodes are held open during the run so their numbers cannot be reused.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


@dataclass
class Entry:
    source: str  # the path in the layer directory that provides it
    st: os.stat_result


@dataclass
class CopiedRoot:
    root: Path
    view: dict[str, Entry]  # relative path -> the lower entry, parents first
    snapshot: dict[str, tuple[int, int]] = field(default_factory=dict)  # rel -> (ino, ctime_ns)
    skipped: set[str] = field(default_factory=set)  # view entries the copy could not make (devices)
    held: set[int] = field(default_factory=set)  # O_PATH fds of the copied directories

    def close(self) -> None:
        for fd in self.held:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.held.clear()


def _xattrs(path: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIXES):
            continue
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


def lower_entry(lowers: list[Path], rel: str) -> Entry | None:
    """The entry the stacked ``lowers`` (top first) show at ``rel``, or None."""
    parts = rel.split("/")
    for layer in lowers:
        here = str(layer)
        stop = False
        for i, part in enumerate(parts):
            here = os.path.join(here, part)
            try:
                st = os.lstat(here)
            except (FileNotFoundError, NotADirectoryError):
                break
            if i == len(parts) - 1:
                return None if _is_whiteout(st) else Entry(here, st)
            if not stat.S_ISDIR(st.st_mode):
                return None  # a whiteout or a non-directory hides the rest of the path below
            stop = stop or _is_opaque(here)
        if stop:
            return None
    return None


def stacked_view(lowers: list[Path]) -> dict[str, Entry]:
    """Every entry the stacked ``lowers`` (top first) show, by relative path, parents first."""
    view: dict[str, Entry] = {}
    roots: list[str] = []
    for lower in lowers:
        roots.append(str(lower))
        if _is_opaque(str(lower)):
            break
    stack: list[tuple[str, list[str]]] = [("", roots)]
    while stack:
        rel, layers = stack.pop()
        found: dict[str, list[str]] = {}
        for layer in layers:
            with contextlib.suppress(OSError), os.scandir(layer) as it:
                for e in it:
                    found.setdefault(e.name, []).append(e.path)
        subdirs: list[tuple[str, list[str]]] = []
        for name in sorted(found):
            paths = found[name]
            child = f"{rel}/{name}" if rel else name
            top = os.lstat(paths[0])
            if _is_whiteout(top):
                continue
            view[child] = Entry(paths[0], top)
            if not stat.S_ISDIR(top.st_mode):
                continue
            # the layers that contribute to this directory: down to the first opaque one, stopping
            # at a layer where the name is not a directory. ``paths`` only lists layers that have
            # the name, in order; a layer in between without it does not interrupt the stack.
            dirs: list[str] = []
            for path in paths:
                st = top if path is paths[0] else os.lstat(path)
                if not stat.S_ISDIR(st.st_mode):
                    break
                dirs.append(path)
                if _is_opaque(path):
                    break
            subdirs.append((child, dirs))
        stack.extend(reversed(subdirs))
    return view


def _copy_entry(source: str, st: os.stat_result, target: str, links: dict[tuple[int, int], str]) -> bool:
    """Make ``target`` like ``source`` (a directory only as an empty one with mode 0700: its
    metadata comes later, in ``_set_meta``). False where the entry cannot be made (a device node
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
    _set_meta(target, st, _xattrs(source))
    return True


def _set_meta(target: str, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
    """Owner, mode, xattrs and times (to the nanosecond) of ``st`` on ``target``, in the order that
    keeps setuid bits and file capabilities."""
    os.lchown(target, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, stat.S_IMODE(st.st_mode))
    for name, value in xattrs.items():
        with contextlib.suppress(OSError):
            os.setxattr(target, name, value, follow_symlinks=False)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_stack(lowers: list[Path], root: Path) -> CopiedRoot:
    """Copy the stacked ``lowers`` into ``root`` (which must not exist)."""
    view = stacked_view(lowers)
    root.mkdir(mode=0o755)
    copied = CopiedRoot(root, view)
    links: dict[tuple[int, int], str] = {}
    dirs: list[str] = []
    for rel, entry in view.items():
        target = os.path.join(root, rel)
        if not _copy_entry(entry.source, entry.st, target, links):
            copied.skipped.add(rel)
        elif stat.S_ISDIR(entry.st.st_mode):
            dirs.append(rel)
    for rel in reversed(dirs):  # children first: writing into a directory moves its mtime
        entry = view[rel]
        _set_meta(os.path.join(root, rel), entry.st, _xattrs(entry.source))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and len(dirs) + 64 > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for rel in view:
        if rel in copied.skipped:
            continue
        path = os.path.join(root, rel)
        st = os.lstat(path)
        copied.snapshot[rel] = (st.st_ino, st.st_ctime_ns)
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                copied.held.add(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW))
    return copied


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _unchanged(old: Entry, path: str, st: os.stat_result) -> bool:
    """Whether the copy's entry at ``path`` (a non-directory of the same type) still equals ``old``."""
    a = old.st
    if (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) != (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns):
        return False
    if stat.S_ISREG(st.st_mode) and a.st_size != st.st_size:
        return False
    if stat.S_ISLNK(st.st_mode) and os.readlink(old.source) != os.readlink(path):
        return False
    if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and a.st_rdev != st.st_rdev:
        return False
    if _xattrs(old.source) != _xattrs(path):
        return False
    return not stat.S_ISREG(st.st_mode) or _same_content(old.source, path)


def _dir_unchanged(old: Entry, path: str, st: os.stat_result) -> bool:
    a = old.st
    return (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) == (
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_mtime_ns,
    ) and _xattrs(old.source) == _xattrs(path)


def _walk(root: str) -> list[tuple[str, os.stat_result]]:
    out: list[tuple[str, os.stat_result]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            child = f"{rel}/{e.name}" if rel else e.name
            st = e.stat(follow_symlinks=False)
            out.append((child, st))
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(child)
        stack.extend(reversed(subdirs))
    return out


def write_difference(copied: CopiedRoot, upper: Path, rootless: bool) -> None:
    """Write into ``upper`` (an empty upperdir) what overlay would hold after the same changes."""
    opaque_name = "user.overlay.opaque"  # as native overlay writes it (always mounted with userxattr)
    root, view = str(copied.root), copied.view
    up = str(upper)
    # directories made in the upperdir, and the metadata they get once their content is written
    made: dict[str, tuple[os.stat_result, dict[str, bytes]]] = {}
    new_dirs: set[str] = set()  # directories that are new (or recreated): everything below is added
    kept_dirs: set[str] = {""}  # the copied directories still in place: deletions below need whiteouts
    links: dict[tuple[int, int], str] = {}
    present: set[str] = set()

    def ensure_parent(rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if not parent or parent in made or os.path.isdir(os.path.join(up, parent)):
            return
        ensure_parent(parent)
        os.mkdir(os.path.join(up, parent), 0o700)
        old = view[parent]
        made[parent] = (old.st, _xattrs(old.source))

    def add(rel: str, st: os.stat_result, opaque: bool) -> None:
        ensure_parent(rel)
        source, target = os.path.join(root, rel), os.path.join(up, rel)
        if stat.S_ISDIR(st.st_mode):
            if not os.path.isdir(target):
                os.mkdir(target, 0o700)
            attrs = _xattrs(source)
            if opaque:
                attrs[opaque_name] = b"y"
            made[rel] = (st, attrs)
        else:
            _copy_entry(source, st, target, links)

    for rel, st in _walk(root):
        present.add(rel)
        parent = rel.rpartition("/")[0]
        path = os.path.join(root, rel)
        if parent in new_dirs:
            add(rel, st, False)
            if stat.S_ISDIR(st.st_mode):
                new_dirs.add(rel)
            continue
        old = view.get(rel)
        if old is None or rel in copied.skipped:
            add(rel, st, False)
            if stat.S_ISDIR(st.st_mode):
                new_dirs.add(rel)
            continue
        if stat.S_IFMT(old.st.st_mode) != stat.S_IFMT(st.st_mode):
            add(rel, st, True)  # a directory made over a deleted entry is opaque, as overlay makes it
            if stat.S_ISDIR(st.st_mode):
                new_dirs.add(rel)
            continue
        same_inode = copied.snapshot.get(rel, (-1, -1))[0] == st.st_ino
        if stat.S_ISDIR(st.st_mode):
            if not same_inode:
                add(rel, st, True)
                new_dirs.add(rel)
            else:
                kept_dirs.add(rel)
                if not _dir_unchanged(old, path, st):
                    add(rel, st, False)
            continue
        if same_inode and copied.snapshot.get(rel) == (st.st_ino, st.st_ctime_ns):
            continue
        if not _unchanged(old, path, st):
            add(rel, st, False)
    for rel in view:
        if rel in present or rel in copied.skipped:
            continue
        parent = rel.rpartition("/")[0]
        if parent in kept_dirs:
            ensure_parent(rel)
            target = os.path.join(up, rel)
            if not os.path.lexists(target):
                os.mknod(target, stat.S_IFCHR, 0)
    for rel in sorted(made, key=lambda r: r.count("/"), reverse=True):
        st, attrs = made[rel]
        _set_meta(os.path.join(up, rel), st, attrs)
