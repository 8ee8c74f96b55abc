"""COPY and ADD inside the step's root: runs chrooted into the image's merged view (``run_function``),
reading the sources through a directory file descriptor opened before the chroot.

Destination paths are resolved inside the chroot by the one resolver (run/paths.py), so a symlink in
the image (``/app -> /``, ``/etc/conf -> /usr/local/conf``) is followed as the container would
follow it and never leads outside the root. Sources are read with ``O_NOFOLLOW`` below their top-level path.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from ..errors import ContainerfileError, RunError
from ..run.paths import resolve_in_root
from ..run.users import chown_ids
from .archives import open_archive  # at module level: ADD extracts after the root has changed

CHUNK = 1 << 20


@dataclass
class CopySource:
    """One matched source: ``rel`` below the source root ("" = the root itself); for a directory,
    ``entries`` lists what to copy below it (relative to ``rel``, parents first), None = everything."""

    rel: str
    entries: list[str] | None = None
    as_path: str | None = None  # the name it takes at the destination (default: ``rel``)


@dataclass
class CopyRequest:
    sources: list[CopySource]
    dest: str  # absolute, inside the root
    dest_is_dir: bool  # the destination ends with "/" or there are several sources
    chown: str | None = None
    chmod: str | None = None
    parents: bool = False
    extract: bool = False  # ADD: unpack local archives
    what: str = "COPY"
    file_modes: dict[str, int] = field(default_factory=dict)  # rel -> mode override (heredocs)


# --- ids and modes ---------------------------------------------------------------------------


def resolve_chown(spec: str, what: str) -> tuple[int, int]:
    """``user[:group]`` (names or numbers) through the root's /etc/passwd and /etc/group, with
    BuildKit's rules for COPY (``run.users.chown_ids``). Called chrooted into the step's root."""
    user, _, _ = spec.partition(":")
    if not user:
        raise ContainerfileError(f"{what}: --chown={spec!r}: missing user")
    try:
        return chown_ids("/", spec)
    except RunError as exc:
        raise ContainerfileError(f"{what}: --chown: {exc}") from None


def parse_chmod(spec: str, what: str) -> tuple[int | None, list[tuple[str, str, str]]]:
    """An octal mode, or symbolic clauses (``u+x,go=rx``) as (who, op, perms)."""
    if spec and all(c in "01234567" for c in spec):
        value = int(spec, 8)
        if value > 0o7777:
            raise ContainerfileError(f"{what}: --chmod={spec}: mode out of range")
        return value, []
    clauses = []
    for clause in spec.split(","):
        i = 0
        while i < len(clause) and clause[i] in "ugoa":
            i += 1
        who, rest = clause[:i] or "a", clause[i:]
        if not rest or rest[0] not in "+-=" or any(c not in "rwxXst" for c in rest[1:]):
            raise ContainerfileError(f"{what}: --chmod={spec}: expected an octal mode or u/g/o/a[+-=]rwxXst")
        clauses.append((who, rest[0], rest[1:]))
    return None, clauses


def apply_chmod(mode: int, parsed: tuple[int | None, list[tuple[str, str, str]]], is_dir: bool) -> int:
    value, clauses = parsed
    if value is not None:
        return value
    perm = stat.S_IMODE(mode)
    for who, op, perms in clauses:
        bits = 0
        for p in perms:
            if p == "r":
                bits |= 0o444
            elif p == "w":
                bits |= 0o222
            elif p == "x" or (p == "X" and (is_dir or perm & 0o111)):
                bits |= 0o111
            elif p == "s":
                bits |= stat.S_ISUID | stat.S_ISGID
            elif p == "t":
                bits |= stat.S_ISVTX
        mask = 0
        if "a" in who:
            mask = 0o7777
        else:
            if "u" in who:
                mask |= 0o4700
            if "g" in who:
                mask |= 0o2070
            if "o" in who:
                mask |= 0o1007
        bits &= mask
        if op == "+":
            perm |= bits
        elif op == "-":
            perm &= ~bits
        else:
            perm = (perm & ~mask) | bits
    return perm


# --- destination paths ------------------------------------------------------------------------


def _resolve(path: str, what: str) -> str:
    """The path ``path`` names inside the root (``/``: this runs chrooted), symlinks followed by the
    one resolver (run/paths.py), which keeps them inside the root; missing components are kept as
    they are. A symlink loop is an error naming ``what`` was done."""
    inside = resolve_in_root("/", path)
    if inside is None:
        raise ContainerfileError(f"{what} {path}: too many levels of symbolic links")
    return "/" + inside


def ensure_dir(path: str, uid: int = 0, gid: int = 0) -> None:
    """mkdir -p inside the root; created directories get 0755 and ``uid:gid``."""
    real = _resolve(path, "cannot create directory")
    missing = []
    here = real
    while not os.path.lexists(here):
        missing.append(here)
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    if os.path.lexists(here) and not os.path.isdir(here):
        raise ContainerfileError(f"cannot create directory {path}: {here} exists and is not a directory")
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        os.chmod(d, 0o755)
        os.lchown(d, uid, gid)


def _remove(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        for name in os.listdir(path):
            _remove(os.path.join(path, name))
        os.rmdir(path)
    else:
        os.unlink(path)


# --- copying ---------------------------------------------------------------------------------


class Copier:
    def __init__(self, src_fd: int, req: CopyRequest) -> None:
        self.src_fd = src_fd
        self.req = req
        self.owner = resolve_chown(req.chown, req.what) if req.chown else None
        self.chmod = parse_chmod(req.chmod, req.what) if req.chmod else None
        self.links: dict[tuple[int, int], str] = {}
        self.dir_times: list[tuple[str, int, int]] = []

    def run(self) -> int:
        count = 0
        for source in self.req.sources:
            count += self.copy_source(source)
        for path, atime, mtime in reversed(self.dir_times):
            with contextlib.suppress(OSError):
                os.utime(path, ns=(atime, mtime), follow_symlinks=False)
        return count

    def _stat(self, rel: str, *, follow: bool) -> os.stat_result:
        try:
            if not rel:
                return os.fstat(self.src_fd)
            return os.stat(rel, dir_fd=self.src_fd, follow_symlinks=follow)
        except OSError as exc:
            raise ContainerfileError(f"{self.req.what}: source {rel!r}: {exc.strerror or exc}") from None

    def copy_source(self, source: CopySource) -> int:
        # the source's own path: a symlink is followed (inside the source root the caller resolved it)
        st = self._stat(source.rel, follow=True)
        dest = self.req.dest
        name = source.as_path if source.as_path is not None else source.rel
        base = os.path.basename(name.rstrip("/"))
        if stat.S_ISDIR(st.st_mode):
            target = os.path.join(dest, name) if self.req.parents and name else dest
            ensure_dir(os.path.dirname(target.rstrip("/")) or "/")
            self.put(source.rel, target, st, top=True)
            entries = source.entries
            if entries is None:
                entries = list(self._walk(source.rel))
            for entry in entries:
                rel = f"{source.rel}/{entry}" if source.rel else entry
                self.put(rel, os.path.join(target, entry), self._stat(rel, follow=False))
            return 1 + len(entries)
        if self.req.parents:
            target = os.path.join(dest, name)
        elif self.req.dest_is_dir or dest.endswith("/") or os.path.isdir(_resolve(dest, "cannot copy to")):
            target = os.path.join(dest, base)
        else:
            target = dest
        if self.req.extract and stat.S_ISREG(st.st_mode) and self._try_extract(source.rel, dest):
            return 1
        ensure_dir(os.path.dirname(target) or "/")
        self.put(source.rel, target, st)
        return 1

    def _walk(self, rel: str) -> list[str]:
        out: list[str] = []
        stack = [""]
        while stack:
            sub = stack.pop()
            path = f"{rel}/{sub}" if rel and sub else rel or sub
            fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.src_fd)
            try:
                names = sorted(os.listdir(fd))
                dirs = []
                for name in names:
                    entry = f"{sub}/{name}" if sub else name
                    out.append(entry)
                    if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                        dirs.append(entry)
                stack.extend(reversed(dirs))
            finally:
                os.close(fd)
        return out

    def _owner(self, st: os.stat_result) -> tuple[int, int]:
        return self.owner if self.owner is not None else (0, 0)

    def put(self, rel: str, target: str, st: os.stat_result, *, top: bool = False) -> None:
        """Create ``target`` (a path inside the root) as a copy of source entry ``rel``."""
        parent = _resolve(os.path.dirname(target.rstrip("/")) or "/", "cannot copy to")
        name = os.path.basename(target.rstrip("/"))
        path = os.path.join(parent, name) if name else parent
        mode = st.st_mode
        is_dir = stat.S_ISDIR(mode)
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISLNK(existing.st_mode) and is_dir and top:
            # the destination directory is a symlink: copy into what it points at
            path = _resolve(path, "cannot copy to")
            existing = os.lstat(path) if os.path.lexists(path) else None
        if existing is not None and not (is_dir and stat.S_ISDIR(existing.st_mode)):
            _remove(path)
            existing = None
        uid, gid = self._owner(st)
        perm = stat.S_IMODE(mode)
        if rel in self.req.file_modes:
            perm = self.req.file_modes[rel]
        if self.chmod is not None and not stat.S_ISLNK(mode):
            perm = apply_chmod(perm, self.chmod, is_dir)
        if is_dir:
            if existing is None:
                os.mkdir(path, 0o700)
            elif top:
                # an existing destination directory keeps its own metadata
                return
            os.lchown(path, uid, gid)
            os.chmod(path, perm)
            self.dir_times.append((path, st.st_atime_ns, st.st_mtime_ns))
            return
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                os.link(self.links[key], path)
                return
            src = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.src_fd) if rel else -1
            try:
                out = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
                )
                try:
                    _copy_data(src, out, st.st_size)
                finally:
                    os.close(out)
            finally:
                if src >= 0:
                    os.close(src)
            if st.st_nlink > 1:
                self.links[key] = path
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(rel, dir_fd=self.src_fd), path)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(path, 0o600)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            try:
                os.mknod(path, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            except PermissionError:
                return  # devices cannot be made in a user namespace: leave them out
        else:
            return  # sockets are not copied
        os.lchown(path, uid, gid)
        if not stat.S_ISLNK(mode):
            os.chmod(path, perm)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _try_extract(self, rel: str, dest: str) -> bool:
        """ADD of a local archive: unpack it into ``dest`` (a directory) and report True; False when
        the file is not an archive pybuild reads (then it is copied as it is)."""
        from ..diff import apply_layer

        fd = os.open(rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.src_fd)
        with os.fdopen(fd, "rb") as f:
            stream = open_archive(f)
            if stream is None:
                return False
            ensure_dir(dest)
            apply_layer(
                cast(BinaryIO, stream),
                Path(_resolve(dest, "cannot extract to")),
                what=f"{self.req.what} {rel}",
            )
        return True


def _copy_data(src: int, out: int, size: int) -> None:
    if size == 0 or src < 0:
        return
    try:
        remaining = size
        while remaining > 0:
            n = os.copy_file_range(src, out, min(remaining, 1 << 30))
            if n == 0:
                break
            remaining -= n
        if remaining == 0:
            return
    except OSError:
        os.lseek(src, 0, os.SEEK_SET)
        os.lseek(out, 0, os.SEEK_SET)
        os.ftruncate(out, 0)
    while chunk := os.read(src, CHUNK):
        os.write(out, chunk)


def copy_into_root(src_fd: int, req: CopyRequest) -> int:
    """Run inside the chroot: copy ``req``'s sources (read through ``src_fd``) into the root."""
    try:
        return Copier(src_fd, req).run()
    except OSError as exc:
        raise ContainerfileError(
            f"{req.what}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        ) from None


def mkdirs_in_root(paths: list[str]) -> None:
    """Run inside the chroot: create each directory (and missing parents) with 0755 root:root."""
    for path in paths:
        try:
            ensure_dir(path)
        except OSError as exc:
            raise ContainerfileError(f"cannot create {path}: {exc.strerror or exc}") from None


def path_info_in_root(path: str) -> str:
    """Run inside the chroot: "dir", "file", "missing" or "other" for ``path`` (symlinks followed)."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "file" if stat.S_ISREG(st.st_mode) else "other"
