"""Which overlay mode a run uses: native kernel overlay, fuse-overlayfs, or a copied rootfs.

An explicit ``mode`` wins; then ``PYBUILD_RUN_MODE``; otherwise the modes are probed once per
process, in that order, and the first that works is remembered.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import PybuildError, RunError, warn
from .cleanup import force_remove
from .rootfs import MODES, run_in_rootfs

ENV = "PYBUILD_RUN_MODE"
_probed: str | None = None


def _sees_probe() -> bool:
    return os.path.isfile("/probe")


def _works(mode: str, near: Path) -> bool:
    if mode == "fuse" and (
        shutil.which("fuse-overlayfs") is None or not os.access("/dev/fuse", os.R_OK | os.W_OK)
    ):
        return False
    base = Path(tempfile.mkdtemp(prefix="pybuild-probe-", dir=near if near.is_dir() else None))
    try:
        (base / "lower").mkdir()
        (base / "lower" / "probe").write_text("")
        (base / "upper").mkdir()
        return run_in_rootfs([base / "lower"], base / "upper", _sees_probe, mode)
    except (PybuildError, OSError):
        return False
    finally:
        with contextlib.suppress(OSError):
            force_remove(base)


def probe_mode(near: Path | None = None) -> str:
    """The first mode of native, fuse, copy that works here (``near``: where upperdirs live)."""
    where = Path(near) if near is not None else Path(tempfile.gettempdir())
    for mode in ("native", "fuse"):
        if _works(mode, where):
            return mode
    return "copy"


def overlay_mode(mode: str | None = None, near: Path | None = None) -> str:
    """The mode to use: ``mode`` if given, else $PYBUILD_RUN_MODE, else the remembered probe."""
    global _probed
    if mode is None:
        mode = os.environ.get(ENV) or None
    if mode is not None:
        if mode not in MODES:
            raise RunError(
                f"unknown overlay mode {mode!r}: expected native, fuse or copy", hints=[f"check {ENV}"]
            )
        return mode
    if _probed is None:
        _probed = probe_mode(near)
        if _probed != "native":
            warn(f"native rootless overlay is not available here: using {_probed} mode")
    return _probed
