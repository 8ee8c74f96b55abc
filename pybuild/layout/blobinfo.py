"""The blob-info cache: what pybuild learnt about blobs, so that it never compresses a layer twice.

For an uncompressed layer (its digest is its diff_id) it remembers, per compression and level, the
digest and size of the compressed blob made from it; for any blob, the places it was last seen (an
OCI layout ``oci:/abs/dir`` or a registry repository ``docker://host/repo``). Like containers/image's
blob-info cache, but in the store's private area: ``.pybuild/blobinfo/<algorithm>-<encoded>.json``,
one small file per blob.

Only ever a hint. Callers check an answer before they use it (the blob is where the cache says,
with the recorded size, and is read verified), so a stale or wrong entry costs a recompression,
never a wrong blob. Entries carry a checksum: a damaged file reads as empty. Writes are atomic
(temp file, rename) and serialised by a lock, so concurrent builds never lose or tear an entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidDigest
from .digest import Digest
from .document import nesting_exceeds

CACHE_DIR = ".pybuild/blobinfo"
MAX_LOCATIONS = 16
_FILE_LIMIT = 64 << 10


@dataclass(frozen=True)
class Compressed:
    """A compressed blob made from an uncompressed layer."""

    digest: Digest
    size: int


def _checksum(entry: dict[str, Any]) -> str:
    body = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()


class BlobInfoCache:
    """The cache of one store (``root`` is the store's directory)."""

    def __init__(self, root: Path | str) -> None:
        self.dir = Path(root) / CACHE_DIR

    def _file(self, digest: Digest) -> Path:
        if not digest.registered:
            raise InvalidDigest(f"unsupported digest {digest}: the blob-info cache keeps sha256 and sha512")
        return self.dir / f"{digest.algorithm}-{digest.encoded}.json"

    def _read(self, digest: Digest) -> dict[str, Any]:
        try:
            with open(self._file(digest), "rb") as f:
                raw = f.read(_FILE_LIMIT + 1)
            if len(raw) > _FILE_LIMIT or nesting_exceeds(raw):
                return {}
            doc = json.loads(raw)
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        if not isinstance(doc, dict) or not isinstance(doc.get("entry"), dict):
            return {}
        entry: dict[str, Any] = doc["entry"]
        if doc.get("sha256") != _checksum(entry):
            return {}
        return entry

    @contextlib.contextmanager
    def _updating(self, digest: Digest) -> Iterator[dict[str, Any]]:
        """Read-modify-write one entry under the cache's lock; the change lands atomically."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            yield {}  # a cache that cannot be written is simply not updated
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entry = self._read(digest)
            yield entry
            data = json.dumps({"entry": entry, "sha256": _checksum(entry)}, sort_keys=True).encode()
            tmp = self.dir / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
            try:
                tmp.write_bytes(data)
                os.rename(tmp, self._file(digest))
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        finally:
            os.close(fd)

    # --- compressed variants of an uncompressed layer ------------------------------------------
    def compressed(self, diff_id: Digest, variant: str) -> Compressed | None:
        """The blob ``variant`` (e.g. ``gzip-6``) of the layer whose diff_id is ``diff_id``, if known."""
        found = self._read(diff_id).get("compressed", {}).get(variant)
        if not isinstance(found, dict):
            return None
        try:
            digest = Digest.parse(str(found.get("digest")))
            size = found.get("size")
        except InvalidDigest:
            return None
        if not isinstance(size, int) or size < 0 or not digest.registered:
            return None
        return Compressed(digest, size)

    def record_compressed(self, diff_id: Digest, variant: str, digest: Digest, size: int) -> None:
        """Remember that compressing the layer ``diff_id`` as ``variant`` gave ``digest``."""
        with self._updating(diff_id) as entry:
            variants = entry.get("compressed")
            if not isinstance(variants, dict):
                variants = entry["compressed"] = {}
            variants[variant] = {"digest": str(digest), "size": size}
        with self._updating(digest) as entry:
            entry["diff_id"] = str(diff_id)

    # --- where blobs were seen ---------------------------------------------------------------
    def locations(self, digest: Digest) -> list[str]:
        """Where ``digest`` was last seen (``oci:/dir``, ``docker://host/repo``), newest first."""
        found = self._read(digest).get("locations")
        if not isinstance(found, list):
            return []
        return [x for x in found if isinstance(x, str)]

    def record_location(self, digest: Digest, location: str) -> None:
        if self.locations(digest)[:1] == [location]:
            return  # known, and the newest: nothing to write
        with self._updating(digest) as entry:
            old = entry.get("locations")
            known = [x for x in old if isinstance(x, str) and x != location] if isinstance(old, list) else []
            entry["locations"] = [location, *known][:MAX_LOCATIONS]

    def forget_location(self, digest: Digest, location: str) -> None:
        """``digest`` is no longer at ``location`` (a stale entry was found)."""
        if location not in self.locations(digest):
            return
        with self._updating(digest) as entry:
            old = entry.get("locations")
            if isinstance(old, list):
                entry["locations"] = [x for x in old if x != location]
