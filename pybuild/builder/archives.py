"""ADD's local archives: tar, optionally compressed with gzip, bzip2, xz or zstd, recognised by content
(as Docker does), never by file name."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from typing import IO, Any

import zstandard

MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def _decompressor(kind: str, f: IO[bytes]) -> Any:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(f)
    if kind == "xz":
        return lzma.LZMAFile(f)
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    return f


def _is_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def open_archive(f: IO[bytes]) -> IO[bytes] | None:
    """A reader of the uncompressed tar in ``f`` (seekable), or None when ``f`` holds no tar."""
    head = f.read(8)
    f.seek(0)
    kind = next((k for magic, k in MAGIC.items() if head.startswith(magic)), "none")
    try:
        probe = _decompressor(kind, f).read(512)
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError):
        f.seek(0)
        return None
    f.seek(0)
    if not _is_tar(probe):
        return None
    return io.BufferedReader(_decompressor(kind, f), 1 << 20) if kind != "none" else f
