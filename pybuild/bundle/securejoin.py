"""Resolving a path inside a root directory as if the root were ``/``.

Symlinks are followed, but an absolute target or ``..`` never climbs above the root, so a hostile
image's ``/etc/passwd -> /../../../host/file`` still names a file inside the rootfs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import BundleError

MAX_LINKS = 40


def secure_join(root: Path, path: str) -> Path:
    """The host path that ``path`` names inside ``root``, never outside it.

    Missing components are allowed (the result simply does not exist yet).
    """
    root = Path(root)
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise BundleError(f"{path!r} in {root}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    return root.joinpath(*done)


def read_text_in_root(root: Path, path: str, limit: int = 4 << 20) -> str | None:
    """The text of a regular file inside ``root`` (None if absent or not a regular file)."""
    target = secure_join(root, path)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit).decode("utf-8", "replace")
    finally:
        os.close(fd)
