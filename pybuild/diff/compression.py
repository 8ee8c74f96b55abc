"""Layer compression: gzip (deterministic header), zstd and none; one pass hashes both sides."""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast

import zstandard

from ..errors import LayerError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20
COMPRESSIONS = ("gzip", "zstd", "none")


class Sink(Protocol):
    """Anything bytes can be written to: a file, a BytesIO, a blob store writer."""

    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class LayerStats:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the bytes written
    size: int  # bytes written


class _CountingHasher:
    """Passes bytes to ``out`` while hashing and counting them."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hasher.update(view)
        self.size += len(view)
        if self.out is not None:
            self.out.write(view)
        return len(view)

    def flush(self) -> None:
        pass


class LayerWriter:
    """A file-like sink for an uncompressed tar stream: hashes it (diff_id), compresses, hashes again."""

    def __init__(self, out: Sink, compression: str = "gzip", level: int | None = None) -> None:
        if compression not in COMPRESSIONS:
            raise LayerError(f"unknown compression {compression!r}: expected gzip, zstd or none")
        self._compressed = _CountingHasher(out)
        self._compressor: Any
        if compression == "gzip":
            # mtime 0 and no file name: the same bytes in give the same bytes out
            self._compressor = gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=self._compressed,
                mtime=0,
                compresslevel=level or 6,
            )
        elif compression == "zstd":
            cctx = zstandard.ZstdCompressor(level=level or 3, write_checksum=True)
            self._compressor = cctx.stream_writer(self._compressed, closefd=False)  # type: ignore[arg-type]
        else:
            self._compressor = self._compressed
        self._plain = _CountingHasher(self._compressor)
        self.stats: LayerStats | None = None

    def write(self, data: Any) -> int:
        return self._plain.write(data)

    def close(self) -> LayerStats:
        if self.stats is None:
            if self._compressor is not self._compressed:
                self._compressor.close()
            self.stats = LayerStats(
                diff_id="sha256:" + self._plain.hasher.hexdigest(),
                digest="sha256:" + self._compressed.hasher.hexdigest(),
                size=self._compressed.size,
            )
        return self.stats


class _SafeReader(io.RawIOBase):
    """Translates decompression errors into LayerError."""

    def __init__(self, inner: Any, what: str) -> None:
        self._inner = inner
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise LayerError(f"{self._what} is corrupt: {exc}") from None
        n = len(data)
        buffer[:n] = data
        return n


def detect_compression(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def open_layer(fileobj: BinaryIO, media_type: str | None = None, what: str = "layer") -> BinaryIO:
    """A reader of the uncompressed tar inside ``fileobj`` (gzip, zstd or none, by magic bytes)."""
    buffered: Any = fileobj if isinstance(fileobj, io.BufferedReader) else io.BufferedReader(fileobj, CHUNK)
    head = buffered.peek(4)[:4]
    kind = detect_compression(head)
    inner: Any
    if kind == "gzip":
        inner = gzip.GzipFile(fileobj=buffered, mode="rb")
    elif kind == "zstd":
        inner = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    else:
        inner = buffered
    return cast(BinaryIO, io.BufferedReader(_SafeReader(inner, what), CHUNK))
