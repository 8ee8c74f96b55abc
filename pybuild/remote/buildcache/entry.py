"""One entry of the shared build cache: a step's record as an OCI manifest, and back.

An entry is an OCI 1.1 artifact (manifest.md, "Guidelines for Artifact Usage"), tagged
``pybuild-cache-<hex key>`` in the cache's repository or layout: an image manifest with

- ``artifactType`` ``RECORD_TYPE`` and the empty config (``{}``);
- one layer: the layer the step made, compressed (the same blob a push of the image uploads, so the
  two share it by digest), or the empty descriptor when it made none;
- ``annotations``: ``org.opencontainers.image.created``, when the entry was written (what
  ``--cache-ttl`` and ``cache prune --older-than`` compare), and ``RECORD_ANNOTATION``, the step's
  record as JSON (its history entry, the diff_id of its layer or null, COPY --from's match record,
  and the key itself): one document per entry, so a hit costs one GET.

Everything read from a cache is checked here before the step engine sees it: the record is for the
tag's key, the layer is a layer media type whose diff_id the record names, the history entry has
only the fields a history entry has. The layer itself is checked when it is fetched
(``check_diff_id``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...diff import open_layer
from ...errors import DigestMismatch, InvalidDocument, PybuildError
from ...layout import (
    EMPTY_DESCRIPTOR,
    BlobInfoCache,
    Descriptor,
    Digest,
    Layout,
    Manifest,
    dump_json,
    mediatype,
)
from ...layout.document import nesting_exceeds, parse_created

RECORD_TYPE = "application/vnd.pybuild.cache.record.v1+json"
RECORD_ANNOTATION = "io.pybuild.cache.record"
TAG_PREFIX = "pybuild-cache-"
CREATED = "org.opencontainers.image.created"
MANIFEST_LIMIT = 1 << 20
_KEY = re.compile(r"[0-9a-f]{64}")
# what a history entry may hold (config.md)
_HISTORY = {"created": str, "created_by": str, "author": str, "comment": str, "empty_layer": bool}
# what a record holds besides the layer (the step engine's own record, minus the local descriptor)
_FIELDS = ("history", "diff_id", "fs", "in_history", "copy_from")


class BadEntry(InvalidDocument):
    """An entry that is not what pybuild writes: a miss, with a warning."""


def tag_of(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"bad cache key {key!r}")
    return TAG_PREFIX + key


def key_of(tag: str) -> str | None:
    """The key an entry's tag names, or None for any other tag."""
    key = tag[len(TAG_PREFIX) :] if tag.startswith(TAG_PREFIX) else ""
    return key if _KEY.fullmatch(key) else None


@dataclass(frozen=True)
class Entry:
    """A step's record as read from a cache, checked. ``record`` is in the step engine's form
    (``layer`` is ``layer``'s descriptor as a dict)."""

    key: str
    record: dict[str, Any]
    layer: Descriptor | None
    diff_id: Digest | None
    created: datetime | None


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_manifest(key: str, record: dict[str, Any], layer: Descriptor | None) -> bytes:
    """The manifest of ``key``'s entry (``layer``: the compressed blob the entry carries, None for a
    step without a layer). It is written last, after the blobs it names."""
    body = {name: record[name] for name in _FIELDS if name in record}
    carried = layer if layer is not None else EMPTY_DESCRIPTOR
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "artifactType": RECORD_TYPE,
        "config": EMPTY_DESCRIPTOR.to_dict(),
        "layers": [Descriptor(carried.media_type, carried.digest, carried.size).to_dict()],
        "annotations": {CREATED: now_text(), RECORD_ANNOTATION: dump_json({"key": key, **body}).decode()},
    }
    return Manifest.new(manifest).to_bytes()


def parse_entry(key: str, raw: bytes, where: str) -> Entry:
    """``key``'s entry manifest ``raw`` (its digest already checked), checked, as an Entry."""
    if len(raw) > MANIFEST_LIMIT:
        raise BadEntry(f"{where}: the entry's manifest is {len(raw)} bytes, more than an entry has")
    try:
        manifest = Manifest.parse(raw, f"{where}: entry manifest")
    except PybuildError as exc:
        raise BadEntry(str(exc)) from None
    kind = manifest.to_dict().get("artifactType")
    if kind != RECORD_TYPE or len(manifest.layers) != 1 or RECORD_ANNOTATION not in manifest.annotations:
        raise BadEntry(f"{where}: not a pybuild build cache entry ({str(kind)[:80]})")
    created = manifest.annotations.get(CREATED)
    when = parse_created(created) if created else None
    return parse_record(key, manifest.annotations[RECORD_ANNOTATION].encode(), manifest, when, where)


