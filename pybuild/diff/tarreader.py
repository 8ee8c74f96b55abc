"""A streaming tar reader for the applier: a fast parser for the common ustar, PAX and GNU long-name
headers, and ``tarfile`` for the rest of the stream from the first header it does not handle
(sparse files, global PAX headers, unknown types, repeated extended headers).

It reads the stream strictly forward, holds at most one extended header (capped in size) and the
bytes asked for, and turns every malformed or truncated header into a one-line ``LayerError``.
"""

from __future__ import annotations

import math
import re
import tarfile
from typing import Any, BinaryIO, cast

from ..errors import LayerError, UnsafeLayer

BLOCK = 512
SKIP_CHUNK = 1 << 20
MAX_EXTENDED = 16 << 20  # a PAX or GNU long-name header larger than this is refused

REGTYPE, AREGTYPE, CONTTYPE = b"0", b"\0", b"7"
LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE = b"1", b"2", b"3", b"4", b"5", b"6"
REGULAR = frozenset((REGTYPE, AREGTYPE, CONTTYPE))
SIMPLE = frozenset((REGTYPE, AREGTYPE, CONTTYPE, LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE))
GNU_TYPES = frozenset((b"L", b"K", b"S"))
XATTR = "SCHILY.xattr."
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")


def member_parts(name: str) -> list[str]:
    """The path components of a tar member name, with "." and empty parts dropped; ".." refused."""
    if "\0" in name:
        raise UnsafeLayer(f"entry {name!r} has a NUL byte in its name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"entry {name!r} climbs out of the root with '..'")
    return parts


class _Corrupt(Exception):
    """A malformed header (the reader adds what and where)."""


class _Fallback(Exception):
    """A header the fast parser leaves to tarfile."""


class TarEntry:
    """One member: what the applier needs of a tar header (after PAX and GNU long names)."""

    __slots__ = (
        "devmajor",
        "devminor",
        "gid",
        "linkname",
        "mode",
        "mtime",
        "name",
        "size",
        "type",
        "uid",
        "xattrs",
    )

    def __init__(
        self,
        name: str,
        type: bytes,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        mtime: int,
        linkname: str,
        devmajor: int,
        devminor: int,
        xattrs: dict[str, bytes] | None,
    ) -> None:
        self.name = name
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime = mtime
        self.linkname = linkname
        self.devmajor = devmajor
        self.devminor = devminor
        self.xattrs = xattrs

    def isreg(self) -> bool:
        return self.type in REGULAR

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    @classmethod
    def from_tarinfo(cls, info: tarfile.TarInfo) -> TarEntry:
        xattrs = {
            key[len(XATTR) :]: value.encode("utf-8", "surrogateescape")
            for key, value in info.pax_headers.items()
            if key.startswith(XATTR)
        }
        kind = info.type
        if info.isreg() and kind not in REGULAR:
            kind = REGTYPE  # GNU sparse: tarfile's reader gives the whole file
        return cls(
            info.name,
            kind,
            info.mode,
            info.uid,
            info.gid,
            info.size if info.isreg() else 0,
            _mtime(info.mtime),
            info.linkname,
            info.devmajor,
            info.devminor,
            xattrs or None,
        )


def _mtime(value: float) -> int:
    return int(value) if math.isfinite(value) else 0


def _nts(field: bytes) -> str:
    end = field.find(b"\0")
    if end != -1:
        field = field[:end]
    return field.decode("utf-8", "surrogateescape")


def _nti(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        if field[0] not in (0o200, 0o377):
            raise _Corrupt("invalid number field")
        n = int.from_bytes(field[1:], "big")
        if field[0] == 0o377:
            n = -(256 ** (len(field) - 1) - n)
        return n
    end = field.find(b"\0")
    if end != -1:
        field = field[:end]
    field = field.strip()
    if not field:
        return 0
    try:
        return int(field, 8)
    except ValueError:
        raise _Corrupt("invalid number field") from None


def _checksum_ok(buf: bytes) -> bool:
    want = _nti(buf[148:156])
    field = buf[148:156]
    unsigned = 256 + sum(buf) - sum(field)
    if want == unsigned:
        return True
    # some old writers summed signed chars
    signed = unsigned - 256 * (sum(1 for b in buf if b >= 128) - sum(1 for b in field if b >= 128))
    return want == signed


def _pax_records(buf: bytes) -> dict[str, str]:
    """PAX records, parsed the way tarfile does (values decoded as UTF-8, undecodable bytes kept)."""
    out: dict[str, str] = {}
    pos = 0
    while match := _PAX_RECORD.match(buf, pos):
        length = int(match.group(1))
        if length == 0:
            raise _Corrupt("invalid PAX header")
        key = match.group(2).decode("utf-8", "surrogateescape")
        out[key] = buf[match.end(2) + 1 : match.start(1) + length - 1].decode("utf-8", "surrogateescape")
        pos += length
    return out


class _Chain:
    """``head`` and then the rest of ``stream``: hands tarfile the headers already read."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self.head = head
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0 or n >= len(self.head):
                out, self.head = self.head, b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        data: bytes = self.stream.read(n)
        return data


class TarReader:
    """``next()`` gives the next TarEntry (None at the end); ``read(n)`` reads its data."""

    def __init__(self, stream: BinaryIO, what: str) -> None:
        self._read = stream.read
        self._stream = stream
        self.what = what
        self._remaining = 0  # data bytes of the current entry not read yet
        self._padding = 0
        self._entry: TarEntry | None = None
        self._tar: tarfile.TarFile | None = None  # once the stream is handed to tarfile
        self._data: Any = None  # tarfile's reader of the current entry
        self._first = True
        self.fell_back = False

    # --- raw reading ---------------------------------------------------------------------------
    def _exact(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) == n or not data:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = self._read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n > 0:
            data = self._read(min(n, SKIP_CHUNK))
            if not data:
                raise LayerError(f"{self.what} is truncated or corrupt: unexpected end of data")
            n -= len(data)

    # --- entries -------------------------------------------------------------------------------
    def next(self) -> TarEntry | None:
        if self._tar is not None:
            return self._next_tarfile()
        if self._entry is not None:
            self._skip(self._remaining + self._padding)
            self._entry = None
        consumed: list[bytes] = []
        try:
            entry = self._parse(consumed)
        except _Corrupt as exc:
            if self._first:
                raise LayerError(f"{self.what} is not a tar stream: {exc}") from None
            raise LayerError(f"{self.what} is corrupt: {exc}") from None
        except _Fallback:
            self.fell_back = True
            try:
                self._tar = tarfile.open(  # noqa: SIM115
                    fileobj=cast(Any, _Chain(b"".join(consumed), self._stream)),
                    mode="r|",
                    errorlevel=2,
                )
            except tarfile.TarError as exc:
                raise LayerError(f"{self.what} is not a tar stream: {exc}") from None
            return self._next_tarfile()
        self._first = False
        if entry is not None:
            self._entry = entry
            self._remaining = entry.size
            self._padding = -entry.size % BLOCK
        return entry

    def _parse(self, consumed: list[bytes]) -> TarEntry | None:
        name: str | None = None
        linkname: str | None = None
        pax: dict[str, str] | None = None
        while True:
            buf = self._exact(BLOCK)
            consumed.append(buf)
            if not buf:
                if consumed[:-1]:
                    raise LayerError(f"{self.what} is truncated or corrupt: unexpected end of data")
                if self._first:
                    raise _Corrupt("empty file")
                return None
            if len(buf) != BLOCK:
                raise LayerError(f"{self.what} is truncated or corrupt: truncated header")
            if buf.count(0) == BLOCK:
                if len(consumed) > 1:
                    raise _Corrupt("an extended header is followed by the end of the archive")
                return None
            if not _checksum_ok(buf):
                raise _Corrupt("bad checksum")
            kind = buf[156:157]
            size = _nti(buf[124:136])
            if kind in (b"x", b"L", b"K"):
                if size < 0 or size > MAX_EXTENDED:
                    raise _Corrupt(f"extended header of {size} bytes")
                if (kind == b"x" and pax is not None) or len(consumed) > 3:
                    raise _Fallback
                data = self._exact(size + (-size % BLOCK))
                consumed.append(data)
                if len(data) != size + (-size % BLOCK):
                    raise LayerError(f"{self.what} is truncated or corrupt: unexpected end of data")
                data = data[:size]
                if kind == b"x":
                    pax = _pax_records(data)
                    if any(key.startswith("GNU.sparse.") for key in pax):
                        raise _Fallback
                elif kind == b"L":
                    if name is not None:
                        raise _Fallback
                    name = _nts(data)
                else:
                    if linkname is not None:
                        raise _Fallback
                    linkname = _nts(data)
                continue
            if kind not in SIMPLE:
                raise _Fallback
            return self._member(buf, kind, size, name, linkname, pax)

    def _member(
        self,
        buf: bytes,
        kind: bytes,
        size: int,
        name: str | None,
        linkname: str | None,
        pax: dict[str, str] | None,
    ) -> TarEntry:
        own_name = _nts(buf[0:100])
        if kind == AREGTYPE and own_name.endswith("/"):
            kind = DIRTYPE
        if kind == DIRTYPE:
            own_name = own_name.rstrip("/")
            if name is not None:
                name = name.removesuffix("/")
        prefix = _nts(buf[345:500])
        if prefix:
            own_name = prefix + "/" + own_name
        uid = _nti(buf[108:116])
        gid = _nti(buf[116:124])
        mtime: float = _nti(buf[136:148])
        xattrs: dict[str, bytes] | None = None
        if name is None:
            name = own_name
        long_link = linkname is not None
        if linkname is None:
            linkname = _nts(buf[157:257])
        if pax:
            if ("path" in pax and name is not own_name) or ("linkpath" in pax and long_link):
                raise _Fallback  # both a GNU long name and a PAX one: tarfile's order decides
            for key, value in pax.items():
                if key == "path":
                    name = value.rstrip("/")
                elif key == "linkpath":
                    linkname = value
                elif key == "size":
                    size = _int(value)
                elif key == "mtime":
                    mtime = _float(value)
                elif key == "uid":
                    uid = _int(value)
                elif key == "gid":
                    gid = _int(value)
                elif key.startswith(XATTR):
                    if xattrs is None:
                        xattrs = {}
                    xattrs[key[len(XATTR) :]] = value.encode("utf-8", "surrogateescape")
        if kind not in REGULAR:
            size = 0  # only regular files carry data (as tarfile reads them)
        elif size < 0:
            raise _Corrupt(f"entry {name!r} has a negative size")
        return TarEntry(
            name,
            kind,
            _nti(buf[100:108]),
            uid,
            gid,
            size,
            _mtime(mtime),
            linkname,
            _nti(buf[329:337]),
            _nti(buf[337:345]),
            xattrs,
        )

    def _next_tarfile(self) -> TarEntry | None:
        assert self._tar is not None
        tar = self._tar
        try:
            info = tar.next()
        except tarfile.TarError as exc:
            raise LayerError(f"{self.what} is corrupt: {exc}") from None
        except (EOFError, OSError) as exc:
            raise LayerError(f"{self.what} is truncated or corrupt: {exc}") from None
        if info is None:
            return None
        setattr(tar, "members", [])  # noqa: B010 - keep memory flat over many entries
        entry = TarEntry.from_tarinfo(info)
        self._data = tar.extractfile(info) if entry.isreg() else None
        self._entry = entry
        return entry

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current entry's data (b"" once it is all read)."""
        if self._tar is not None:
            if self._data is None:
                return b""
            try:
                data: bytes = self._data.read(n)
            except (tarfile.TarError, EOFError) as exc:
                raise LayerError(f"{self.what} is truncated or corrupt: {exc}") from None
            return data
        n = min(n, self._remaining)
        if n <= 0:
            return b""
        data = self._exact(n)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
