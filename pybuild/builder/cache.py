"""The build cache: one small JSON record per step, keyed by a digest of everything the step's result
depends on (the parent's diff_ids and the config a step sees, the expanded instruction, the content
and modes of its sources, the build args in scope, its mounts, the platform and output format; see
``engine.step_key_of``). A record names the layer blob the step made (if
any) and its history entry, so a rebuild where every step hits gives the same image, byte for byte.

Records live in the store's private area (``PrivateArea.build_cache``), whose gc removes a record
once its layer blob is gone; a record whose blob is gone is a miss, never a wrong image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ..layout import Layout


def step_key(*parts: Any) -> str:
    """A stable digest of the parts (JSON-serialisable values)."""
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


class BuildCache:
    def __init__(self, layout: Layout) -> None:
        self.root = layout.private.build_cache
        self.layout = layout

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"bad cache key {key!r}")
        return self.root / key

    def get(self, key: str, max_age: float | None = None) -> dict[str, Any] | None:
        """``key``'s record; None when there is none, it is unreadable, or (with ``max_age``) it
        was written more than ``max_age`` seconds ago (--cache-ttl)."""
        try:
            path = self._path(key)
            if max_age is not None and time.time() - path.stat().st_mtime > max_age:
                return None
            record = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("history"), dict):
            return None
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            temp.write_bytes(json.dumps(record, sort_keys=True).encode())
            os.replace(temp, self._path(key))
        except OSError:
            with contextlib.suppress(OSError):
                temp.unlink()
