"""The safe applier: a layer's tar stream becomes files under a root directory.

Never ``tarfile.extractall``. Every parent directory is resolved inside the root through directory
file descriptors, following symlinks as if the root were ``/`` (an absolute target or ``..`` never
climbs out); no metadata call follows a symlink; symlink targets are stored verbatim; hard-link
targets are resolved inside the root; an entry that would replace ``/`` is refused.

Speed without giving any of that up: the stream is decompressed on a read-ahead thread and parsed
by ``tarreader`` (tarfile only for what it does not handle); the parsing thread resolves parents,
makes directories, hard links, devices and whiteouts itself, and hands small files and symlinks to
a few worker threads, all of one directory to the same thread, with borrowed directory fds. The
order of the stream is kept where it matters: a queued task for the same file (by directory inode
and name) is waited for before a later entry, every cache miss, removal, whiteout, hard link and
the final directory metadata wait for all queued tasks ("barrier"), and no cached fd is closed
while a task may hold it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from ..errors import LayerError, UnsafeLayer, warn
from .idmap import IdMap
from .inroot import DIR_FLAGS, MAX_CACHED, InRoot, proc_path, process_umask, remove_at
from .overlay import is_overlay_xattr, make_whiteout, mark_opaque, tar_marker
from .readahead import ReadAhead
from .tarreader import BLKTYPE, CHRTYPE, DIRTYPE, FIFOTYPE, LNKTYPE, SYMTYPE, TarEntry, TarReader
from .tarreader import member_parts as _clean_name
from .workers import Pool, write_all

FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 256 << 10  # bytes of a large file read and written at a time
WORKERS = 2  # threads that create files while the stream is parsed (syscalls release the GIL)
SMALL = 512 << 10  # files up to this size are read whole and written by a worker; larger ones inline
READ_AHEAD = 128 << 10  # decompressed bytes per chunk read ahead on a thread of its own (4 chunks ahead)
MAX_PENDING = 4096  # paths tracked as "queued" before a barrier drains the workers
SWITCH_INTERVAL = 0.0005  # let a worker back onto the GIL soon after its syscall returns


@dataclass
class ApplyReport:
    entries: int = 0


class _Applier:
    def __init__(self, root: Path, *, overlay: bool, chown: bool, id_map: IdMap | None, what: str) -> None:
        self.root = InRoot(root)
        self.overlay = overlay
        self.chown = chown
        self.id_map = id_map
        self.what = what
        self.report = ApplyReport()
        # each entry's path ("/".join of its parts: a third of a tuple's memory), for whiteouts
        self.added: set[str] = set()
        self.dir_meta: dict[tuple[str, ...], tuple[int, int]] = {}  # parts -> (mode, mtime)
        # times of each directory the layer changes inside, taken before the first change: a
        # directory the layer does not itself carry gets them back at the end (overlay keeps a
        # parent's mtime when a file in it is only modified; re-creating the file must not move it)
        self.parent_times: dict[tuple[str, ...], tuple[int, int]] = {}
        self.chown_warned = False
        self.pool = Pool(WORKERS)
        # (directory inode, name) of the tasks queued since the last barrier: by inode, not path,
        # so that one file named through a symlink and by its own path is still seen as one
        self.pending: set[tuple[int, str]] = set()
        # directories this apply made, with the names made in them since: a name not listed there
        # cannot exist, so it needs no lstat. Kept only while every path is its directories' own
        # name (dropped once a symlink is followed or anything is removed).
        self.fresh: dict[tuple[str, ...], set[str]] = {}
        self.ids = (os.geteuid(), os.getegid())
        self.umask = process_umask()

    def barrier(self) -> None:
        self.pool.barrier()
        self.pending.clear()

    def forget(self) -> None:
        self.barrier()  # no task may hold a cached fd
        self.root.forget()
        self.fresh.clear()

    def remove(self, dir_fd: int, name: str) -> None:
        """Callers hold ``dir_fd`` as their own (a dup), never borrowed from the cache."""
        self.forget()
        remove_at(dir_fd, name)

    def warn(self, message: str) -> None:
        warn(message)

    def fail(self, entry_name: str, exc: OSError) -> LayerError:
        return LayerError(f"{self.what}: entry {entry_name!r}: {exc.strerror or exc}")

    def parent(self, key: tuple[str, ...], name: str) -> int:
        """The parent directory ``key`` as an fd borrowed from the cache."""
        fd = self.root.cache.get(key)
        if fd is not None:
            if key not in self.parent_times:
                self._note_times(key, fd)
            return fd
        self.barrier()  # a queued symlink or file could be a component of this path
        if len(self.root.cache) >= MAX_CACHED:
            self.forget()
        try:
            fd = self.root.borrow(key, what=f"{self.what}: entry {name!r}")
        except LayerError:
            raise
        except OSError as exc:
            raise self.fail(name, exc) from None
        if self.root.followed_link:
            self.fresh.clear()
        elif self.fresh:  # the resolution may have made missing parents: note them
            for i in range(len(key)):
                names = self.fresh.get(key[:i])
                if names is not None:
                    names.add(key[i])
        if key not in self.parent_times:
            self._note_times(key, fd)
        return fd

    def _note_times(self, key: tuple[str, ...], fd: int) -> None:
        st = os.fstat(fd)
        self.parent_times[key] = (st.st_atime_ns, st.st_mtime_ns)

    def parent_fd(self, parts: list[str], name: str) -> int:
        """The parent directory of ``parts`` as an fd of the caller's own."""
        return os.dup(self.parent(tuple(parts[:-1]), name))

    # --- whiteouts ---------------------------------------------------------------------------
    def whiteout(self, parts: list[str], name: str, base: str) -> None:
        if base in ("", ".", ".."):
            raise UnsafeLayer(f"{self.what}: entry {name!r} is not a valid whiteout")
        target = (*parts[:-1], base)
        if "/".join(target) in self.added:
            return  # a whiteout removes lower content only
        fd = self.parent_fd(parts, name)
        try:
            if self.overlay:
                with contextlib.suppress(FileNotFoundError):
                    self.remove(fd, base)
                make_whiteout(base, dir_fd=fd)  # where neither form can be made, the name is just gone
            else:
                self.remove(fd, base)
        finally:
            os.close(fd)

    def opaque(self, parts: list[str], name: str) -> None:
        dir_parts = parts[:-1]
        fd = self.parent_fd(parts, name)
        try:
            for child in os.listdir(fd):
                if "/".join((*dir_parts, child)) not in self.added:
                    self.remove(fd, child)
            if self.overlay:
                try:
                    mark_opaque(fd)
                except OSError as exc:
                    self.warn(f"cannot mark {'/'.join(dir_parts) or '/'} opaque: {exc.strerror or exc}")
        finally:
            os.close(fd)

    # --- entries -----------------------------------------------------------------------------
    def owner(self, entry: TarEntry) -> tuple[int, int]:
        uid, gid = entry.uid, entry.gid
        if self.id_map is not None:
            uid, gid = self.id_map.to_host(uid, gid)
            if uid < 0 or gid < 0:
                owner = f"{entry.uid}:{entry.gid}"
                raise LayerError(f"{self.what}: entry {entry.name!r} is owned by {owner}, outside the id map")
        return uid, gid

    def needs_chown(self, key: tuple[str, ...], owner: tuple[int, int]) -> bool:
        """False when a new entry in the directory ``key`` already has ``owner``: ours, and the
        directory does not hand down its group."""
        return self.chown and (owner != self.ids or key not in self.root.plain)

    def apply(self, reader: TarReader, entry: TarEntry) -> None:
        name = entry.name
        parts = _clean_name(name)
        if not parts:
            if not entry.isdir():
                raise UnsafeLayer(f"{self.what}: entry {name!r} would replace the root directory")
            self.dir_meta[()] = (entry.mode & 0o7777, entry.mtime)
            return
        base = parts[-1]
        marker = tar_marker(base)
        if marker is not None:
            self.barrier()
            try:
                if marker[0] == "opaque":
                    self.opaque(parts, name)
                else:
                    self.whiteout(parts, name, marker[1])
            except OSError as exc:
                raise self.fail(name, exc) from None
            return
        key = tuple(parts)
        if len(self.pending) >= MAX_PENDING:
            self.barrier()
        try:
            self.create(reader, entry, key, base)
        except OSError as exc:
            raise self.fail(name, exc) from None
        except OverflowError:
            raise LayerError(f"{self.what}: entry {name!r} has a field out of range") from None
        self.added.add("/".join(key))

    def create(self, reader: TarReader, entry: TarEntry, key: tuple[str, ...], base: str) -> None:
        pkey = key[:-1]
        fd = self.parent(pkey, entry.name)
        dino = self.root.ino[pkey]
        if (dino, base) in self.pending:
            self.barrier()  # a later entry for the same file wins: the earlier one first
        if self.root.followed_link and self.fresh:
            self.fresh.clear()
        names = self.fresh.get(pkey)
        existing: os.stat_result | None = None
        if names is not None and base not in names:
            names.add(base)
        else:
            try:
                existing = os.stat(base, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
        kind = entry.type
        if existing is not None and not (kind == DIRTYPE and stat.S_ISDIR(existing.st_mode)):
            # the last entry for a path wins
            if stat.S_ISDIR(existing.st_mode) or stat.S_ISLNK(existing.st_mode):
                own = os.dup(fd)
                try:
                    self.remove(own, base)  # cached paths may lead through it: forget them all
                finally:
                    os.close(own)
                fd = self.parent(pkey, entry.name)
            else:
                os.unlink(base, dir_fd=fd)
            existing = None
        if entry.isreg():
            owner = self.owner(entry)
            if entry.size <= SMALL:
                data = self.read_data(reader, entry, entry.size)
                args = (fd, base, data, entry, owner, self.needs_chown(pkey, owner))
                self.pool.submit(dino, self.write_file, args, len(data))
                self.pending.add((dino, base))
            else:
                self.write_large(reader, entry, fd, base, owner, self.needs_chown(pkey, owner))
        elif kind == DIRTYPE:
            self.directory(entry, key, fd, base, existing)
        elif kind == SYMTYPE:
            if "\0" in entry.linkname:
                raise UnsafeLayer(f"{self.what}: entry {entry.name!r} has a NUL byte in its target")
            owner = self.owner(entry)
            link_args = (fd, base, entry, owner, self.needs_chown(pkey, owner))
            self.pool.submit(dino, self.symlink, link_args, 0)
            self.pending.add((dino, base))
        elif kind == LNKTYPE:
            self.barrier()  # the target may still be queued
            fd = self.parent(pkey, entry.name)
            self.hardlink(entry, fd, base)
        elif kind in (CHRTYPE, BLKTYPE, FIFOTYPE):
            self.device(entry, fd, base)
        else:
            self.warn(f"skipped entry {entry.name!r} of unsupported type {entry.type!r}")

    def read_data(self, reader: TarReader, entry: TarEntry, size: int) -> bytes:
        data = reader.read(size)
        if len(data) != size:
            raise LayerError(f"{self.what}: entry {entry.name!r} is truncated ({len(data)} of {size} bytes)")
        return data

    def directory(
        self, entry: TarEntry, key: tuple[str, ...], fd: int, base: str, existing: os.stat_result | None
    ) -> None:
        if existing is None:
            os.mkdir(base, 0o700, dir_fd=fd)
            plain = True
            if not self.root.followed_link:
                self.fresh[key] = set()
        else:
            plain = not existing.st_mode & stat.S_ISGID
        self.dir_meta[key] = (entry.mode & 0o7777, entry.mtime)
        dfd = self.root.cache.get(key)
        if dfd is None:
            dfd = os.open(base, DIR_FLAGS, dir_fd=fd)
            if len(self.root.cache) >= MAX_CACHED:
                self.forget()  # after a barrier: no queued task holds a cached fd
            self.root.remember(key, dfd, plain, os.fstat(dfd).st_ino)
            fd = self.parent(key[:-1], entry.name)  # remember may have dropped the cache
        owner = self.owner(entry)
        if self.needs_chown(key[:-1], owner):
            try:
                os.fchown(dfd, *owner)
            except PermissionError:
                self._chown_warning()
        if entry.xattrs:
            self.xattrs(entry, f"/proc/self/fd/{dfd}")

    def write_file(
        self, fd: int, base: str, data: bytes, entry: TarEntry, owner: tuple[int, int], chown: bool
    ) -> None:
        """A worker task: a small file whose data was read already."""
        try:
            out = os.open(base, FILE_FLAGS, entry.mode & 0o777, dir_fd=fd)
            try:
                if data:
                    write_all(out, data)
                self.fd_metadata(entry, out, owner, chown)
            finally:
                os.close(out)
        except OSError as exc:
            raise self.fail(entry.name, exc) from None
        except OverflowError:
            raise LayerError(f"{self.what}: entry {entry.name!r} has a field out of range") from None

    def write_large(
        self, reader: TarReader, entry: TarEntry, fd: int, base: str, owner: tuple[int, int], chown: bool
    ) -> None:
        out = os.open(base, FILE_FLAGS, entry.mode & 0o777, dir_fd=fd)
        try:
            written = 0
            while written < entry.size:
                chunk = reader.read(min(CHUNK, entry.size - written))
                if not chunk:
                    break
                write_all(out, chunk)
                written += len(chunk)
            if written != entry.size:
                raise LayerError(
                    f"{self.what}: entry {entry.name!r} is truncated ({written} of {entry.size} bytes)"
                )
            self.fd_metadata(entry, out, owner, chown)
        finally:
            os.close(out)

    def fd_metadata(self, entry: TarEntry, out: int, owner: tuple[int, int], chown: bool) -> None:
        if chown:
            try:
                os.fchown(out, *owner)
            except PermissionError:
                self._chown_warning()
        mode = entry.mode & 0o7777
        # created with mode & 0o777 less the umask: change it only when that is not it already
        if chown or self.umask is None or mode != mode & ~self.umask & 0o777:
            os.fchmod(out, mode)
        if entry.xattrs:
            self.xattrs(entry, out)
        os.utime(out, (entry.mtime, entry.mtime))

    def symlink(self, fd: int, base: str, entry: TarEntry, owner: tuple[int, int], chown: bool) -> None:
        """A worker task."""
        try:
            os.symlink(entry.linkname, base, dir_fd=fd)
            if chown:
                try:
                    os.chown(base, *owner, dir_fd=fd, follow_symlinks=False)
                except PermissionError:
                    self._chown_warning()
            os.utime(base, (entry.mtime, entry.mtime), dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            raise self.fail(entry.name, exc) from None
        except OverflowError:
            raise LayerError(f"{self.what}: entry {entry.name!r} has a field out of range") from None

    def device(self, entry: TarEntry, fd: int, base: str) -> None:
        kind = entry.type
        try:
            if kind == FIFOTYPE:
                os.mkfifo(base, 0o600, dir_fd=fd)
            else:
                mode = stat.S_IFCHR if kind == CHRTYPE else stat.S_IFBLK
                os.mknod(base, mode | 0o600, os.makedev(entry.devmajor, entry.devminor), dir_fd=fd)
        except PermissionError:
            self.warn(f"cannot create device {entry.name!r} unprivileged: an empty file instead")
            os.close(os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd))
        if self.chown:
            try:
                os.chown(base, *self.owner(entry), dir_fd=fd, follow_symlinks=False)
            except PermissionError:
                self._chown_warning()
        # the entry was just created by us and is not a symlink: chmod cannot be redirected
        os.chmod(base, entry.mode & 0o7777, dir_fd=fd)
        if entry.xattrs:
            self.xattrs(entry, proc_path(fd, base))
        os.utime(base, (entry.mtime, entry.mtime), dir_fd=fd, follow_symlinks=False)

    def hardlink(self, entry: TarEntry, fd: int, base: str) -> None:
        target_parts = _clean_name(entry.linkname)
        if not target_parts:
            raise UnsafeLayer(f"{self.what}: entry {entry.name!r} links to the root directory")
        try:
            tfd = self.root.resolve_dir(
                target_parts[:-1], create=False, what=f"{self.what}: entry {entry.name!r}"
            )
        except FileNotFoundError:
            raise LayerError(
                f"{self.what}: entry {entry.name!r} links to missing {entry.linkname!r}"
            ) from None
        try:
            st = os.stat(target_parts[-1], dir_fd=tfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(f"{self.what}: entry {entry.name!r} is a hard link to a directory")
            os.link(target_parts[-1], base, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(
                f"{self.what}: entry {entry.name!r} links to missing {entry.linkname!r}"
            ) from None
        finally:
            os.close(tfd)

    def _chown_warning(self) -> None:
        if not self.chown_warned:
            self.chown_warned = True
            self.warn(
                "cannot change owners unprivileged: files keep the caller's ids (run inside a user namespace)"
            )

    def xattrs(self, entry: TarEntry, target: str | int) -> None:
        for attr, value in (entry.xattrs or {}).items():
            if attr.startswith("trusted.") or is_overlay_xattr(attr):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, attr, value)
                else:
                    os.setxattr(target, attr, value, follow_symlinks=False)
            except OSError as exc:
                self.warn(f"cannot set {attr} on {entry.name!r}: {exc.strerror or exc}")

    def finish(self) -> None:
        """Directory modes and mtimes last, deepest first, so mode-000 directories and children's
        creation don't get in the way."""
        self.barrier()
        for parts in sorted(self.parent_times, key=len, reverse=True):
            fd = None if parts in self.dir_meta else self._dir_fd(parts)
            if fd is not None:
                try:
                    os.utime(fd, ns=self.parent_times[parts])
                except OSError:
                    pass
                finally:
                    os.close(fd)
        for parts in sorted(self.dir_meta, key=len, reverse=True):
            mode, mtime = self.dir_meta[parts]
            fd = self._dir_fd(parts)
            if fd is not None:
                try:
                    os.fchmod(fd, mode)
                    os.utime(fd, (mtime, mtime))
                finally:
                    os.close(fd)

    def _dir_fd(self, parts: tuple[str, ...]) -> int | None:
        """An fd of our own for the directory ``parts``, or None if a later entry removed or
        replaced it."""
        try:
            if not parts:
                return os.dup(self.root.fd)
            return self.root.resolve_dir(list(parts), create=False, what=self.what)
        except (OSError, LayerError):
            return None


def apply_layer(
    stream: BinaryIO,
    root: Path,
    *,
    overlay: bool = False,
    chown: bool = True,
    id_map: IdMap | None = None,
    what: str = "layer",
) -> ApplyReport:
    """Apply an uncompressed tar stream to ``root``. ``overlay`` keeps whiteouts as overlay whiteouts
    (0/0 character devices) and marks opaque directories with ``user.overlay.opaque``."""
    applier = _Applier(Path(root), overlay=overlay, chown=chown, id_map=id_map, what=what)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    source = ReadAhead(stream, READ_AHEAD)
    reader = TarReader(cast(BinaryIO, source), what)
    try:
        try:
            try:
                while (entry := reader.next()) is not None:
                    applier.apply(reader, entry)
                    applier.report.entries += 1
                applier.finish()
            finally:
                applier.pool.close()
        finally:
            reader.close()
            source.close()
    finally:
        sys.setswitchinterval(interval)
        applier.root.close()
    return applier.report
