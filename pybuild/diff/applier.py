"""The safe applier: a layer's tar stream becomes files under a root directory.

Never ``tarfile.extractall``. Every parent directory is resolved inside the root through directory
file descriptors, following symlinks as if the root were ``/`` (an absolute target or ``..`` never
climbs out); no metadata call follows a symlink; symlink targets are stored verbatim; hard-link
targets are resolved inside the root; an entry that would replace ``/`` is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import LayerError, UnsafeLayer
from .changeset import OPAQUE, OPAQUE_XATTRS, WHITEOUT_PREFIX
from .idmap import IdMap

MAX_LINKS = 40
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20


@dataclass
class ApplyReport:
    warnings: list[str] = field(default_factory=list)
    entries: int = 0


def _clean_name(name: str) -> list[str]:
    """The path components of a tar member name, with "." and empty parts dropped; ".." refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"entry {name!r} climbs out of the root with '..'")
    return parts


class _Root:
    """Directory-fd resolution inside one root."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root)
        # resolved directories by the path that named them; cleared whenever anything is removed,
        # so a cached fd never stands for a path whose meaning changed
        self.cache: dict[tuple[str, ...], int] = {}
        try:
            self.fd = os.open(self.path, DIR_FLAGS)
        except OSError as exc:
            raise LayerError(f"cannot open {root}: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.forget()
        os.close(self.fd)

    def forget(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def resolve_dir(self, parts: list[str], *, create: bool, what: str) -> int:
        """An fd of the directory ``parts`` names inside the root (symlinks followed inside it).

        Missing directories are created (mode 0755) when ``create``; else FileNotFoundError.
        The caller closes the fd.
        """
        key = tuple(parts)
        cached = self.cache.get(key)
        if cached is not None:
            return os.dup(cached)
        fd = self._resolve(parts, create=create, what=what)
        if len(self.cache) >= 4096:
            self.forget()
        self.cache[key] = os.dup(fd)
        return fd

    def _resolve(self, parts: list[str], *, create: bool, what: str) -> int:
        stack = [os.dup(self.fd)]
        todo = list(parts)
        links = 0
        try:
            while todo:
                part = todo.pop(0)
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                cur = stack[-1]
                try:
                    fd = os.open(part, DIR_FLAGS, dir_fd=cur)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=cur)
                    fd = os.open(part, DIR_FLAGS, dir_fd=cur)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise LayerError(f"{what}: {'/'.join(parts)}: a parent is not a directory") from None
                    links += 1
                    if links > MAX_LINKS:
                        raise LayerError(f"{what}: too many levels of symbolic links") from None
                    target = os.readlink(part, dir_fd=cur)
                    if target.startswith("/"):
                        for extra in stack[1:]:
                            os.close(extra)
                        stack = stack[:1]
                    todo = [p for p in target.split("/") if p] + todo
                    continue
                stack.append(fd)
            result = stack.pop()
            return result
        finally:
            for fd in stack:
                os.close(fd)


def _remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` (a whole tree for a directory), never following symlinks.
    Callers in the applier go through ``_Applier.remove`` so the directory cache is dropped."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _remove_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _proc_path(dir_fd: int, name: str) -> str:
    return f"/proc/self/fd/{dir_fd}/{name}"


class _Applier:
    def __init__(self, root: Path, *, overlay: bool, chown: bool, id_map: IdMap | None, what: str) -> None:
        self.root = _Root(root)
        self.overlay = overlay
        self.chown = chown
        self.id_map = id_map
        self.what = what
        self.report = ApplyReport()
        self.added: set[tuple[str, ...]] = set()
        self.dir_meta: dict[tuple[str, ...], tuple[int, int]] = {}  # parts -> (mode, mtime)
        self.chown_warned = False

    def remove(self, dir_fd: int, name: str) -> None:
        self.root.forget()
        _remove_at(dir_fd, name)

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)

    def parent_fd(self, parts: list[str], name: str) -> int:
        try:
            return self.root.resolve_dir(parts[:-1], create=True, what=f"{self.what}: entry {name!r}")
        except LayerError:
            raise
        except OSError as exc:
            raise LayerError(f"{self.what}: entry {name!r}: {exc.strerror or exc}") from None

    # --- whiteouts ---------------------------------------------------------------------------
    def whiteout(self, parts: list[str], name: str) -> None:
        base = parts[-1][len(WHITEOUT_PREFIX) :]
        if base in ("", ".", ".."):
            raise UnsafeLayer(f"{self.what}: entry {name!r} is not a valid whiteout")
        target = (*parts[:-1], base)
        if target in self.added:
            return  # a whiteout removes lower content only
        fd = self.parent_fd(parts, name)
        try:
            if self.overlay:
                with contextlib.suppress(FileNotFoundError):
                    self.remove(fd, base)
                try:
                    os.mknod(base, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=fd)
                except PermissionError:
                    with contextlib.suppress(OSError):
                        fdw = os.open(
                            base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o000, dir_fd=fd
                        )
                        os.close(fdw)
                        os.setxattr(
                            _proc_path(fd, base), "user.overlay.whiteout", b"y", follow_symlinks=False
                        )
            else:
                self.remove(fd, base)
        finally:
            os.close(fd)

    def opaque(self, parts: list[str], name: str) -> None:
        dir_parts = parts[:-1]
        try:
            fd = self.root.resolve_dir(dir_parts, create=True, what=f"{self.what}: entry {name!r}")
        except OSError as exc:
            raise LayerError(f"{self.what}: entry {name!r}: {exc.strerror or exc}") from None
        try:
            for child in os.listdir(fd):
                if (*dir_parts, child) not in self.added:
                    self.remove(fd, child)
            if self.overlay:
                try:
                    os.setxattr(f"/proc/self/fd/{fd}", OPAQUE_XATTRS[0], b"y")
                except OSError as exc:
                    self.warn(f"cannot mark {'/'.join(dir_parts) or '/'} opaque: {exc.strerror or exc}")
        finally:
            os.close(fd)

    # --- entries -----------------------------------------------------------------------------
    def owner(self, member: tarfile.TarInfo) -> tuple[int, int]:
        uid, gid = member.uid, member.gid
        if self.id_map is not None:
            uid, gid = self.id_map.to_host(uid, gid)
            if uid < 0 or gid < 0:
                owner = f"{member.uid}:{member.gid}"
                raise LayerError(
                    f"{self.what}: entry {member.name!r} is owned by {owner}, outside the id map"
                )
        return uid, gid

    def apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = _clean_name(name)
        if not parts:
            if not member.isdir():
                raise UnsafeLayer(f"{self.what}: entry {name!r} would replace the root directory")
            self.dir_meta[()] = (member.mode & 0o7777, int(member.mtime))
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            try:
                if base == OPAQUE:
                    self.opaque(parts, name)
                else:
                    self.whiteout(parts, name)
            except OSError as exc:
                raise LayerError(f"{self.what}: entry {name!r}: {exc.strerror or exc}") from None
            return
        fd = self.parent_fd(parts, name)
        try:
            self.create(tar, member, fd, base, parts)
        except OSError as exc:
            raise LayerError(f"{self.what}: entry {name!r}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        self.added.add(tuple(parts))

    def create(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int, base: str, parts: list[str]
    ) -> None:
        try:
            existing: os.stat_result | None = os.stat(base, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            self.remove(fd, base)  # the last entry for a path wins
        mode = member.mode & 0o7777
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=fd)
            self.dir_meta[tuple(parts)] = (mode, int(member.mtime))
            self.metadata(member, fd, base, chmod=False, utime=False)
        elif member.isreg() and member.type != tarfile.LNKTYPE:
            self.write_file(tar, member, fd, base, mode)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=fd)
            self.metadata(member, fd, base, chmod=False)
        elif member.islnk():
            self.hardlink(member, fd, base)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            try:
                if member.isfifo():
                    os.mkfifo(base, 0o600, dir_fd=fd)
                else:
                    os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=fd)
            except PermissionError:
                self.warn(f"cannot create device {member.name!r} unprivileged: an empty file instead")
                os.close(
                    os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
                )
            self.metadata(member, fd, base)
        else:
            self.warn(f"skipped entry {member.name!r} of unsupported type {member.type!r}")

    def write_file(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int, base: str, mode: int
    ) -> None:
        out = os.open(
            base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd
        )
        try:
            src = tar.extractfile(member)
            written = 0
            if src is not None:
                while written < member.size:
                    chunk = src.read(min(CHUNK, member.size - written))
                    if not chunk:
                        break
                    os.write(out, chunk)
                    written += len(chunk)
            if written != member.size:
                raise LayerError(
                    f"{self.what}: entry {member.name!r} is truncated ({written} of {member.size} bytes)"
                )
            self.fd_metadata(member, out, fd, base, mode)
        finally:
            os.close(out)

    def hardlink(self, member: tarfile.TarInfo, fd: int, base: str) -> None:
        target_parts = _clean_name(member.linkname)
        if not target_parts:
            raise UnsafeLayer(f"{self.what}: entry {member.name!r} links to the root directory")
        try:
            tfd = self.root.resolve_dir(
                target_parts[:-1], create=False, what=f"{self.what}: entry {member.name!r}"
            )
        except FileNotFoundError:
            raise LayerError(
                f"{self.what}: entry {member.name!r} links to missing {member.linkname!r}"
            ) from None
        try:
            st = os.stat(target_parts[-1], dir_fd=tfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(f"{self.what}: entry {member.name!r} is a hard link to a directory")
            os.link(target_parts[-1], base, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(
                f"{self.what}: entry {member.name!r} links to missing {member.linkname!r}"
            ) from None
        finally:
            os.close(tfd)

    def fd_metadata(self, member: tarfile.TarInfo, out: int, dir_fd: int, base: str, mode: int) -> None:
        if self.chown:
            uid, gid = self.owner(member)
            try:
                os.fchown(out, uid, gid)
            except PermissionError:
                self._chown_warning()
        os.fchmod(out, mode)
        self.xattrs(member, _proc_path(dir_fd, base))
        os.utime(out, (int(member.mtime), int(member.mtime)))

    def metadata(
        self, member: tarfile.TarInfo, fd: int, base: str, *, chmod: bool = True, utime: bool = True
    ) -> None:
        if self.chown:
            uid, gid = self.owner(member)
            try:
                os.chown(base, uid, gid, dir_fd=fd, follow_symlinks=False)
            except PermissionError:
                self._chown_warning()
        is_link = member.issym()
        if chmod and not is_link:
            # the entry was just created by us and is not a symlink: chmod cannot be redirected
            os.chmod(base, member.mode & 0o7777, dir_fd=fd)
        if not is_link:
            self.xattrs(member, _proc_path(fd, base))
        if utime:
            os.utime(base, (int(member.mtime), int(member.mtime)), dir_fd=fd, follow_symlinks=False)

    def _chown_warning(self) -> None:
        if not self.chown_warned:
            self.chown_warned = True
            self.warn(
                "cannot change owners unprivileged: files keep the caller's ids (run inside a user namespace)"
            )

    def xattrs(self, member: tarfile.TarInfo, path: str) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr.") :]
            if attr.startswith(("trusted.", "user.overlay.")):
                continue
            try:
                os.setxattr(path, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError as exc:
                self.warn(f"cannot set {attr} on {member.name!r}: {exc.strerror or exc}")

    def finish(self) -> None:
        """Directory modes and mtimes last, deepest first, so mode-000 directories and children's
        creation don't get in the way."""
        for parts in sorted(self.dir_meta, key=len, reverse=True):
            mode, mtime = self.dir_meta[parts]
            try:
                fd = (
                    self.root.resolve_dir(list(parts), create=False, what=self.what)
                    if parts
                    else os.dup(self.root.fd)
                )
            except OSError:
                continue
            try:
                os.fchmod(fd, mode)
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)


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
    try:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|", errorlevel=2)  # noqa: SIM115
        except tarfile.TarError as exc:
            raise LayerError(f"{what} is not a tar stream: {exc}") from None
        with tar:
            while True:
                try:
                    member = tar.next()
                except tarfile.TarError as exc:
                    raise LayerError(f"{what} is corrupt: {exc}") from None
                except (EOFError, OSError) as exc:
                    raise LayerError(f"{what} is truncated or corrupt: {exc}") from None
                if member is None:
                    break
                setattr(tar, "members", [])  # noqa: B010 - keep memory flat over many entries
                try:
                    applier.apply(tar, member)
                except (tarfile.TarError, EOFError) as exc:
                    raise LayerError(f"{what}: entry {member.name!r} is corrupt: {exc}") from None
                applier.report.entries += 1
        applier.finish()
    finally:
        applier.root.close()
    return applier.report
