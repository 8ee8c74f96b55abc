"""The blob store of an OCI image layout: ``blobs/<algorithm>/<encoded>``.

``put`` computes the digest itself while streaming into a temp file inside the layout, fsyncs and
renames: a blob is either absent or whole. Reads are verified: the reader checks size and digest at
EOF and raises ``DigestMismatch``. Callers never name blob paths.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from ..errors import BlobNotFound, DigestMismatch, InvalidDigest, LayoutError
from .digest import Digest
from .private import PrivateArea

CHUNK = 1 << 20
READ_BUFFER = 256 << 10
WRITEBACK = 8 << 20  # a blob writer starts the disk writes every this many bytes (see _start_writeback)
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Any:
    """Linux's sync_file_range(2) from the C library, or None where there is none."""
    import ctypes  # here, not at start-up: only a large blob needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range of the file to disk, without waiting for it: the
    fsync at commit then finds little left to do. Only a hint; errors come from that fsync."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_file(root: Path, prefix: str) -> tuple[Path, BinaryIO]:
    """A new temp file in the layout's temp dir, named with our pid so gc can tell stale ones."""
    tmp = PrivateArea(root).tmp
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / f"{prefix}-{os.getpid()}-{secrets.token_hex(6)}"
        return path, open(path, "xb")
    except OSError as exc:
        raise LayoutError(f"cannot write into layout {root}: {exc.strerror or exc}") from None


class VerifyingReader(io.RawIOBase):
    """Reads a blob and checks its size and digest at EOF."""

    def __init__(self, fileobj: IO[bytes], digest: Digest, size: int, name: str) -> None:
        self._f = fileobj
        self._digest = digest
        self._size = size
        self._name = name
        self._hasher = digest.hasher()
        self._seen = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._hasher.update(memoryview(buffer)[:n])
            self._seen += n
            if self._seen > self._size:
                raise DigestMismatch(f"{self._name} is corrupt: larger than its size {self._size}")
        elif not self._checked:
            self._checked = True
            if self._seen != self._size:
                raise DigestMismatch(f"{self._name} is corrupt: size {self._seen}, expected {self._size}")
            actual = Digest.from_hasher(self._hasher)
            if actual != self._digest:
                raise DigestMismatch(f"{self._name} is corrupt: content has digest {actual}")
        return n or 0

    def close(self) -> None:
        self._f.close()
        super().close()


