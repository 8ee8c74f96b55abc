"""The step cache a build sees: the store's own records first, then the shared caches
(``--cache-from``, in order), and the shared cache that receives every step's record
(``--cache-to``). The step engine asks it for a key's record and gives it the records of the steps
it ran, as it always did (``get``, ``put``); the shared caches stay behind that.

Lazily: a key found in a shared cache gives its record at once, but its layer blob is only
downloaded when the build needs it: when a later step misses and must stack the layers below it
(``fetch``, through ``StepContext.layer_dirs``), or for the final image (``fetch`` before the
commit; the final stage's layers start downloading as soon as they are found). A layer always
verifies (its digest, and the diff_id the record names) before anything uses it.

Faults never fail a build: a cache that cannot be reached is one warning and is left out; an
entry that does not parse or whose layer is missing is one warning and a miss; a layer that turns
out not to verify when it is downloaded is one warning (``EntryLost``) and the build starts over
without that entry (the steps already run are local hits then). Exports run beside the build, each
entry whole or not at all (blobs first, the tag last); a failed export is one warning.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from ..errors import BlobNotFound, DigestMismatch, InvalidDocument, PybuildError, warn
from ..layout import BlobInfoCache, Descriptor, Digest, ImageStore, Layout, mediatype
from ..run.layers import remove_tree
from .cache import BuildCache
from .options import BuildOptions

MAX_ATTEMPTS = 4  # builds started over after lost entries; the last one uses no shared cache
WORKERS = 4
T = TypeVar("T")


class EntryLost(PybuildError):
    """A shared cache's entry whose layer could not be fetched or did not verify."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass
class _Pending:
    """A layer found through a shared cache's entry, not yet in the store or not yet verified."""

    source: Any  # remote.buildcache.CacheRepository
    entry: Any  # remote.buildcache.Entry


