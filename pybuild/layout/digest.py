"""Digests: ``algorithm:encoded``, validated when made, before anything can turn one into a path."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidDigest

# descriptor.md's grammar: algorithm-component ([+._-] algorithm-component)* ":" encoded
_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
_ENCODED = re.compile(r"[a-zA-Z0-9=_-]+")
# Registered algorithms: exact lowercase hex of a fixed length. Only these name blobs on disk.
REGISTERED = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A content digest such as ``sha256:e3b0...``.

    ``Digest.parse`` accepts only the registered algorithms (sha256, sha512) with their exact
    lowercase hex length. ``Digest.parse(s, any_algorithm=True)`` also accepts other algorithms that
    fit the spec's grammar (for reading descriptors); those are never ``registered`` and the blob
    store refuses them.
    """

    algorithm: str
    encoded: str

    def __post_init__(self) -> None:
        shown = f"{self.algorithm}:{self.encoded}"[:100]
        if not isinstance(self.algorithm, str) or not isinstance(self.encoded, str):
            raise InvalidDigest(f"invalid digest {shown!r}: not a string")
        if not _ALGORITHM.fullmatch(self.algorithm):
            raise InvalidDigest(f"invalid digest {shown!r}: bad algorithm {self.algorithm[:40]!r}")
        if not _ENCODED.fullmatch(self.encoded):
            raise InvalidDigest(f"invalid digest {shown!r}: bad encoded part")
        length = REGISTERED.get(self.algorithm)
        if length is not None and (len(self.encoded) != length or not _HEX.fullmatch(self.encoded)):
            raise InvalidDigest(
                f"invalid digest {shown!r}: {self.algorithm} needs {length} lowercase hex characters"
            )

    @classmethod
    def parse(cls, value: Any, *, any_algorithm: bool = False) -> Digest:
        if not isinstance(value, str):
            raise InvalidDigest(f"invalid digest {value!r}: not a string")
        algorithm, sep, encoded = value.partition(":")
        if not sep:
            raise InvalidDigest(f"invalid digest {value[:100]!r}: expected ALGORITHM:HEX")
        digest = cls(algorithm, encoded)
        if not any_algorithm and not digest.registered:
            raise InvalidDigest(
                f"unsupported digest {value[:100]!r}: pybuild accepts sha256 and sha512",
            )
        return digest

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def from_hasher(cls, hasher: Any) -> Digest:
        """The digest of a finished ``hashlib`` object (sha256 or sha512)."""
        return cls(hasher.name, hasher.hexdigest())

    @property
    def registered(self) -> bool:
        return self.algorithm in REGISTERED

    def hasher(self) -> Any:
        """A new ``hashlib`` object of this digest's algorithm (registered algorithms only)."""
        if not self.registered:
            raise InvalidDigest(f"unsupported digest algorithm {self.algorithm!r} in {self}")
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        return self.encoded[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"
