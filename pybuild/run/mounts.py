"""Mounts a RUN adds beyond plain bind mounts: views of stacked layer directories (another stage or
image: ``RUN --mount=type=bind,from=...``) and small files held only in memory (secrets).

A view is a ``Rootfs`` over the source's layer directories, in the run's own overlay mode, with a
throwaway upperdir: a read-only view is bind-mounted read-only, a writable one takes writes into
that upperdir, which is removed with the run, so nothing reaches a layer. No layer is copied or
exported (except in copy mode, which copies by definition).

A file mount is written into a tmpfs mounted in the container's own mount namespace and
bind-mounted at its target: its content never touches a disk and disappears with the namespace.
A tmpfs mount is a tmpfs of its own there, with its size limit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..errors import RunError
from .cleanup import force_remove
from .paths import resolve_in_root
from .privilege import can_mount
from .rootfs import CLONE_NEWNS, MS_PRIVATE, MS_REC, Rootfs, checked, mount
from .treecopy import copy_stack
from .userns import call_in_child, libc, result_payload

T = TypeVar("T")


@dataclass(frozen=True)
class ViewMount:
    """The stacked ``lowerdirs`` (top first, overlay format), or the path ``source`` inside them,
    bind-mounted at ``target``; ``readonly`` or with writes thrown away. ``what`` names it in errors."""

    lowerdirs: list[Path]
    target: str
    source: str = ""
    readonly: bool = True
    what: str = "mount"


@dataclass(frozen=True)
class FileMount:
    """A file with ``data`` at ``target``, with ``mode``, ``uid`` and ``gid``, read-only, in memory."""

    target: str
    data: bytes = field(repr=False)
    mode: int = 0o400
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class TmpfsMount:
    """A tmpfs at ``target`` (``RUN --mount=type=tmpfs``), mounted in the container's own mount
    namespace, so nothing written there reaches the upperdir; ``size`` in bytes, 0: no limit of its
    own (the kernel's default, half the memory), as BuildKit mounts it."""

    target: str
    size: int = 0

    @property
    def options(self) -> str:
        """The tmpfs mount data: world-writable and sticky like /tmp, and the size limit if any."""
        return "mode=1777" + (f",size={self.size}" if self.size else "")


class MountedViews:
    """The views of one run, mounted in the keeper's mount namespace (so the container's pid 1, whose
    namespace is a copy of it, can bind them). ``binds`` are (path, target, readonly) for pid 1."""

    def __init__(self, views: list[ViewMount], tmp: Path, rootless: bool, mode: str) -> None:
        self.views = views
        self.tmp = tmp
        self.rootless = rootless
        self.mode = mode
        self.mounted: list[Rootfs] = []
        self.binds: list[tuple[str, str, bool]] = []

    def mount(self) -> list[tuple[str, str, bool]]:
        for i, view in enumerate(self.views):
            folder = self.tmp / f"view{i}"
            folder.mkdir()
            (folder / "upper").mkdir()
            rootfs = Rootfs(view.lowerdirs, folder / "upper", folder, self.rootless, self.mode)
            self.mounted.append(rootfs)
            merged = str(rootfs.mount())
            self.binds.append((view_path(merged, view), view.target, view.readonly))
        return self.binds

    def finish(self) -> None:
        """Unmount the views and remove their throwaway upperdirs (as the namespace's root: what
        a writable view received may belong to any id)."""
        for rootfs in reversed(self.mounted):
            with contextlib.suppress(BaseException):
                rootfs.finish(keep_changes=False)
            for child in rootfs.tmp.iterdir():
                if child.name != "merged":  # never walk a mount point
                    with contextlib.suppress(OSError):
                        force_remove(child)
        self.mounted.clear()


def view_path(merged: str, view: ViewMount) -> str:
    """The path in a mounted view to bind: ``view.source`` resolved inside it, which must exist."""
    inside = resolve_in_root(merged, view.source)
    if inside is None:
        raise RunError(f"{view.what}: source {view.source}: too many levels of symbolic links")
    path = f"{merged}/{inside}" if inside else merged
    if not os.path.lexists(path):
        raise RunError(f"{view.what}: source {view.source or '/'}: no such file or directory")
    return path


def with_view(lowerdirs: list[Path], near: Path, fn: Callable[[str], T], *, mode: str | None = None) -> T:
    """Call ``fn(merged)`` with the stacked ``lowerdirs`` mounted read-only-in-effect (changes go to a
    throwaway upperdir) at ``merged``, in a child that is root in a new user namespace (rootless)
    and a private mount namespace. Its result must pickle. ``near``: where the scratch folder goes."""
    import tempfile

    from .modes import overlay_mode

    chosen = overlay_mode(mode, near)
    rootless = not can_mount()
    tmp = Path(tempfile.mkdtemp(prefix="pybuild-view-", dir=near))
    if chosen == "inplace":  # no mount at all: the view is a copy, thrown away afterwards
        try:
            copied = copy_stack(lowerdirs, tmp / "rootfs")
            copied.close()
            return fn(str(copied.root))
        finally:
            force_remove(tmp)

    def body() -> bytes:
        checked(libc().unshare(CLONE_NEWNS), "unshare mount namespace")
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        (tmp / "upper").mkdir()
        rootfs = Rootfs(lowerdirs, tmp / "upper", tmp, rootless, chosen)
        try:
            merged = str(rootfs.mount())
            return result_payload(lambda: fn(merged))
        finally:
            rootfs.finish(keep_changes=False)
            for child in tmp.iterdir():
                if child.name != "merged":
                    force_remove(child)

    try:
        result: T = call_in_child(body, new_userns=rootless)
    finally:
        force_remove(tmp)
    return result


def mount_files(files: list[FileMount], folder: str) -> list[tuple[str, str, bool]]:
    """In the container's pid 1 (its own mount namespace): a tmpfs on ``folder`` holding ``files``;
    returns the (path, target, readonly) binds for them."""
    if not files:
        return []
    os.makedirs(folder, exist_ok=True)
    mount("tmpfs", folder, "tmpfs", 0, "mode=0755")
    binds = []
    for i, f in enumerate(files):
        path = os.path.join(folder, str(i))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(f.data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, f.uid, f.gid)
            os.fchmod(fd, f.mode)
        finally:
            os.close(fd)
        binds.append((path, f.target, True))
    return binds
