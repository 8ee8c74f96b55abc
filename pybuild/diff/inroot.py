"""Resolution inside one root through directory file descriptors, as the applier needs it: every
parent directory is opened below the root (symlinks followed as if the root were ``/``, so an
absolute target or ``..`` never climbs out), with a cache of the directories resolved; and removal
that never follows a symlink."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import LayerError

MAX_LINKS = 40
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_CACHED = 4000  # directory fds kept (the cache itself drops all at 4096, without waiting)


class InRoot:
    """Directory-fd resolution inside one root."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root)
        # resolved directories by the path that named them; cleared whenever anything is removed,
        # so a cached fd never stands for a path whose meaning changed
        self.cache: dict[tuple[str, ...], int] = {}
        # cached directories known to lack the set-group-ID bit (new files get the creator's gid)
        self.plain: set[tuple[str, ...]] = set()
        self.followed_link = False  # some resolution went through a symlink
        # inode numbers of cached directories: one directory may be cached under several paths
        self.ino: dict[tuple[str, ...], int] = {}
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
        self.plain.clear()
        self.ino.clear()

    def remember(self, key: tuple[str, ...], fd: int, plain: bool, ino: int) -> None:
        """Cache ``fd`` (which the cache now owns) for ``key``."""
        if len(self.cache) >= 4096:
            self.forget()
        old = self.cache.pop(key, None)
        if old is not None:
            os.close(old)
        self.cache[key] = fd
        if plain:
            self.plain.add(key)
        self.ino[key] = ino

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
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        # through remember(), so the inode and set-group-ID facts that borrow() users rely on are
        # cached along with the fd
        self.remember(key, os.dup(fd), not st.st_mode & stat.S_ISGID, st.st_ino)
        return fd

    def borrow(self, key: tuple[str, ...], *, what: str) -> int:
        """The cached fd of the directory ``key`` names, resolved (and created) on a miss.
        The fd stays owned by the cache: valid until the next ``forget``."""
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        fd = self._resolve(list(key), create=True, what=what)
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self.remember(key, fd, not st.st_mode & stat.S_ISGID, st.st_ino)
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
                    self.followed_link = True
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
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)


def remove_at(dir_fd: int, name: str) -> None:
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
            remove_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def proc_path(dir_fd: int, name: str) -> str:
    return f"/proc/self/fd/{dir_fd}/{name}"


def process_umask() -> int | None:
    """The process umask, read without changing it (None when /proc does not say)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None