class BlobStore:
    """Content-addressed blobs under ``<layout>/blobs``."""

    def __init__(self, root: Path, label: str | None = None) -> None:
        self.root = Path(root)
        self.label = label or f"oci:{self.root}"

    def _path(self, digest: Digest) -> Path:
        if not isinstance(digest, Digest):
            raise TypeError("BlobStore takes Digest values")
        if not digest.registered:
            raise InvalidDigest(
                f"unsupported digest {digest} in {self.label}: pybuild stores sha256 and sha512"
            )
        return self.root / "blobs" / digest.algorithm / digest.encoded

    def path_of(self, digest: Digest) -> Path:
        """Where a blob lives, for code that must read a damaged one as it is (gc looking for the
        digests a broken document names). Everything else reads through ``open``, verified."""
        return self._path(digest)

    def name(self, digest: Digest) -> str:
        return f"blob {digest} in {self.label}"

    def exists(self, digest: Digest) -> bool:
        return self._path(digest).is_file()

    def size(self, digest: Digest) -> int:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"{self.name(digest)} is missing") from None

    def digests(self) -> Iterator[Digest]:
        """Every blob present (files whose names are not digests are skipped)."""
        for algorithm in ("sha256", "sha512"):
            folder = self.root / "blobs" / algorithm
            if not folder.is_dir():
                continue
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        yield Digest(algorithm, entry.name)
                    except InvalidDigest:
                        continue

    @contextlib.contextmanager
    def open(self, digest: Digest, size: int | None = None) -> Iterator[BinaryIO]:
        """A reader of the blob that raises DigestMismatch at EOF if size or digest are wrong."""
        path = self._path(digest)
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise BlobNotFound(f"{self.name(digest)} is missing") from None
        except OSError as exc:
            raise LayoutError(f"cannot read {self.name(digest)}: {exc.strerror or exc}") from None
        expected = size if size is not None else os.fstat(f.fileno()).st_size
        # a small buffer: readers of large blobs read ahead or in chunks of their own
        reader = io.BufferedReader(VerifyingReader(f, digest, expected, self.name(digest)), READ_BUFFER)
        try:
            yield reader
        finally:
            reader.close()

    def read(self, digest: Digest, size: int | None = None, *, limit: int = 64 << 20) -> bytes:
        """A small blob's bytes, verified. Refuses blobs larger than ``limit`` before reading."""
        actual = self.size(digest)
        if size is not None and actual != size:
            raise DigestMismatch(f"{self.name(digest)} is corrupt: size {actual}, expected {size}")
        if actual > limit:
            raise LayoutError(f"{self.name(digest)} is too large to read as a document ({actual} bytes)")
        with self.open(digest, size) as f:
            data = f.read()
            f.read()  # reaching EOF again is harmless; the check ran on the first EOF
        return data

    def verify(self, digest: Digest, size: int | None = None) -> None:
        """Stream the whole blob, raising BlobNotFound or DigestMismatch."""
        with self.open(digest, size) as f:
            while f.read(CHUNK):
                pass

    def put(self, source: bytes | IO[bytes], algorithm: str = "sha256") -> tuple[Digest, int]:
        """Store bytes or a stream; returns (digest, size). Idempotent: bytes already present are not
        written again."""
        if isinstance(source, bytes | bytearray | memoryview):
            digest = Digest.of_bytes(bytes(source), algorithm)
            if self._path(digest).is_file() and self._path(digest).stat().st_size == len(source):
                return digest, len(source)
        with self.writer(algorithm) as w:
            if isinstance(source, bytes | bytearray | memoryview):
                w.write(bytes(source))
            else:
                while chunk := source.read(CHUNK):
                    w.write(chunk)
        assert w.digest is not None
        return w.digest, w.size

    def writer(self, algorithm: str = "sha256", expected: Digest | None = None) -> BlobWriter:
        """A file-like writer; on close the blob is committed under the digest it hashes to."""
        return BlobWriter(self, algorithm, expected)

    def remove(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(digest).unlink()


class BlobWriter:
    """Streams into a temp file, hashing; ``commit`` (or leaving the with block) fsyncs and renames."""

    def __init__(self, store: BlobStore, algorithm: str, expected: Digest | None) -> None:
        if algorithm not in ("sha256", "sha512"):
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
        self.store = store
        self.expected = expected
        self._hasher = hashlib.new(algorithm)
        self._path, self._f = temp_file(store.root, "blob")
        self.size = 0
        self._written_back = 0  # bytes handed to _start_writeback
        self._sealed: Digest | None = None
        self.digest: Digest | None = None

    def sha256_hasher(self) -> Any:
        """The sha256 object fed every byte written here, for a writer that needs the same digest (an
        uncompressed layer's diff_id): only to read (``hexdigest``), never to update. None unless this
        writer hashes with sha256 and nothing has been written yet."""
        return self._hasher if self._hasher.name == "sha256" and self.size == 0 else None

    def write(self, data: bytes) -> int:
        self._hasher.update(data)
        self._f.write(data)
        n = len(data)
        self.size += n
        if self.size - self._written_back >= WRITEBACK:
            self._f.flush()
            _start_writeback(self._f.fileno(), self._written_back, self.size - self._written_back)
            self._written_back = self.size
        return n

    def seal(self) -> Digest:
        """Finish writing and check the digest, without publishing the blob: ``commit`` does that.
        A sealed blob stays in the layout's temp dir, where nothing references it, until then; so
        several blobs can all be verified before any of them appears."""
        if self._sealed is not None:
            return self._sealed
        with self._aborting():
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            digest = Digest.from_hasher(self._hasher)
            if self.expected is not None and digest != self.expected:
                raise DigestMismatch(
                    f"{self.store.name(self.expected)} is corrupt: content has digest {digest}"
                )
        self._sealed = digest
        return digest

    def read_sealed(self, limit: int) -> bytes:
        """The bytes of a sealed (verified, not yet committed) blob of at most ``limit`` bytes."""
        if self._sealed is None:
            raise LayoutError("read_sealed before seal")
        if self.size > limit:
            raise LayoutError(f"{self.store.name(self._sealed)} is too large to read ({self.size} bytes)")
        try:
            return self._path.read_bytes()
        except OSError as exc:
            raise LayoutError(f"cannot read {self.store.name(self._sealed)}: {exc.strerror or exc}") from None

    def commit(self) -> Digest:
        digest = self.seal()
        with self._aborting():
            final = self.store._path(digest)
            if final.exists():
                # Idempotent: keep the existing blob, refresh its mtime.
                os.utime(final)
                self._path.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self._path, 0o644)
                os.rename(self._path, final)
                fsync_dir(final.parent)
        self.digest = digest
        return digest

    @contextlib.contextmanager
    def _aborting(self) -> Iterator[None]:
        """Any failure inside aborts the writer; an OSError becomes a LayoutError."""
        try:
            yield
        except OSError as exc:
            self.abort()
            raise LayoutError(f"cannot write a blob into {self.store.label}: {exc.strerror or exc}") from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()
        with contextlib.suppress(OSError):
            self._path.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class StagedBlobs:
    """Sealed blobs published together: ``commit`` them all at the end of the with block, and a
    failure inside it aborts every one, so none of them appears."""

    def __init__(self) -> None:
        self.writers: list[BlobWriter] = []

    def add(self, writer: BlobWriter) -> BlobWriter:
        self.writers.append(writer)
        return writer

    def commit(self) -> None:
        for writer in self.writers:
            writer.commit()

    def __enter__(self) -> StagedBlobs:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            for writer in self.writers:
                writer.abort()
