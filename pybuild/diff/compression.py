"""Layer compression: gzip (deterministic header), zstd and none; one pass hashes both sides.

gzip is written pigz-style: the input is cut into blocks of ``GZIP_BLOCK`` bytes at fixed offsets of
the stream, each block is raw-deflated on a worker thread (zlib releases the GIL) with the previous
32 KiB of input as its dictionary, and the pieces are written in order as one standard gzip member.
The bytes depend only on the input and the level: not on how the input was split into ``write()``
calls, nor on the number of workers. zstd uses libzstd's own workers, always in multithreaded mode,
whose output is the same for any number of workers >= 1.

Reading, a gzip layer is inflated by ISA-L (``isal``: the same bytes as zlib's inflate, about twice as
fast, and the one serial step of an unpack); zstandard is imported only when a zstd layer is read or
written.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import weakref
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast

from ..errors import LayerError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20
READ_CHUNK = 256 << 10  # the buffer of a layer reader (its consumers read ahead on their own)
COMPRESSIONS = ("gzip", "zstd", "none")
GZIP_BLOCK = 1 << 20  # uncompressed bytes per deflate block; part of the output format, never tune per run
MAX_WORKERS = 4
_WINDOW = 32 << 10  # deflate's window: the dictionary each block gets from the one before
assert GZIP_BLOCK >= _WINDOW


def compression_workers() -> int:
    """Worker threads for one layer: the CPUs, at most ``MAX_WORKERS``."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


class Sink(Protocol):
    """Anything bytes can be written to: a file, a BytesIO, a blob store writer.

    A sink that hashes what it is given anyway (the blob store's writer) may also offer
    ``sha256_hasher()``: the sha256 object it feeds every byte written to it, or None. An uncompressed
    layer's diff_id and digest are then read from it instead of hashing the same bytes again.
    """

    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class LayerStats:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the bytes written
    size: int  # bytes written


class _CountingHasher:
    """Passes bytes to ``out`` while hashing and counting them; ``hasher`` is ``out``'s own sha256 where
    it offers one (see Sink), then the bytes are not hashed here."""

    def __init__(self, out: Any, hasher: Any = None) -> None:
        self.out = out
        self.hasher = hasher if hasher is not None else hashlib.sha256()
        self._hash = hasher is None
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        if self._hash:
            self.hasher.update(view)
        self.size += len(view)
        if self.out is not None:
            self.out.write(view)
        return len(view)

    def flush(self) -> None:
        pass


