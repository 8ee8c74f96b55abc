"""The shared build cache's names and entry format (remote/buildcache): what is written, and what
is refused when a cache holds something else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pybuild.errors import UsageError
from pybuild.layout import EMPTY_DESCRIPTOR, Descriptor, Digest, Manifest, mediatype
from pybuild.remote.buildcache import (
    RECORD_TYPE,
    BadEntry,
    CacheRef,
    key_of,
    parse_cache_ref,
    tag_of,
)
from pybuild.remote.buildcache.entry import RECORD_ANNOTATION, entry_manifest, parse_entry, stale
from tests.fixtures.tools import schema_errors

KEY = "ab" * 32
LAYER = Descriptor(mediatype.OCI_LAYER_GZIP, Digest.of_bytes(b"layer"), 5)
DIFF_ID = "sha256:" + "cd" * 32
RECORD: dict[str, Any] = {
    "history": {"created": "2026-01-01T00:00:00Z", "created_by": "/bin/sh -c echo hi"},
    "layer": {"mediaType": mediatype.OCI_LAYER, "digest": DIFF_ID, "size": 10},  # the store's own
    "diff_id": DIFF_ID,
    "fs": True,
    "in_history": True,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/ci/cache", CacheRef("127.0.0.1:5000", "ci/cache")),
        ("docker://registry.example/team/cache", CacheRef("registry.example", "team/cache")),
        ("oci:/srv/cache", CacheRef(path=Path("/srv/cache"))),
    ],
)
def test_cache_names(text: str, expected: CacheRef) -> None:
    assert parse_cache_ref(text) == expected


@pytest.mark.parametrize(
    "text", ["cache", "127.0.0.1:5000/cache:v1", "r.example/c@sha256:" + "0" * 64, "oci:", "http://r/c"]
)
def test_cache_names_refused(text: str) -> None:
    with pytest.raises(UsageError, match="--cache-to"):
        parse_cache_ref(text, "--cache-to")


def test_tags_name_keys() -> None:
    assert tag_of(KEY) == "pybuild-cache-" + KEY and key_of(tag_of(KEY)) == KEY
    assert key_of("latest") is None and key_of("pybuild-cache-XYZ") is None
    with pytest.raises(ValueError, match="bad cache key"):
        tag_of("../etc")


def test_an_entry_round_trips_and_meets_the_schema() -> None:
    raw = entry_manifest(KEY, RECORD, LAYER)
    doc = json.loads(raw)
    assert schema_errors("manifest", doc) == []
    assert doc["artifactType"] == RECORD_TYPE and doc["config"] == EMPTY_DESCRIPTOR.to_dict()
    assert doc["layers"] == [LAYER.to_dict()]
    record = json.loads(doc["annotations"][RECORD_ANNOTATION])
    assert record["key"] == KEY and "layer" not in record  # the store's own descriptor stays home
    entry = parse_entry(KEY, raw, "w")
    assert entry.created is not None and abs(datetime.now(UTC) - entry.created) < timedelta(minutes=5)
    assert entry.layer == LAYER and str(entry.diff_id) == DIFF_ID
    assert entry.record == {**RECORD, "layer": LAYER.to_dict()}
    # a step without a layer carries the empty descriptor
    raw = entry_manifest(KEY, {"history": {}, "layer": None}, None)
    assert json.loads(raw)["layers"] == [EMPTY_DESCRIPTOR.to_dict()]
    assert parse_entry(KEY, raw, "w").layer is None


def _refused(record: dict[str, Any], layer: Descriptor | None = LAYER, key: str = KEY) -> str:
    with pytest.raises(BadEntry) as caught:
        parse_entry(key, entry_manifest(KEY, record, layer), "w")
    return str(caught.value)


def test_records_that_are_refused() -> None:
    assert "another key" in _refused(RECORD, key="ef" * 32)
    assert "bad field 'x'" in _refused({**RECORD, "history": {"x": 1}})
    assert "bad created" in _refused({**RECORD, "history": {"created": "yesterday"}})
    assert "not a digest" in _refused({**RECORD, "diff_id": "md5:00"})
    assert "carries a layer" in _refused({**RECORD, "diff_id": None})
    assert "media type" in _refused(RECORD, Descriptor("application/json", LAYER.digest, 5))
    assert "not true or false" in _refused({**RECORD, "fs": "yes"})


def test_manifests_that_are_refused() -> None:
    image = Manifest.build(Descriptor(mediatype.OCI_CONFIG, LAYER.digest, 5), [LAYER]).to_bytes()
    with pytest.raises(BadEntry, match="not a pybuild build cache entry"):
        parse_entry(KEY, image, "w")
    with pytest.raises(BadEntry):
        parse_entry(KEY, b"{not json", "w")
    doc = json.loads(entry_manifest(KEY, RECORD, LAYER))
    doc["annotations"][RECORD_ANNOTATION] = "[1, 2"
    with pytest.raises(BadEntry, match="not JSON"):
        parse_entry(KEY, json.dumps(doc).encode(), "w")


def test_stale() -> None:
    now = datetime.now(UTC)
    assert not stale(now, None) and not stale(None, None)
    assert stale(now - timedelta(hours=2), now - timedelta(hours=1))
    assert not stale(now, now - timedelta(hours=1))
    assert stale(None, now)  # an entry that does not say when it was written is old
