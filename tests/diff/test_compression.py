"""LayerWriter: parallel gzip (one member, deterministic, bounded), zstd threads, errors and threads."""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.diff import LayerWriter, open_layer
from pybuild.diff import compression as compression_module
from pybuild.diff.compression import GZIP_BLOCK
from pybuild.errors import LayerError

B = GZIP_BLOCK


@cache
def compressible(n: int, seed: int = 0) -> bytes:
    """Text-like bytes: words from a small vocabulary, about 3:1 with gzip -6."""
    rnd = random.Random(seed)
    letters = b"abcdefghijklmnopqrstuvwxyz_/.0123456789"
    words = [bytes(rnd.choices(letters, k=rnd.randint(2, 12))) for _ in range(3000)]
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rnd.choices(words, k=2000)) + b"\n"
    return bytes(out[:n])


@cache
def noise(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@cache
def mixed(n: int) -> bytes:
    """Alternating stretches of text and noise, of uneven lengths, so blocks differ."""
    out = bytearray()
    seed = 0
    while len(out) < n:
        seed += 1
        size = 37_000 + seed * 51_013 % 400_000
        out += compressible(size, seed) if seed % 3 else noise(size, seed)
    return bytes(out[:n])


class Null:
    """A sink that only counts."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Any) -> int:
        n = len(memoryview(data))
        self.size += n
        return n


class Full:
    """A sink that fails like a full disk once it holds more than ``room`` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.data = bytearray()

    def write(self, data: Any) -> int:
        if len(self.data) + len(memoryview(data)) > self.room:
            raise OSError(28, "No space left on device")
        self.data += data
        return len(memoryview(data))


def compress(data: bytes, kind: str = "gzip", split: int | list[int] = 1 << 16, **kwargs: Any) -> bytes:
    out = io.BytesIO()
    writer = LayerWriter(out, kind, **kwargs)
    sizes = iter(split) if isinstance(split, list) else None
    pos = 0
    while pos < len(data):
        step = next(sizes, 1 << 16) if sizes is not None else split
        assert isinstance(step, int)
        writer.write(data[pos : pos + step])
        pos += step
    stats = writer.close()
    value = out.getvalue()
    assert stats.size == len(value)
    assert stats.digest == "sha256:" + hashlib.sha256(value).hexdigest()
    assert stats.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    return value


def wait_for_threads(count: int) -> int:
    deadline = time.monotonic() + 10
    while threading.active_count() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


SIZES = [0, 1, B - 1, B, B + 1, 3 * B + 12_345]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("data_kind", ["noise", "text"])
@pytest.mark.parametrize("workers", [1, 2])
def test_gzip_round_trip(size: int, data_kind: str, workers: int) -> None:
    data = noise(size) if data_kind == "noise" else compressible(size)
    blob = compress(data, workers=workers)
    assert gzip.decompress(blob) == data
    assert open_layer(io.BytesIO(blob)).read() == data
    # exactly one member: header as before, trailer of the whole stream, nothing after it
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert blob[-8:] == struct.pack("<II", zlib.crc32(data), len(data))
    member = zlib.decompressobj(31)
    assert member.decompress(blob) == data and member.eof and member.unused_data == b""


@pytest.mark.parametrize("level", [1, 6, 9])
def test_gzip_header_matches_gzipfile(level: int) -> None:
    reference = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=reference, mtime=0, compresslevel=level):
        pass
    blob = compress(b"some bytes", level=level)
    assert blob[:10] == reference.getvalue()[:10]
    assert gzip.decompress(blob) == b"some bytes"


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("split", [1, 511, 1 << 16, B - 1, B, B + 1, 5 * B])
def test_gzip_same_bytes_for_any_split_and_workers(workers: int, split: int) -> None:
    data = mixed(4 * B + 777)
    if split == 1:
        data = data[: B + 4096]  # one byte at a time: keep it short
    assert compress(data, split=split, workers=workers) == compress(data, split=len(data) or 1, workers=1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(0, 3 * B + 100),
    splits=st.lists(st.integers(1, 2 * B), max_size=40),
    workers=st.sampled_from([1, 2, 4]),
)
def test_gzip_deterministic_property(size: int, splits: list[int], workers: int) -> None:
    data = mixed(3 * B + 100)[:size]
    blob = compress(data, split=splits, workers=workers)
    assert blob == compress(data, split=max(size, 1), workers=1)
    assert gzip.decompress(blob) == data


@pytest.mark.skipif(shutil.which("gzip") is None, reason="no gzip(1)")
def test_gzip_t_accepts_it(tmp_path: Path) -> None:
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(compress(mixed(5 * B + 3), workers=2))
    subprocess.run(["gzip", "-t", str(path)], check=True)
    assert subprocess.run(["gzip", "-dc", str(path)], check=True, capture_output=True).stdout == mixed(
        5 * B + 3
    )


def test_gzip_ratio_close_to_plain_gzip() -> None:
    data = compressible(20_000_000, seed=7)
    ours = len(compress(data, workers=2))
    plain = len(gzip.compress(data, 6, mtime=0))
    assert ours <= plain * 1.01, (ours, plain)


@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("room", [0, 100, 2 * B, "trailer"])
def test_sink_error_propagates_and_threads_end(workers: int, room: int | str) -> None:
    data = noise(12 * B + 5)
    before = threading.active_count()
    if room == "trailer":
        room = len(compress(data, workers=1)) - 8  # fails inside close()
    assert isinstance(room, int)
    sink = Full(room)
    with pytest.raises(OSError, match="No space left on device") as caught:
        writer = LayerWriter(sink, "gzip", workers=workers)
        for pos in range(0, len(data), 1 << 16):
            writer.write(data[pos : pos + (1 << 16)])
        writer.close()
    assert caught.value.errno == 28
    assert threading.active_count() == before  # joined before the error left write()/close()
    if room:
        with pytest.raises(LayerError):
            writer.write(b"more")
        with pytest.raises(LayerError):
            writer.close()
        writer.abort()
        writer.abort()


