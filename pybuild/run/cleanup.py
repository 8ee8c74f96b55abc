"""Removing trees that fight back: mode-000 directories (overlay's work/work, hostile layers)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any


def force_remove(path: Path) -> None:
    """Remove ``path`` and everything below it, making unreadable directories readable on the way.
    Symlinks are removed, never followed."""

    def retry(func: Any, p: str, exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, onerror=retry)
            else:
                os.unlink(p)

    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=retry)
        else:
            os.unlink(path)
