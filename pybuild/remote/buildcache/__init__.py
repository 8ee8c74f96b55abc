"""The shared build cache: step records kept in a registry repository or an OCI layout, for builds
on other machines (CI runners that start with an empty store).

A cache is named as buildah's ``--cache-from``/``--cache-to`` name it, ``HOST[:PORT]/PATH`` (a
repository; ``docker://`` may be written before it), or ``oci:DIR`` (a layout that a pipeline
saves and restores between jobs). Each step record is one entry, an OCI manifest tagged
``pybuild-cache-<key>`` (see ``entry``): a registry's or a layout's own tags, so entries written at
the same time by different builds never replace each other, other tools can copy them and
registries can garbage-collect them.

``open_cache`` gives a :class:`CacheRepository` (``registry.RegistryCache`` or
``layout.LayoutCache``): ``lookup`` one key (a HEAD, then the manifest, which holds the record, when it is
there), ``fetch`` an entry's layer into a store (verified: digest and diff_id), ``export`` an entry
(blobs first, the tag last), ``prune`` old entries. The client code loads only when a cache is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ...errors import UsageError
from ...layout import BlobInfoCache, Descriptor, Digest, Layout, parse_name
from .entry import RECORD_TYPE, TAG_PREFIX, BadEntry, Entry, key_of, tag_of

if TYPE_CHECKING:
    from ..registry import RegistryOptions

__all__ = [
    "RECORD_TYPE",
    "TAG_PREFIX",
    "BadEntry",
    "CacheRef",
    "CacheRepository",
    "Entry",
    "PruneResult",
    "key_of",
    "open_cache",
    "parse_cache_ref",
    "prune_cache",
    "tag_of",
]


@dataclass(frozen=True)
class CacheRef:
    """A cache: a registry repository (``host``, ``repository``) or an OCI layout (``path``)."""

    host: str = ""
    repository: str = ""
    path: Path | None = None

    @property
    def label(self) -> str:
        return f"oci:{self.path}" if self.path is not None else f"{self.host}/{self.repository}"


def parse_cache_ref(text: str, flag: str = "--cache-from") -> CacheRef:
    """``HOST[:PORT]/PATH`` (or ``docker://HOST/PATH``) or ``oci:DIR``, as --cache-from, --cache-to
    and ``cache prune`` take them: a repository, never an image (no tag, no digest)."""
    if text.startswith("oci:"):
        path = text[len("oci:") :]
        if not path:
            raise UsageError(f"{flag} {text!r}: expected oci:DIR")
        return CacheRef(path=Path(path).absolute())
    rest = text.removeprefix("docker://")
    if "://" in rest or "/" not in rest:
        raise UsageError(f"{flag} {text!r}: expected a repository HOST/PATH (or oci:DIR)")
    try:
        name = parse_name(rest)
    except UsageError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None
    if name.digest is not None or rest.rsplit("/", 1)[-1].count(":") or "@" in rest:
        raise UsageError(f"{flag} {text!r}: a cache is a repository: leave out the tag or digest")
    return CacheRef(host=name.domain, repository=name.path)


@dataclass
class PruneResult:
    removed: int = 0
    kept: int = 0
    skipped: int = 0  # tags with the entries' prefix that are no entry pybuild wrote


class CacheRepository(Protocol):
    """Where entries live: a registry repository or an OCI layout. Every method raises a
    PybuildError on a fault (unreachable, refused, damaged); the step engine turns it into a
    warning and builds as if the cache were not there."""

    label: str

    def lookup(self, key: str, not_before: datetime | None) -> Entry | None:
        """``key``'s entry when it is there and written after ``not_before``; its layer is there too."""

    def has(self, key: str, not_before: datetime | None) -> bool:
        """Whether ``key``'s entry is there (written after ``not_before``)."""

    def fetch(self, entry: Entry, store: Layout) -> None:
        """Put the entry's layer blob into ``store``, verified (digest and diff_id)."""

    def export(
        self,
        key: str,
        record: dict[str, Any],
        layer: tuple[Descriptor, Digest] | None,
        store: Layout,
        ensure: Any,
    ) -> None:
        """Write ``key``'s entry: the layer (from ``store``: ``ensure()`` puts it there when it is
        not yet), then the manifest that holds the record, under its tag (last)."""

    def prune(self, older_than: datetime) -> PruneResult:
        """Remove the entries written before ``older_than``."""

    def close(self) -> None: ...


def open_cache(
    ref: CacheRef,
    *,
    options: RegistryOptions | None = None,
    blob_info: BlobInfoCache | None = None,
    staging: Layout | None = None,
    create: bool = False,
) -> CacheRepository:
    """The cache ``ref`` names. ``staging`` holds what an export compresses on its way to a registry;
    ``create`` makes a missing oci: layout (for --cache-to)."""
    if ref.path is not None:
        from .layout import LayoutCache

        return LayoutCache(ref.path, blob_info, create=create)
    from .registry import RegistryCache

    return RegistryCache(ref, options, blob_info, staging)


def prune_cache(ref: CacheRef, older_than: datetime, options: RegistryOptions | None = None) -> PruneResult:
    """``pybuild cache prune``: remove the entries of ``ref`` written before ``older_than``."""
    cache = open_cache(ref, options=options)
    try:
        return cache.prune(older_than)
    finally:
        cache.close()


def known_keys(tags: list[str]) -> list[tuple[str, str]]:
    """(tag, key) of each tag that names an entry."""
    out = []
    for tag in tags:
        key = key_of(tag)
        if key is not None:
            out.append((tag, key))
    return out
