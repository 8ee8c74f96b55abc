"""Paths inside a container's root, resolved as the container would see them."""

from __future__ import annotations

import os

MAX_LINKS = 40  # as Linux's path resolution


def resolve_in_root(root: str, rel: str) -> str | None:
    """``rel`` with every symlink followed as if ``root`` were ``/`` (``..`` stops at it, absolute
    targets start from it): the path below ``root`` it names, which may not exist. None when the
    links loop or are too many."""
    todo = [part for part in rel.split("/") if part]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        path = "/".join([root, *done, part])
        if os.path.islink(path):
            links += 1
            if links > MAX_LINKS:
                return None
            link = os.readlink(path)
            if link.startswith("/"):
                done = []
            todo = [p for p in link.split("/") if p] + todo
            continue
        done.append(part)
    return "/".join(done)