def test_worker_error_propagates_and_threads_end(monkeypatch: pytest.MonkeyPatch) -> None:
    real = compression_module._deflate_block
    calls = 0

    def failing(block: bytes, zdict: bytes, level: int, last: bool) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise MemoryError("no memory for a block")
        return real(block, zdict, level, last)

    monkeypatch.setattr(compression_module, "_deflate_block", failing)
    before = threading.active_count()
    writer = LayerWriter(Null(), "gzip", workers=2)
    with pytest.raises(MemoryError):
        for pos in range(0, 20 * B, 1 << 16):
            writer.write(mixed(20 * B)[pos : pos + (1 << 16)])
        writer.close()
    assert threading.active_count() == before


def test_with_block_aborts_on_error() -> None:
    before = threading.active_count()
    with pytest.raises(RuntimeError), LayerWriter(Null(), "gzip", workers=2) as writer:
        writer.write(mixed(6 * B))
        assert threading.active_count() > before
        raise RuntimeError("reading a file failed")
    assert threading.active_count() == before
    with LayerWriter(Null(), "gzip", workers=2) as writer:
        writer.write(mixed(3 * B))
    assert writer.stats is not None and threading.active_count() == before


def test_abandoned_writer_lets_its_threads_go() -> None:
    before = threading.active_count()
    writer = LayerWriter(Null(), "gzip", workers=2)
    writer.write(mixed(6 * B))
    assert threading.active_count() > before
    del writer
    gc.collect()
    assert wait_for_threads(before) == before


def test_tiny_layer_starts_no_thread() -> None:
    before = threading.active_count()
    writer = LayerWriter(Null(), "gzip", workers=4)
    writer.write(compressible(B))
    assert threading.active_count() == before
    writer.close()


def test_memory_stays_bounded() -> None:
    chunks = [mixed(8 * B)[i : i + (1 << 16)] for i in range(0, 8 * B, 1 << 16)]
    total = 100 * (1 << 20)
    tracemalloc.start()
    try:
        writer = LayerWriter(Null(), "gzip", workers=4)
        written = 0
        while written < total:
            chunk = chunks[(written >> 16) % len(chunks)]
            writer.write(chunk)
            written += len(chunk)
        writer.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30 * (1 << 20), peak


def test_zstd_same_bytes_for_any_split_and_workers() -> None:
    data = mixed(24 * B)
    reference = compress(data, "zstd", split=len(data), workers=1)
    for workers, split in [(2, 1 << 16), (4, 3 * B + 1), (2, 999)]:
        assert compress(data, "zstd", split=split, workers=workers) == reference
    assert zstandard.ZstdDecompressor().decompressobj().decompress(reference) == data
    assert open_layer(io.BytesIO(reference)).read() == data


@pytest.mark.parametrize("kind", ["zstd", "none"])
@pytest.mark.parametrize("size", [0, 1, B + 1])
def test_other_compressions_round_trip(kind: str, size: int) -> None:
    data = mixed(size)
    assert open_layer(io.BytesIO(compress(data, kind, workers=2))).read() == data


# --- reading gzip layers (inflated by ISA-L) ------------------------------------------------------


def test_gzip_reader_gives_zlibs_bytes_for_every_member_layout() -> None:
    """Several members (as `cat a.gz b.gz` makes), pybuild's own pigz-style member, and the zero
    padding some tools leave after the last member: the same bytes as Python's gzip module reads."""
    a, b = compressible(3 * B + 5, seed=1), noise(B // 2)
    members = gzip.compress(a, mtime=0) + gzip.compress(b, mtime=0) + b"\0" * 700
    assert gzip.decompress(members) == a + b
    assert open_layer(io.BytesIO(members)).read() == a + b
    ours = io.BytesIO()
    with LayerWriter(ours, "gzip", workers=2) as w:
        w.write(a)
    assert open_layer(io.BytesIO(ours.getvalue())).read() == gzip.decompress(ours.getvalue()) == a


@pytest.mark.parametrize("damage", ["truncated", "bad crc", "bad size", "bad deflate", "bad header"])
def test_damaged_gzip_is_one_layer_error(damage: str) -> None:
    data = bytearray(gzip.compress(compressible(200_000), mtime=0))
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "bad crc":
        data[-8] ^= 0xFF
    elif damage == "bad size":
        data[-1] ^= 0xFF
    elif damage == "bad deflate":
        data[10:30] = b"\xff" * 20
    else:
        data = bytearray(b"\x1f\x8b\x09") + data[3:]  # compression method 9 does not exist
    with pytest.raises(LayerError, match=r"^layer L is corrupt: "):
        open_layer(io.BytesIO(bytes(data)), what="layer L").read()


def test_zstandard_is_imported_only_for_zstd(tmp_path: Path) -> None:
    """Reading and writing gzip layers never loads zstandard (its import costs start-up and memory)."""
    layer = tmp_path / "layer.gz"
    layer.write_bytes(gzip.compress(compressible(50_000)))
    script = (
        "import io, sys\n"
        "from pybuild.diff import LayerWriter, open_layer\n"
        f"data = open_layer(open({str(layer)!r}, 'rb')).read()\n"
        "LayerWriter(io.BytesIO(), 'gzip').write(data)\n"
        "print('zstandard' in sys.modules)\n"
        "LayerWriter(io.BytesIO(), 'zstd').write(data)\n"
        "print('zstandard' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
