"""Resolving a path inside a root directory as if the root were ``/``: the one resolver.

The rules are runc's (filepath-securejoin) and BuildKit's (continuity's ``fs.RootPath``): symlinks
are followed, but ``..`` stops at the root and an absolute target starts again from it, so a
hostile image's ``/etc/passwd -> /../../../host/file`` still names a file inside the root. A
component that does not exist (or cannot be looked at) is taken as a plain name, so the result may
not exist yet. At most ``MAX_LINKS`` links are followed (Linux's limit; runc allows 255).

The applier's resolution (diff/applier.py) is a different mechanism: it walks directory file
descriptors and creates as it goes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import RunError

MAX_LINKS = 40


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_in_root(root: str | Path, path: str) -> str | None:
    """The clean relative path (``""`` for the root itself) that ``path`` names below ``root``,
    every symlink followed inside the root; None when more than ``MAX_LINKS`` links are met (a loop)."""
    base = os.fspath(root)
    todo = _parts(path)
    todo.reverse()  # a stack: the next component last
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(base, *done, part)
        try:
            is_link = stat.S_ISLNK(os.lstat(here).st_mode)
            target = os.readlink(here) if is_link else ""
        except (OSError, ValueError):
            is_link = False  # missing, below a non-directory, unreadable: a plain name
        if not is_link:
            done.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            return None
        if target.startswith("/"):
            done = []
        todo.extend(reversed(_parts(target)))
    return "/".join(done)


def join_in_root(root: Path, path: str) -> Path:
    """The host path that ``path`` names inside ``root`` (see ``resolve_in_root``), never outside it."""
    rel = resolve_in_root(root, path)
    if rel is None:
        raise RunError(f"{path!r} in {root}: too many levels of symbolic links")
    return Path(root, rel) if rel else Path(root)


def read_in_root(root: Path, path: str, limit: int = 4 << 20) -> bytes | None:
    """The first ``limit`` bytes of the regular file ``path`` names inside ``root``; None where there
    is none (absent, a directory, a device: never opened in a way that could block)."""
    target = join_in_root(root, path)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit)
    finally:
        os.close(fd)
