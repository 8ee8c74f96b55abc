"""The blob-info cache: entries, damage, and concurrent writers."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pybuild.layout import BlobInfoCache, Compressed, Digest


def _d(n: int) -> Digest:
    return Digest.of_bytes(str(n).encode())


def test_entries_round_trip(tmp_path: Path) -> None:
    cache = BlobInfoCache(tmp_path)
    assert cache.compressed(_d(1), "gzip-6") is None and cache.locations(_d(2)) == []
    cache.record_compressed(_d(1), "gzip-6", _d(2), 123)
    cache.record_compressed(_d(1), "zstd-3", _d(3), 99)
    assert cache.compressed(_d(1), "gzip-6") == Compressed(_d(2), 123)
    assert cache.compressed(_d(1), "zstd-3") == Compressed(_d(3), 99)
    assert cache.compressed(_d(1), "gzip-9") is None
    cache.record_location(_d(2), "oci:/a")
    cache.record_location(_d(2), "docker://h/r")
    cache.record_location(_d(2), "oci:/a")
    assert cache.locations(_d(2)) == ["oci:/a", "docker://h/r"]
    cache.forget_location(_d(2), "oci:/a")
    assert cache.locations(_d(2)) == ["docker://h/r"]
    assert (tmp_path / ".pybuild" / "blobinfo").is_dir()


def test_a_damaged_entry_reads_as_empty_and_is_rewritten(tmp_path: Path) -> None:
    cache = BlobInfoCache(tmp_path)
    cache.record_compressed(_d(1), "gzip-6", _d(2), 123)
    path = tmp_path / ".pybuild" / "blobinfo" / f"sha256-{_d(1).encoded}.json"
    doc = json.loads(path.read_text())
    doc["entry"]["compressed"]["gzip-6"]["size"] = 124  # edited: the checksum no longer holds
    path.write_text(json.dumps(doc))
    assert cache.compressed(_d(1), "gzip-6") is None
    path.write_bytes(b"\x00garbage")
    assert cache.compressed(_d(1), "gzip-6") is None
    path.write_bytes(b"[" * 100000)
    assert cache.compressed(_d(1), "gzip-6") is None
    cache.record_compressed(_d(1), "gzip-6", _d(2), 123)
    assert cache.compressed(_d(1), "gzip-6") == Compressed(_d(2), 123)


def _writer(args: tuple[str, int]) -> None:
    root, n = args
    cache = BlobInfoCache(root)
    for i in range(20):
        cache.record_compressed(_d(0), f"v{n}-{i}", _d(1000 * n + i), i)
        cache.record_location(_d(1), f"oci:/layout{n}-{i}")


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(_writer, [(str(tmp_path), n) for n in range(4)]))
    cache = BlobInfoCache(tmp_path)
    for n in range(4):
        for i in range(20):
            assert cache.compressed(_d(0), f"v{n}-{i}") == Compressed(_d(1000 * n + i), i)
    assert len(cache.locations(_d(1))) == 16  # the newest MAX_LOCATIONS
    assert not [p for p in (tmp_path / ".pybuild" / "blobinfo").iterdir() if p.name.startswith(".tmp")]
