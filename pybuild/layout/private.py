"""The store's private area: what pybuild keeps under ``.pybuild/`` in a layout (other tools ignore it).

Every path below ``.pybuild/`` is named here, and nowhere else:

- ``tmp/``            temp files of blob and index.json writes, named ``<prefix>-<pid>-<random>``;
- ``gc.lock``, ``index.lock``  the layout's locks (see ``Layout.writing`` and ``update_index``);
- ``layers/<diff_id>`` each layer extracted once, in overlay format, as a lowerdir for RUN steps and
  ``pybuild run`` (the extraction itself is run/layers.py's: it needs a user namespace);
- ``build-cache/<key>`` the builder's step records (the keys are builder/cache.py's);
- ``build/``          workspaces of running builds (one per step: upperdir, staging, secrets);
- ``cache-mounts/<id>`` the folders of ``RUN --mount=type=cache``;
- ``run/``            workspaces of ``pybuild run`` containers;
- ``blob-info/``      the blob-info cache (diff_id -> compressed digests).

And the gc of that area: stale temp files (``sweep_temp_files``, for any layout), and for the store
(``sweep``): cache records whose layer blob is gone, layer directories no image and no surviving
record uses, and workspaces of builds that ended. Removing a layer directory or a workspace can
need a user namespace (their files belong to subordinate ids), so the caller passes the remover.

Knows nothing of tar or processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PybuildError
from . import mediatype
from .descriptor import Descriptor
from .digest import Digest
from .document import ImageConfig, Index, Manifest

if TYPE_CHECKING:
    from .imagelayout import Layout

PRIVATE_DIR = ".pybuild"


@dataclass
class SweepResult:
    records: int = 0
    layer_dirs: int = 0
    workspaces: int = 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateArea:
    """The paths under ``<layout>/.pybuild``. Nothing is created until a caller needs it."""

    def __init__(self, layout_root: Path | str) -> None:
        self.root = Path(layout_root) / PRIVATE_DIR

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def lock(self, name: str) -> Path:
        """A lock file (``gc.lock``, ``index.lock``)."""
        return self.root / name

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    def layer_dir(self, diff_id: Digest) -> Path:
        """Where the layer with ``diff_id`` is (or will be) extracted."""
        return self.layers / diff_id.encoded

    @property
    def build_cache(self) -> Path:
        return self.root / "build-cache"

    @property
    def workspaces(self) -> Path:
        return self.root / "build"

    @property
    def cache_mounts(self) -> Path:
        return self.root / "cache-mounts"

    def cache_mount(self, name: str) -> Path:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"bad cache mount name {name!r}")
        return self.cache_mounts / name

    @property
    def run_workspaces(self) -> Path:
        return self.root / "run"

    @property
    def blob_info(self) -> Path:
        return self.root / "blob-info"

    # --- gc ------------------------------------------------------------------------------------
    def sweep_temp_files(self, temp_age: float) -> int:
        """Remove temp files of dead processes (or older than ``temp_age`` seconds); how many."""
        removed = 0
        if not self.tmp.is_dir():
            return 0
        now = time.time()
        for entry in os.scandir(self.tmp):
            parts = entry.name.rsplit("-", 2)
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            try:
                old = now - entry.stat(follow_symlinks=False).st_mtime > temp_age
            except FileNotFoundError:
                continue
            if pid is None or not _pid_alive(pid) or old:
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
        return removed

    def sweep(self, layout: Layout, remove_tree: Callable[[Path], None]) -> SweepResult:
        """What blob gc leaves: cache records whose layer blob is gone, layer directories that no
        image in the index and no surviving record uses, and workspaces of builds that ended.

        Takes the layout's exclusive lock, so no build is running (builds hold the writers' lock)."""
        result = SweepResult()
        with layout.exclusive():
            keep = _diff_ids_in_use(layout)
            if self.build_cache.is_dir():
                for path in self.build_cache.iterdir():
                    diff_id = _record_layer(layout, path)
                    if diff_id is not None:
                        keep.add(diff_id)
                        continue
                    with contextlib.suppress(OSError):
                        path.unlink()
                        result.records += 1
            if self.layers.is_dir():
                for path in self.layers.iterdir():
                    if path.name not in keep:
                        remove_tree(path)
                        result.layer_dirs += 1
            if self.workspaces.is_dir():
                for path in self.workspaces.iterdir():
                    remove_tree(path)
                    result.workspaces += 1
        return result


def _record_layer(layout: Layout, path: Path) -> str | None:
    """The diff_id (encoded) of the layer a build cache record names, when its blob is still there;
    None for a record to remove (unreadable, or its blob is gone). A record of a step that made no
    layer is kept, and keeps nothing (returns "")."""
    try:
        record = json.loads(path.read_bytes())
        layer = record.get("layer") if isinstance(record, dict) else None
        if layer is None:
            return ""
        if layout.blobs.exists(Digest.parse(str(layer.get("digest")))):
            return Digest.parse(str(record.get("diff_id"))).encoded
    except (OSError, ValueError, AttributeError, PybuildError):
        pass
    return None


def _diff_ids_in_use(layout: Layout) -> set[str]:
    """The diff_ids (encoded) of every image index.json reaches, every platform of an index included.
    A document that cannot be read keeps nothing (its image's layer directories are extracted
    again when needed)."""
    keep: set[str] = set()
    seen: set[Digest] = set()
    stack: list[Descriptor] = list(layout.read_index().manifests)
    while stack:
        desc = stack.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        try:
            if desc.media_type in mediatype.INDEXES:
                stack.extend(Index.parse(layout.blobs.read(desc.digest, desc.size)).manifests)
            elif desc.media_type in mediatype.MANIFESTS:
                manifest = Manifest.parse(layout.blobs.read(desc.digest, desc.size), lenient=True)
                if manifest.config.media_type in mediatype.CONFIGS:
                    raw = layout.blobs.read(manifest.config.digest, manifest.config.size)
                    keep.update(d.encoded for d in ImageConfig.parse(raw, lenient=True).diff_ids)
        except PybuildError:
            continue
    return keep