class StepCache:
    """The records of a build's steps: local, shared (``--cache-from``) and exported (``--cache-to``)."""

    def __init__(self, store: ImageStore, options: BuildOptions, scratch: Path) -> None:
        self.local = BuildCache(store)
        self.store = store
        self.options = options
        self.scratch = scratch
        self.ttl = options.cache_ttl
        self.not_before = datetime.now(UTC) - timedelta(seconds=self.ttl) if self.ttl else None
        self._refs = [options.cache_ref(t, "--cache-from") for t in options.cache_from]
        self._sink_ref = options.cache_ref(options.cache_to, "--cache-to") if options.cache_to else None
        self._opened = False
        self._sources: list[Any] = []  # the --cache-from caches still in use
        self._all: list[Any] = []  # every cache opened (closed at the end)
        self._sink: Any = None
        self._lock = threading.RLock()
        self._open_lock = threading.Lock()  # apart: opening imports and connects, while the steps
        # go on queuing their exports under ``_lock``
        self._bad: set[str] = set()  # keys whose entry lost its layer: never taken again
        self._pending: dict[Digest, _Pending] = {}
        self._fetches: dict[Digest, Future[None]] = {}
        self._from_sink: set[str] = set()  # keys the sink has (found there)
        self._not_in_sink: set[str] = set()  # keys looked up in the sink and not found
        self._to_export: dict[str, dict[str, Any]] = {}
        self._exports: list[Future[None]] = []
        self._export_error: str | None = None
        self._exported = 0
        self._staging: Path | None = None
        self._pools: dict[str, ThreadPoolExecutor] = {}

    # --- opening the shared caches -------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return bool(self._refs) or self._sink_ref is not None

    def _open(self) -> None:
        """Open the shared caches: at the first look-up, or in the first export (so that a build
        that only exports loads the registry client beside its steps, not before them)."""
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                self._open_now()
                self._opened = True

    def _open_now(self) -> None:
        from ..remote.buildcache import open_cache

        blob_info = BlobInfoCache(self.store.root)
        registry = self.options.registry
        sink = self._sink_ref
        for ref in [*self._refs, *([sink] if sink is not None and sink not in self._refs else [])]:
            staging = self._staging_layout() if ref == sink and ref.path is None else None
            cache = open_cache(
                ref, options=registry, blob_info=blob_info, staging=staging, create=ref == sink
            )
            self._all.append(cache)
            if ref in self._refs:
                self._sources.append(cache)
            if ref == sink:
                self._sink = cache

    def _staging_layout(self) -> Layout:
        """Where an export to a registry compresses layers on their way (removed at the end)."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix="cache-export-", dir=self.scratch))
        return Layout.create(self._staging / "layout")

    def _pool(self, name: str) -> ThreadPoolExecutor:
        with self._lock:
            if name not in self._pools:
                self._pools[name] = ThreadPoolExecutor(
                    max_workers=WORKERS, thread_name_prefix=f"cache-{name}"
                )
            return self._pools[name]

    def _leave_out(self, source: Any, exc: PybuildError) -> None:
        with self._lock:
            if source not in self._sources:
                return
            self._sources.remove(source)
        warn(f"{exc}: the build goes on without the cache {source.label}")

    # --- records ------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        """``key``'s record: the store's own, else the first shared cache's that has it."""
        record = self.local.get(key, self.ttl)
        if record is not None:
            self._export(key, record)
            return record
        if not self._refs or key in self._bad:
            return None
        self._open()
        for source in list(self._sources):
            try:
                entry = source.lookup(key, self.not_before)
            except (BlobNotFound, DigestMismatch, InvalidDocument) as exc:
                warn(f"{exc}: taken as a miss")  # one damaged entry: the others still serve
                continue
            except PybuildError as exc:  # unreachable, refused, not there at all
                self._leave_out(source, exc)
                continue
            if entry is None:
                if source is self._sink:
                    self._not_in_sink.add(key)
                continue
            return self._take(key, source, entry)
        return None

    def _take(self, key: str, source: Any, entry: Any) -> dict[str, Any]:
        record = dict(entry.record)
        if source is self._sink:
            self._from_sink.add(key)
        if entry.layer is not None:
            assert entry.diff_id is not None
            if self.store.blobs.exists(entry.diff_id):  # the layer itself is here, uncompressed
                docker = entry.layer.media_type.startswith("application/vnd.docker.")
                plain = Descriptor(
                    mediatype.layer_media_type("none", docker=docker),
                    entry.diff_id,
                    self.store.blobs.size(entry.diff_id),
                )
                record["layer"] = plain.to_dict()
                self.local.put(key, record)
            else:
                with self._lock:
                    self._pending.setdefault(entry.layer.digest, _Pending(source, entry))
        else:
            self.local.put(key, record)
        if source is not self._sink:
            self._export(key, record)
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        """The record of a step that ran: into the store, and to --cache-to."""
        self.local.put(key, record)
        self._export(key, record)

    # --- layers -------------------------------------------------------------------------------
    def has_layer(self, desc: Descriptor) -> bool:
        """Whether the blob is in the store, or can be fetched from the shared cache that named it."""
        return desc.digest in self._pending or self.store.blobs.exists(desc.digest)

    def want(self, desc: Descriptor) -> None:
        """The build will need this layer's blob (the final image holds it): start fetching it."""
        if desc.digest in self._pending:
            self._start(desc.digest)

    def fetch(self, layers: list[tuple[Descriptor, Digest]]) -> None:
        """Make sure the blobs of ``layers`` are in the store, verified. A layer a shared cache
        gave that cannot be fetched or does not verify raises EntryLost."""
        futures = [(d.digest, self._start(d.digest)) for d, _ in layers if d.digest in self._pending]
        for digest, future in futures:
            if future is not None:
                self._result(digest, future)

    def _start(self, digest: Digest) -> Future[None] | None:
        with self._lock:
            pending = self._pending.get(digest)
            if pending is None:
                return None
            future = self._fetches.get(digest)
            if future is None:
                future = self._pool("fetch").submit(self._download, pending)
                self._fetches[digest] = future
            return future

    def _result(self, digest: Digest, future: Future[None]) -> None:
        try:
            future.result()
        except PybuildError as exc:
            with self._lock:
                pending = self._pending.pop(digest, None)
                self._fetches.pop(digest, None)
            key = pending.entry.key if pending is not None else ""
            self._bad.add(key)
            raise EntryLost(str(exc), key) from None

    def _download(self, pending: _Pending) -> None:
        entry = pending.entry
        if self.store.blobs.exists(entry.layer.digest):  # here already: only its diff_id to check
            from ..remote.buildcache.entry import check_diff_id, tag_of

            check_diff_id(self.store, entry.layer, entry.diff_id, f"build cache entry {tag_of(entry.key)}")
        else:
            pending.source.fetch(entry, self.store)
        self.local.put(entry.key, entry.record)  # a record of the store's now
        with self._lock:
            self._pending.pop(entry.layer.digest, None)

    def _ensure(self, digest: Digest) -> Callable[[], None]:
        def ensure() -> None:
            future = self._start(digest)
            if future is not None:
                future.result()
            elif not self.store.blobs.exists(digest):
                raise BlobNotFound(f"layer {digest} is not in {self.store.label}")

        return ensure

    # --- exports ------------------------------------------------------------------------------
    def _export(self, key: str, record: dict[str, Any]) -> None:
        if self._sink_ref is None or key in self._from_sink:
            return
        with self._lock:
            if self._export_error is not None:
                return
            queued = key in self._to_export
            self._to_export[key] = record
        if not queued:
            self._exports.append(self._pool("export").submit(self._export_one, key))

    def _export_one(self, key: str) -> None:
        with self._lock:
            record = self._to_export.pop(key, None)
            if record is None or self._export_error is not None:
                return
        layer = None
        if record.get("layer") is not None:
            try:
                desc = Descriptor.from_dict(record["layer"], "build cache record")
                layer = (desc, Digest.parse(str(record.get("diff_id"))))
            except PybuildError:
                return
            if not self.has_layer(desc):
                return  # its blob is gone: the step runs again and gives a new record
        try:
            self._open()
            # the first entry written for a key stays (the steps others built on its layer are
            # keyed on its diff_id): asked unless the look-up just said it is not there, or
            # --no-cache asked for every step anew
            known_absent = key in self._not_in_sink or self.options.no_cache
            if not known_absent and self._sink.has(key, self.not_before):
                return
            self._sink.export(
                key, record, layer, self.store, self._ensure(layer[0].digest) if layer else None
            )
        except PybuildError as exc:
            with self._lock:
                if self._export_error is None:
                    self._export_error = str(exc)
            return
        with self._lock:
            self._exported += 1

    # --- the whole build ----------------------------------------------------------------------
    def run(self, attempt: Callable[[], T]) -> tuple[T, list[str]]:
        """Build (``attempt``), starting over when an entry lost its layer; then wait for the
        exports. The result, and the warnings the exports left."""
        try:
            for number in range(1, MAX_ATTEMPTS + 1):
                if number == MAX_ATTEMPTS:
                    self._open()
                    self._sources.clear()
                try:
                    result = attempt()
                    break
                except EntryLost as exc:
                    warn(f"{exc}: the build starts over without that entry")
            else:  # pragma: no cover - the last attempt uses no shared cache
                raise AssertionError("unreachable")
        except PybuildError:
            self.close()  # what the steps that ran gave is exported all the same
            raise
        except BaseException:
            self.close(cancel=True)
            raise
        return result, self.close()

    def close(self, cancel: bool = False) -> list[str]:
        """Wait for the exports (or, with ``cancel``, for those already writing: each entry is
        whole or not there); the warnings they leave."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=cancel)
        found = []
        if self._export_error is not None and self._sink is not None:
            message = (
                f"{self._export_error}: the build cache {self._sink.label} was not written "
                f"({self._exported} entries written)"
            )
            warn(message)
            found.append(message)
            self._export_error = None
        for source in self._all:
            with contextlib.suppress(PybuildError):
                source.close()
        self._all = []
        if self._staging is not None:
            remove_tree(self._staging)
            self._staging = None
        return found
