"""The build cache: one small JSON record per step, keyed by a digest of everything the step's result
depends on (the parent chain, the expanded instruction, the content and modes of its sources, the
build args in scope, its mounts, the output format). A record names the layer blob the step made (if
any) and its history entry, so a rebuild where every step hits gives the same image, byte for byte.

Records live in the store under ``.pybuild/build-cache``. A record whose layer blob is gone (swept by
``pybuild gc``) is a miss, never a wrong image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..layout import Layout

CACHE_DIR = ".pybuild/build-cache"


def step_key(*parts: Any) -> str:
    """A stable digest of the parts (JSON-serialisable values)."""
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


class BuildCache:
    def __init__(self, layout: Layout) -> None:
        self.root = layout.root / CACHE_DIR
        self.layout = layout

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"bad cache key {key!r}")
        return self.root / key

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self._path(key).read_bytes())
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


@dataclass
class SweepResult:
    records: int = 0
    layer_dirs: int = 0
    workspaces: int = 0


def sweep(store: Layout) -> SweepResult:
    """What ``gc`` leaves to the builder: cache records whose layer blob is gone, layer directories
    that no image in the index and no surviving record uses, and workspaces of builds that ended.

    Takes the store's exclusive lock, so no build is running (builds hold the writers' lock)."""
    from ..bundle.layers import LAYERS_DIR, remove_tree
    from ..errors import PybuildError
    from ..layout import Digest, load_image

    result = SweepResult()
    with store.exclusive():
        keep: set[str] = set()
        for desc in store.read_index().manifests:
            try:
                keep.update(d.encoded for d in load_image(store, desc).config.diff_ids)
            except PybuildError:
                continue
        records = store.root / CACHE_DIR
        if records.is_dir():
            for path in records.iterdir():
                try:
                    record = json.loads(path.read_bytes())
                    layer = record.get("layer") if isinstance(record, dict) else None
                    if layer is None:
                        continue
                    if store.blobs.exists(Digest.parse(str(layer.get("digest")))):
                        keep.add(Digest.parse(str(record.get("diff_id"))).encoded)
                        continue
                except (OSError, ValueError, AttributeError, PybuildError):
                    pass
                with contextlib.suppress(OSError):
                    path.unlink()
                    result.records += 1
        layers = store.root / LAYERS_DIR
        if layers.is_dir():
            for path in layers.iterdir():
                if path.name not in keep:
                    remove_tree(path)
                    result.layer_dirs += 1
        scratch = store.root / ".pybuild" / "build"
        if scratch.is_dir():
            for path in scratch.iterdir():
                remove_tree(path)
                result.workspaces += 1
    return result
