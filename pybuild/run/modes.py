"""Which mode a run uses: native kernel overlay, fuse-overlayfs, a copied rootfs, or in place.

An explicit ``mode`` wins; then the one a build chose (``isolation``: ``--isolation``); then
``PYBUILD_RUN_MODE``; otherwise native, fuse and copy are probed once per process, in that order,
and the first that works is remembered. In-place mode (inplace.py) is never probed: it replaces
``/`` of the machine it runs on, so it is used only when asked for, and only in a container.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import PybuildError, RunError, warn
from .cleanup import force_remove
from .inplace import problem as inplace_problem
from .rootfs import MODES, run_in_rootfs

ENV = "PYBUILD_RUN_MODE"
AUTO = "auto"
_probed: list[str] = []
_chosen: list[str] = []


def _sees_probe() -> bool:
    return os.path.isfile("/probe")


def try_mode(mode: str, near: Path) -> str | None:
    """Why ``mode`` (native, fuse or copy) cannot run a step here, or None when it can: a function
    run over a one-file layer must see the file."""
    if mode == "fuse":
        if shutil.which("fuse-overlayfs") is None:
            return "fuse-overlayfs is not installed"
        if not os.access("/dev/fuse", os.R_OK | os.W_OK):
            return "/dev/fuse is missing or not readable and writable"
    base = Path(tempfile.mkdtemp(prefix="pybuild-probe-", dir=near if near.is_dir() else None))
    try:
        (base / "lower").mkdir()
        (base / "lower" / "probe").write_text("")
        (base / "upper").mkdir()
        if run_in_rootfs([base / "lower"], base / "upper", _sees_probe, mode):
            return None
        return "the probe did not see its file"
    except (PybuildError, OSError) as exc:
        return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    finally:
        with contextlib.suppress(OSError):
            force_remove(base)


def probe_mode(near: Path | None = None) -> str:
    """The first mode of native, fuse, copy that works here (``near``: where upperdirs live)."""
    where = Path(near) if near is not None else Path(tempfile.gettempdir())
    reasons = []
    for mode in ("native", "fuse", "copy"):
        why = try_mode(mode, where)
        if why is None:
            return mode
        reasons.append(f"{mode}: {why}")
    hints = ["run `pybuild doctor`: it names the smallest change to this container that fixes it"]
    if inplace_problem() is None:
        hints.insert(0, "as root in a throwaway container, --isolation inplace runs steps in / itself")
    raise RunError("no mode can run a step here (" + "; ".join(reasons) + ")", hints=hints)


def check_mode(mode: str) -> str:
    """``mode`` if it is one pybuild knows and can use here (in-place: root, in a container)."""
    if mode not in MODES:
        raise RunError(
            f"unknown isolation mode {mode!r}: expected auto, native, fuse, copy or inplace",
            hints=[f"check --isolation and {ENV}"],
        )
    if mode == "inplace":
        why = inplace_problem()
        if why is not None:
            raise RunError(why)
    return mode


@contextlib.contextmanager
def isolation(mode: str | None) -> Iterator[None]:
    """Within the block, runs use ``mode`` (``--isolation``; None or ``auto``: as before)."""
    if mode in (None, AUTO):
        yield
        return
    assert mode is not None
    _chosen.append(check_mode(mode))
    try:
        yield
    finally:
        _chosen.pop()


def overlay_mode(mode: str | None = None, near: Path | None = None) -> str:
    """The mode to use: ``mode`` if given, else the build's ``isolation``, else $PYBUILD_RUN_MODE,
    else the remembered probe."""
    if mode is None and _chosen:
        mode = _chosen[-1]
    if mode is None:
        mode = os.environ.get(ENV) or None
        if mode == AUTO:
            mode = None
    if mode is not None:
        return check_mode(mode)
    if not _probed:
        _probed.append(probe_mode(near))
        if _probed[0] != "native":
            warn(f"native overlay cannot be used here: using {_probed[0]} mode")
    return _probed[0]
