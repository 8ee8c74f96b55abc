"""``run_function``: a Python function with the image's root as ``/``, in the overlay mode chosen
for this run (see ``modes``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .modes import overlay_mode
from .rootfs import run_in_rootfs

T = TypeVar("T")


def run_function(lowerdirs: list[Path], upperdir: Path, fn: Callable[[], T], *, mode: str | None = None) -> T:
    """Call ``fn()`` with the image's root as ``/``: the stacked ``lowerdirs`` (top first; empty
    for scratch) under ``upperdir``, where every change lands in overlay format.

    ``fn`` runs in a child process that is root in a new user namespace (as ``run_in_userns``) and
    a private mount namespace, chrooted into the merged tree. Its result must pickle; a
    PybuildError it raises is raised here with its class and message. Descriptors opened before
    the call stay usable in ``fn``; modules it needs must be imported before (the image's root has
    no Python). ``mode``: native, fuse, copy, or None for the probed mode (see ``overlay_mode``).
    """
    upperdir = Path(upperdir)
    return run_in_rootfs(lowerdirs, upperdir, fn, overlay_mode(mode, upperdir.parent))
