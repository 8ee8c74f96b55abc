"""The shared build cache in an OCI layout (``oci:DIR``), for pipelines that save and restore a
directory between jobs (GitHub's actions/cache and the like).

Entries are tagged manifests in the layout's index.json. Several builds may use the directory at
once: blobs land atomically (temp file, rename), index.json changes under the layout's lock, and a
build holds the layout's writers' lock while it writes an entry, so ``cache prune`` (whose gc takes
the lock exclusively) never sweeps a blob an entry is about to name.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import BlobNotFound, LayoutError
from ...layout import (
    BlobInfoCache,
    Descriptor,
    Digest,
    Layout,
    gc,
    mediatype,
    stage_copy,
)
from ...layout.referrers import EMPTY_JSON
from ..recompress import layer_into
from . import PruneResult, known_keys
from .entry import (
    MANIFEST_LIMIT,
    RECORD_TYPE,
    BadEntry,
    Entry,
    check_diff_id,
    entry_manifest,
    parse_entry,
    remember,
    stale,
    tag_of,
)


class LayoutCache:
    def __init__(self, path: Path, blob_info: BlobInfoCache | None, *, create: bool) -> None:
        self.path = path
        self.label = f"oci:{path}"
        self.blob_info = blob_info
        self.create = create
        self._layout: Layout | None = None
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # index.json's (inode, size, mtime) when read
        self._tags: dict[str, Descriptor] = {}

    def layout(self) -> Layout:
        if self._layout is None:
            if self.create:
                self._layout = Layout.create(self.path, label=self.label)
            else:
                self._layout = Layout.open(self.path, label=self.label)
        return self._layout

    def _tagged(self, tag: str) -> Descriptor | None:
        """What index.json tags ``tag``, read again only when index.json changed (another build)."""
        layout = self.layout()
        with self._lock:
            try:
                st = os.stat(layout.root / "index.json")
            except OSError as exc:
                raise LayoutError(f"cannot read index.json of {self.label}: {exc.strerror or exc}") from None
            seen = (st.st_ino, st.st_size, st.st_mtime_ns)
            if seen != self._seen:
                self._tags = dict(layout.tags())
                self._seen = seen
            return self._tags.get(tag)

    def lookup(self, key: str, not_before: datetime | None) -> Entry | None:
        desc = self._tagged(tag_of(key))
        if desc is None:
            return None
        layout = self.layout()
        where = f"build cache {self.label}: {tag_of(key)}"
        entry = parse_entry(key, layout.blobs.read(desc.digest, desc.size, limit=MANIFEST_LIMIT), where)
        if stale(entry.created, not_before):
            return None
        if entry.layer is not None and not layout.blobs.exists(entry.layer.digest):
            raise BlobNotFound(f"{where}: layer {entry.layer.digest} is missing")
        return entry

    def has(self, key: str, not_before: datetime | None) -> bool:
        try:
            return self.lookup(key, not_before) is not None
        except BadEntry:
            return False

    def fetch(self, entry: Entry, store: Layout) -> None:
        assert entry.layer is not None and entry.diff_id is not None
        with store.writing():
            stage_copy(self.layout(), store, entry.layer).commit()
        check_diff_id(store, entry.layer, entry.diff_id, f"build cache {self.label}: {tag_of(entry.key)}")
        remember(self.blob_info, entry, f"oci:{self.path}")

    def export(
        self,
        key: str,
        record: dict[str, Any],
        layer: tuple[Descriptor, Digest] | None,
        store: Layout,
        ensure: Any,
    ) -> None:
        layout = self.layout()
        with layout.writing():
            layout.blobs.put(EMPTY_JSON)
            out = None
            if layer is not None:
                desc, diff_id = layer
                if not store.blobs.exists(desc.digest) and not layout.blobs.exists(desc.digest):
                    ensure()
                docker = desc.media_type.startswith("application/vnd.docker.")
                out, writer = layer_into(store, desc, diff_id, layout, "gzip", True, self.blob_info, docker)
                if writer is not None:
                    writer.commit()
                if self.blob_info is not None:
                    self.blob_info.record_location(out.digest, f"oci:{self.path}")
            digest, size = layout.blobs.put(entry_manifest(key, record, out))
            listed = Descriptor(mediatype.OCI_MANIFEST, digest, size, artifact_type=RECORD_TYPE)
            layout.set_tag(tag_of(key), listed)  # last: the entry appears only once it is whole

    def prune(self, older_than: datetime) -> PruneResult:
        layout = self.layout()
        result = PruneResult()
        old: dict[str, Digest] = {}
        for tag, key in known_keys([name for name, _ in layout.tags()]):
            desc = layout.resolve(tag)
            try:
                raw = layout.blobs.read(desc.digest, desc.size, limit=MANIFEST_LIMIT)
                created = parse_entry(key, raw, f"build cache {self.label}: {tag}").created
            except (BadEntry, BlobNotFound):
                result.skipped += 1
                continue
            if created is not None and created >= older_than:
                result.kept += 1
            else:
                old[tag] = desc.digest
        if old:
            # (an entry written again meanwhile, by another build, is another manifest: it stays)
            layout.update_index(lambda found: [m for m in found if old.get(m.ref_name or "") != m.digest])
            result.removed = len(old)
        gc(layout)
        return result

    def close(self) -> None:
        pass