def _history(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadEntry(f"{where}: the record's history is not an object")
    for name, item in value.items():
        kind = _HISTORY.get(name)
        if kind is None or not isinstance(item, kind):
            raise BadEntry(f"{where}: the record's history has a bad field {str(name)[:40]!r}")
    if "created" in value and parse_created(value["created"]) is None:
        raise BadEntry(f"{where}: the record's history has a bad created time")
    return dict(value)


def parse_record(key: str, raw: bytes, manifest: Manifest, created: datetime | None, where: str) -> Entry:
    """The record ``raw`` of ``key``'s entry ``manifest`` as an Entry."""
    if nesting_exceeds(raw):
        raise BadEntry(f"{where}: the entry's record nests too deeply")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadEntry(f"{where}: the entry's record is not JSON") from None
    if not isinstance(doc, dict) or doc.get("key") != key:
        raise BadEntry(f"{where}: the entry's record is for another key")
    record: dict[str, Any] = {"history": _history(doc.get("history"), where)}
    for name in ("fs", "in_history"):
        if name in doc:
            if not isinstance(doc[name], bool):
                raise BadEntry(f"{where}: the record's {name} is not true or false")
            record[name] = doc[name]
    if "copy_from" in doc:
        record["copy_from"] = doc["copy_from"]  # checked where it is used (copyfrom._from_record)
    layer = manifest.layers[0]
    diff_id = None
    if doc.get("diff_id") is None:
        if layer.digest != EMPTY_DESCRIPTOR.digest:
            raise BadEntry(f"{where}: the entry carries a layer its record does not name")
        record.update(layer=None, diff_id=None)
    else:
        try:
            diff_id = Digest.parse(str(doc["diff_id"]))
        except PybuildError:
            raise BadEntry(f"{where}: the record's diff_id is not a digest") from None
        if mediatype.layer_compression(layer.media_type) is None or "nondistributable" in layer.media_type:
            raise BadEntry(f"{where}: the entry's layer has media type {layer.media_type[:80]}")
        if not layer.digest.registered or not diff_id.registered:
            raise BadEntry(f"{where}: the entry's layer has an unsupported digest")
        plain = Descriptor(layer.media_type, layer.digest, layer.size)
        record.update(layer=plain.to_dict(), diff_id=str(diff_id))
        return Entry(key, record, plain, diff_id, created)
    return Entry(key, record, None, None, created)


def stale(created: datetime | None, not_before: datetime | None) -> bool:
    """Whether an entry written at ``created`` is older than ``not_before`` (--cache-ttl): an
    entry that does not say when it was written is."""
    if not_before is None:
        return False
    return created is None or created < not_before


def check_diff_id(layout: Layout, layer: Descriptor, diff_id: Digest, where: str) -> None:
    """Read the blob ``layer`` in ``layout`` (verified) and check that what it holds uncompressed
    is ``diff_id``: a cache never gives a layer whose content is not what its record says."""
    import hashlib

    hasher = hashlib.new(diff_id.algorithm)
    with layout.blobs.open(layer.digest, layer.size) as blob:
        reader = open_layer(blob, layer.media_type, what=f"layer {layer.digest}")
        while chunk := reader.read(1 << 20):
            hasher.update(chunk)
        while blob.read(1 << 20):  # to EOF: the blob's own digest is checked there
            pass
    if hasher.hexdigest() != diff_id.encoded:
        raise DigestMismatch(f"{where}: layer {layer.digest} does not hold diff_id {diff_id}")


def remember(blob_info: BlobInfoCache | None, entry: Entry, location: str) -> None:
    """Tell the blob-info cache what a fetched entry's layer is (the compressed form of its diff_id,
    seen at ``location``), so a push of the image mounts it rather than compressing again."""
    if blob_info is None or entry.layer is None or entry.diff_id is None:
        return
    compression = mediatype.layer_compression(entry.layer.media_type)
    if compression in ("gzip", "zstd"):
        from ..recompress import variant

        blob_info.record_compressed(entry.diff_id, variant(compression), entry.layer.digest, entry.layer.size)
    blob_info.record_location(entry.layer.digest, location)
