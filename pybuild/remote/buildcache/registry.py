"""The shared build cache in a registry repository (``HOST/PATH``), on the registry client.

A lookup is a HEAD of the entry's tag; only when it is there is its manifest (which holds the
record: a few hundred bytes) read, and the layer blob's presence checked with a HEAD. The layer
itself is downloaded by ``fetch``, when the build needs it. An export pushes the layer as a push of
the image would (compressed once: the blob-info cache names the compressed blob, which the registry
may have or mount from the image's repository), then the manifest under the entry's tag.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from ...errors import RegistryError
from ...layout import EMPTY_DESCRIPTOR, BlobInfoCache, Descriptor, Digest, Layout, mediatype
from ...layout.referrers import EMPTY_JSON
from ..reference import RegistryReference
from ..registry import Registry, RegistryOptions
from ..registry.pull import download, no_progress
from ..registry.push import Outbound, Pusher
from . import CacheRef, PruneResult, known_keys
from .entry import BadEntry, Entry, check_diff_id, entry_manifest, parse_entry, remember, stale, tag_of

OUTBOUND = Outbound("gzip", only_uncompressed=True)  # as a push: plain layers gzipped, others as they are


class RegistryCache:
    def __init__(
        self,
        ref: CacheRef,
        options: RegistryOptions | None,
        blob_info: BlobInfoCache | None,
        staging: Layout | None,
    ) -> None:
        self.label = ref.label
        self.repository = ref.repository
        self.registry: Registry = (options or RegistryOptions()).registry(ref.host)
        self.blob_info = blob_info
        self.staging = staging
        self.location = f"docker://{ref.host}/{ref.repository}"
        self._empty_there = False
        self._lock = threading.Lock()

    def _ref(self, key: str) -> RegistryReference:
        return RegistryReference(self.registry.host, self.repository, tag_of(key))

    def _entry(self, key: str, not_before: datetime | None, what: str) -> Entry | None:
        ref = self._ref(key)
        if not self.registry.has_manifest(ref, what):
            return None
        _, raw = self.registry.get_manifest(ref, what)
        entry = parse_entry(key, raw, f"build cache {self.label}: {ref.tag}")
        return None if stale(entry.created, not_before) else entry

    def lookup(self, key: str, not_before: datetime | None) -> Entry | None:
        what = "reading the build cache"
        entry = self._entry(key, not_before, what)
        if entry is not None and entry.layer is not None:
            if not self.registry.has_blob(self.repository, entry.layer, what):
                raise BadEntry(
                    f"build cache {self.label}: {tag_of(key)}: layer {entry.layer.digest} is missing"
                )
            if self.blob_info is not None:
                self.blob_info.record_location(entry.layer.digest, self.location)
        return entry

    def has(self, key: str, not_before: datetime | None) -> bool:
        if not_before is None:
            return self.registry.has_manifest(self._ref(key), "reading the build cache")
        try:
            return self._entry(key, not_before, "reading the build cache") is not None
        except BadEntry:
            return False

    def fetch(self, entry: Entry, store: Layout) -> None:
        assert entry.layer is not None and entry.diff_id is not None
        where = f"build cache {self.label}: {tag_of(entry.key)}"
        writer = download(
            self.registry, store, self.repository, entry.layer, "reading the build cache", no_progress
        )
        writer.commit()
        check_diff_id(store, entry.layer, entry.diff_id, where)
        remember(self.blob_info, entry, self.location)

    def export(
        self,
        key: str,
        record: dict[str, Any],
        layer: tuple[Descriptor, Digest] | None,
        store: Layout,
        ensure: Any,
    ) -> None:
        assert self.staging is not None
        staging = self.staging
        pusher = Pusher(
            self.registry,
            self._ref(key),
            no_progress,
            mount_from=None,
            cache=self.blob_info,
            chunk_size=16 << 20,
            chunked_threshold=64 << 20,
            workers=1,
        )
        with self._lock:  # the entries' config: once a build (a HEAD; the first time, an upload)
            if not self._empty_there:
                self.staging.blobs.put(EMPTY_JSON)
                pusher.upload(self.staging, EMPTY_DESCRIPTOR)
                self._empty_there = True
        pushed = None
        if layer is not None:
            desc, diff_id = layer
            there = False
            if not store.blobs.exists(desc.digest):
                there, session = pusher.present(desc)  # a layer from another cache: mounted, maybe
                if session is not None:
                    session.close()
                if not there:
                    ensure()
            docker = desc.media_type.startswith("application/vnd.docker.")
            pushed = (
                desc
                if there
                else pusher.settle_layer(store, desc, diff_id, OUTBOUND, lambda: staging, docker)
            )
        raw = entry_manifest(key, record, pushed)
        pusher.put_manifest(raw, mediatype.OCI_MANIFEST, Digest.of_bytes(raw), top=True)

    def prune(self, older_than: datetime) -> PruneResult:
        what = "pruning the build cache"
        result = PruneResult()
        for _tag, key in known_keys(self.registry.tags(self.repository, what)):
            ref = self._ref(key)
            try:
                desc, raw = self.registry.get_manifest(ref, what)
                created = parse_entry(key, raw, f"build cache {self.label}: {ref.tag}").created
            except BadEntry:
                result.skipped += 1
                continue
            except RegistryError as exc:
                if "not found" in str(exc) or "unknown" in str(exc):
                    continue  # removed meanwhile (another prune)
                raise
            if created is not None and created >= older_than:
                result.kept += 1
                continue
            self.registry.delete_manifest(self.repository, desc.digest, what)
            result.removed += 1
        return result

    def close(self) -> None:
        self.registry.close()