def _gzip_header(level: int) -> bytes:
    """The header ``gzip.GzipFile(filename="", mtime=0)`` writes: no name, mtime 0, XFL by level, OS 255."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return struct.pack("<4sIBB", b"\x1f\x8b\x08\x00", 0, xfl, 0xFF)


def _deflate_block(block: bytes | bytearray, zdict: bytes, level: int, last: bool) -> bytes:
    """Raw deflate of one block, primed with ``zdict``; byte-aligned (sync flush) unless it is the last."""
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY)
    return c.compress(block) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _stop_pool(pool: ThreadPoolExecutor, wait: bool) -> None:
    pool.shutdown(wait=wait, cancel_futures=True)


class _ParallelGzip:
    """One gzip member, its blocks deflated on up to ``workers`` threads and written to ``out`` in order.

    At most ``workers + 1`` blocks are in flight (one ready for each thread to take next: more only
    costs memory); the caller's ``write`` waits for the oldest when the
    queue is full, and writes finished blocks to ``out`` itself, so errors from ``out`` come out of
    ``write``/``close``. Any error aborts: pending blocks are cancelled and the threads joined. A layer
    of at most one block, or one worker, never starts a thread.
    """

    def __init__(self, out: Any, level: int, workers: int) -> None:
        self._out = out
        self._level = level
        self._workers = workers
        self._limit = workers + 1
        self._buffer = bytearray()  # input not yet in a block; never more than GZIP_BLOCK bytes
        self._zdict = b""
        self._crc = 0
        self._isize = 0
        self._pending: deque[Future[bytes]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._finalizer: Any = None
        self._state = "open"  # open, closed or failed
        out.write(_gzip_header(level))

    def write(self, data: Any) -> int:
        if self._state != "open":
            raise LayerError(f"the layer stream is {self._state}: nothing more can be written to it")
        view = memoryview(data).cast("B")
        n = len(view)
        buf = self._buffer
        pos = 0
        block: bytes | bytearray
        try:
            # a block is cut only once a byte after it is known, so the last block always ends the stream
            while n - pos + len(buf) > GZIP_BLOCK:
                take = GZIP_BLOCK - len(buf)
                if buf:
                    buf += view[pos : pos + take]
                    block = buf  # handed over whole, not copied
                    buf = self._buffer = bytearray()
                else:
                    block = bytes(view[pos : pos + take])
                pos += take
                self._submit(block, last=False)
            buf += view[pos:]
        except BaseException:
            self.abort()
            raise
        return n

    def close(self) -> None:
        if self._state == "closed":
            return
        if self._state == "failed":
            raise LayerError("the layer stream failed earlier and cannot be finished")
        try:
            block = bytes(self._buffer)
            self._buffer = bytearray()
            self._submit(block, last=True)
            self._drain(0)
            self._out.write(struct.pack("<II", self._crc, self._isize & 0xFFFFFFFF))
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        self._stop(wait=True)

    def abort(self) -> None:
        """Drop what is in flight and join the threads; safe to call at any time, any number of times."""
        if self._state == "open":
            self._state = "failed"
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._buffer = bytearray()
        self._stop(wait=True)

    def _submit(self, block: bytes | bytearray, last: bool) -> None:
        self._crc = zlib.crc32(block, self._crc)
        self._isize += len(block)
        zdict, self._zdict = self._zdict, bytes(block[-_WINDOW:])
        if self._workers <= 1 or (last and self._pool is None):
            self._emit(_deflate_block(block, zdict, self._level, last))  # tiny layer or one CPU: inline
            return
        self._drain(self._limit - 1)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="pybuild-gzip")
            # a writer dropped without close() or abort() still lets its threads go
            self._finalizer = weakref.finalize(self, _stop_pool, self._pool, False)
        self._pending.append(self._pool.submit(_deflate_block, block, zdict, self._level, last))
        self._drain(self._limit)

    def _drain(self, limit: int) -> None:
        """Write finished blocks in order, waiting for the oldest while more than ``limit`` are in flight."""
        pending = self._pending
        while pending and (len(pending) > limit or pending[0].done()):
            self._emit(pending[0].result())
            pending.popleft()

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)

    def _stop(self, wait: bool) -> None:
        pool, self._pool = self._pool, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if pool is not None:
            _stop_pool(pool, wait)


class LayerWriter:
    """A file-like sink for an uncompressed tar stream: hashes it (diff_id), compresses, hashes again.

    ``workers`` (default: the CPUs, at most 4) compress in parallel; the output does not depend on it.
    Call ``close()`` for the stats; after an error, ``abort()`` (or leaving a ``with`` block) releases
    the threads at once.
    """

    def __init__(
        self, out: Sink, compression: str = "gzip", level: int | None = None, *, workers: int | None = None
    ) -> None:
        if compression not in COMPRESSIONS:
            raise LayerError(f"unknown compression {compression!r}: expected gzip, zstd or none")
        workers = compression_workers() if workers is None else max(1, workers)
        shared = None
        if compression == "none":
            offer = getattr(out, "sha256_hasher", None)
            shared = offer() if callable(offer) else None
        self._compressed = _CountingHasher(out, shared)
        self._compressor: Any
        if compression == "gzip":
            self._compressor = _ParallelGzip(self._compressed, level or 6, workers)
        elif compression == "zstd":
            # threads >= 1 always: libzstd's multithreaded output is the same for any number of
            # workers, but differs from its single-threaded mode (threads=0)
            import zstandard

            cctx = zstandard.ZstdCompressor(level=level or 3, write_checksum=True, threads=workers)
            self._compressor = cctx.stream_writer(self._compressed, closefd=False)  # type: ignore[arg-type]
        else:
            self._compressor = self._compressed
        # uncompressed: one hasher gives both the diff_id and the digest
        self._plain = self._compressed if compression == "none" else _CountingHasher(self._compressor)
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

    def abort(self) -> None:
        """Give up on the layer: stop compressing and release worker threads. Never raises."""
        if self.stats is None and isinstance(self._compressor, _ParallelGzip):
            self._compressor.abort()

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if value is None:
            self.close()
        else:
            self.abort()


class _SafeReader(io.RawIOBase):
    """Translates decompression errors (``errors``: the decompressor's own kinds) into LayerError."""

    def __init__(self, inner: Any, what: str, errors: tuple[type[BaseException], ...]) -> None:
        self._inner = inner
        self._what = what
        self._errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, *errors)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except self._errors as exc:
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
    buffered: Any = fileobj
    if not isinstance(fileobj, io.BufferedReader):
        buffered = io.BufferedReader(fileobj, READ_CHUNK)
    head = buffered.peek(4)[:4]
    kind = detect_compression(head)
    inner: Any
    errors: tuple[type[BaseException], ...] = ()
    if kind == "gzip":
        from isal import igzip, isal_zlib

        inner = igzip.IGzipFile(fileobj=buffered, mode="rb")  # type: ignore[no-untyped-call]
        errors = (cast(type[BaseException], isal_zlib.error),)
    elif kind == "zstd":
        import zstandard

        inner = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
        errors = (zstandard.ZstdError,)
    else:
        inner = buffered
    return cast(BinaryIO, io.BufferedReader(_SafeReader(inner, what, errors), READ_CHUNK))
