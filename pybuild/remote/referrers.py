"""An image's OCI 1.1 referrers (SBOMs, provenance, signatures) carried along a copy, push or pull.

The referrers of an image are found in its layout (artifacts listed untagged in index.json, see
``layout.referrers``) or its registry (the referrers API, else the referrers tag), and so are
theirs, recursively (a signature of an SBOM), and those of an index's manifests. They go where the
image goes: into a layout (listed there the same way) or a registry (pushed by digest, then listed
by the registry or in the referrers tag).

A referrer names its subject by digest. When the image's manifest changes on the way (the store's
uncompressed layers gzipped for a registry or an ``oci:`` layout make a new manifest), a referrer
would point at a manifest that is not there: it is rewritten with ``subject`` set to the manifest
written, which makes it a new manifest with a new digest, and its own referrers follow it the same
way. A provenance statement (an in-toto document) whose subject names the old manifest is
rewritten to name the new one, since a verifier compares the two; the rest of its content, and an
SBOM's, is unchanged (the same config and diff_ids: the same files). A signature over the old
manifest no longer matches the new one, which is why pybuild never changes a manifest it does not
have to.

What a registry sends that breaks the spec (a referrers tag that is not an index, a listing too
large or nested too deep, a referrer whose subject is another image) is skipped with one warning
each, through ``warn``; the image is copied all the same.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import LayoutError
from ..errors import warn as warn_channel
from ..layout import (
    BlobInfoCache,
    Descriptor,
    Digest,
    Layout,
    Platform,
    copy_blobs,
    mediatype,
    read_index,
)
from ..layout import referrers as layout_referrers
from ..layout.referrers import list_artifact, referrer_descriptor, with_subject
from .reference import RegistryReference
from .registry import Progress, RegistryOptions
from .registry.client import Registry
from .registry.pull import no_progress, resolve_manifest
from .registry.push import Pusher
from .registry.referrers import BadReferrers, add_to_tag, fetch_referrer, list_referrers

#: how many levels of referrers of referrers are followed; how many referrers one copy carries
DEPTH = 8
COUNT = 1000

Warn = Callable[[str], None]


def log_warning(message: str) -> None:
    """The default ``warn``: the one warning channel (the CLI prints it as a ``warning:`` line)."""
    warn_channel(message)


def subjects(layout: Layout, desc: Descriptor, depth: int = 0) -> list[Descriptor]:
    """``desc`` and, for an index, every manifest and index below it: whatever referrers may name."""
    out = [desc]
    if desc.media_type in mediatype.INDEXES and depth < DEPTH:
        for child in read_index(layout, desc).manifests:
            if child.media_type in mediatype.MANIFESTS | mediatype.INDEXES:
                out += subjects(layout, child, depth + 1)
    return out


def unchanged(layout: Layout, desc: Descriptor) -> dict[Digest, Descriptor]:
    """The subjects of an image copied as it is: each one is itself at the destination."""
    return {d.digest: d for d in subjects(layout, desc)}


#: (the subject's digest where referrers are found, what it is where they go) -> the referrer written
#: and what it is where it went, or None when it was skipped (with a warning)
Visit = Callable[[Descriptor, Digest, Descriptor], Descriptor | None]


def _walk(
    starts: dict[Digest, Descriptor], listing: Callable[[Digest], list[Descriptor]], visit: Visit, warn: Warn
) -> list[Descriptor]:
    """Breadth first through the referrers of ``starts``, theirs, and so on (``DEPTH`` levels, ``COUNT``
    referrers at most, each once); what ``visit`` wrote."""
    queue = [(old, new, 0) for old, new in starts.items()]
    seen: set[Digest] = set(starts)
    written: list[Descriptor] = []
    while queue:
        old_subject, new_subject, depth = queue.pop(0)
        for entry in listing(old_subject):
            if entry.digest in seen:
                continue
            seen.add(entry.digest)
            if len(written) >= COUNT:
                warn(f"more than {COUNT} referrers; the rest are left")
                return written
            new = visit(entry, old_subject, new_subject)
            if new is None:
                continue
            written.append(new)
            if depth + 1 < DEPTH:
                queue.append((entry.digest, new, depth + 1))
    return written


# --- from a registry ---------------------------------------------------------------------------


def fetch_referrers(
    registry: Registry,
    repository: str,
    roots: list[Digest],
    layout: Layout,
    *,
    warn: Warn = log_warning,
    progress: Progress | None = None,
) -> list[Descriptor]:
    """Fetch the referrers of ``roots`` (and theirs) from ``repository`` into ``layout``, each listed
    there untagged; returns them as listed. Bad ones are skipped with a warning."""
    what = f"pulling referrers from {repository}"

    def listing(subject: Digest) -> list[Descriptor]:
        try:
            return list_referrers(registry, repository, subject, what, warn)
        except BadReferrers as exc:
            warn(f"{exc}; none taken")
            return []

    def fetch(entry: Descriptor, subject: Digest, _where: Descriptor) -> Descriptor | None:
        try:
            with layout.writing():
                _, desc = fetch_referrer(
                    registry, repository, entry, subject, layout, what, progress or no_progress
                )
                list_artifact(layout, desc)
        except BadReferrers as exc:
            warn(f"{exc}; skipped")
            return None
        return desc

    starts = {root: Descriptor(mediatype.OCI_MANIFEST, root, 0) for root in roots}  # (only the digest counts)
    return _walk(starts, listing, fetch, warn)


# --- to a destination --------------------------------------------------------------------------


class Destination(Protocol):
    def put(self, src: Layout, old: Descriptor, raw: bytes, new: Descriptor, subject: Digest) -> None:
        """Write the referrer ``new`` (bytes ``raw``; ``old`` in ``src`` before any rewrite, whose
        blobs it shares) of ``subject``."""


@dataclass
class LayoutDestination:
    layout: Layout

    def put(self, src: Layout, old: Descriptor, raw: bytes, new: Descriptor, subject: Digest) -> None:
        dst = self.layout
        with dst.writing():
            if src.root != dst.root:
                # as it is: the referrer and all below it; rewritten: what it references (its
                # blobs, or an index's manifests), then the new bytes
                for desc in [old] if new.digest == old.digest else _below(src, old, raw):
                    copy_blobs(src, dst, desc)
            if not dst.blobs.exists(new.digest):
                dst.blobs.put(raw, new.digest.algorithm)
            list_artifact(dst, referrer_descriptor(raw, new, f"referrer {new.digest} in {dst.label}"))


def _below(layout: Layout, desc: Descriptor, raw: bytes) -> list[Descriptor]:
    """What the manifest or index ``raw`` references (not its subject)."""
    from ..layout import Index, Manifest

    what = f"referrer {desc.digest} in {layout.label}"
    if desc.media_type in mediatype.INDEXES:
        return list(Index.parse(raw, what).manifests)
    manifest = Manifest.parse(raw, what, lenient=True)
    return [manifest.config, *manifest.layers]


class RegistryDestination:
    """Referrers pushed into one repository: by digest, then listed in the referrers tag unless the
    registry answered ``OCI-Subject`` (it has the referrers API)."""

    def __init__(self, pusher: Pusher, warn: Warn) -> None:
        self.pusher = pusher
        self.warn = warn

    def put(self, src: Layout, old: Descriptor, raw: bytes, new: Descriptor, subject: Digest) -> None:
        pusher = self.pusher
        processed = pusher.push_tree(src, old, top=False, raw=raw)
        if processed == str(subject):
            return
        listed = referrer_descriptor(raw, new, f"referrer {new.digest}")
        try:
            add_to_tag(pusher.registry, pusher.repository, subject, listed, pusher.what)
        except BadReferrers as exc:
            self.warn(f"{exc}; {new.digest} is pushed but not listed there")


def carry_referrers(
    src: Layout, moved: dict[Digest, Descriptor], dest: Destination, *, warn: Warn = log_warning
) -> list[Descriptor]:
    """Write the referrers in ``src`` of each subject in ``moved`` (old digest -> the descriptor it
    has at the destination) to ``dest``, and theirs, recursively; a referrer whose subject moved is
    rewritten to name the new one. Returns the referrers written (their new descriptors)."""

    def listing(subject: Digest) -> list[Descriptor]:
        try:
            return layout_referrers(src, subject)
        except LayoutError as exc:
            warn(f"cannot list the referrers of {subject} in {src.label}: {exc}")
            return []

    staging = _Staging(src)

    def put(ref: Descriptor, old_subject: Digest, new_subject: Descriptor) -> Descriptor | None:
        try:
            raw = src.blobs.read(ref.digest, ref.size)
            origin = src
            if new_subject.digest != old_subject:
                raw = with_subject(raw, ref, new_subject, f"referrer {ref.digest} in {src.label}")
                raw, origin = staging.statement_moved(ref, raw, old_subject, new_subject.digest)
            new = Descriptor(ref.media_type, Digest.of_bytes(raw, ref.digest.algorithm), len(raw))
            dest.put(origin, ref, raw, new, new_subject.digest)
        except (LayoutError, BadReferrers) as exc:
            warn(f"referrer {ref.digest} in {src.label} skipped: {exc}")
            return None
        return new

    try:
        return _walk(moved, listing, put, warn)
    finally:
        staging.remove()


class _Staging:
    """A temporary layout for the provenance statements rewritten on the way (made when the first
    one is, so a carry that rewrites none touches no disk): the rewritten referrer's blobs are read
    from there."""

    def __init__(self, src: Layout) -> None:
        self.src = src
        self.where: Path | None = None
        self.layout: Layout | None = None

    def remove(self) -> None:
        if self.where is not None:
            shutil.rmtree(self.where, ignore_errors=True)
            self.where = self.layout = None

    def statement_moved(self, ref: Descriptor, raw: bytes, old: Digest, new: Digest) -> tuple[bytes, Layout]:
        """The referrer manifest ``raw`` (``ref`` in ``src``, its subject already ``new``) and the
        layout its blobs are in: a provenance statement naming ``old`` is rewritten to name ``new``."""
        from ..layout import Manifest
        from ..layout.referrers import IN_TOTO_JSON, MAX_DOCUMENT, with_statement_subject

        what = f"referrer {ref.digest} in {self.src.label}"
        if ref.media_type != mediatype.OCI_MANIFEST:
            return raw, self.src
        manifest = Manifest.parse(raw, what, lenient=True)
        layers = manifest.layers
        if manifest.to_dict().get("artifactType") != IN_TOTO_JSON or len(layers) != 1:
            return raw, self.src
        layer = layers[0]
        if layer.media_type != IN_TOTO_JSON or layer.size > MAX_DOCUMENT:
            return raw, self.src
        statement = with_statement_subject(
            self.src.blobs.read(layer.digest, layer.size), old, new, f"{what}: statement {layer.digest}"
        )
        if statement is None:
            return raw, self.src
        if self.layout is None:
            self.where = Path(tempfile.mkdtemp(prefix="pybuild-referrers-"))
            self.layout = Layout.create(self.where / "staging")
        staging = self.layout
        copy_blobs(self.src, staging, manifest.config)
        written = Digest.of_bytes(statement, layer.digest.algorithm)
        if not staging.blobs.exists(written):
            staging.blobs.put(statement, written.algorithm)

        def change(doc: dict[str, object]) -> None:
            doc["layers"] = [{**layer.to_dict(), "digest": str(written), "size": len(statement)}]

        return manifest.changed(change).to_bytes(), staging


def push_referrers(
    src: Layout,
    moved: dict[Digest, Descriptor],
    ref: RegistryReference,
    *,
    options: RegistryOptions | None = None,
    progress: Progress | None = None,
    cache: BlobInfoCache | None = None,
    warn: Warn = log_warning,
) -> list[Descriptor]:
    """``carry_referrers`` to the repository ``ref`` names."""
    if not any(layout_referrers(src, old) for old in moved):
        return []
    pusher = Pusher.open(ref, options, progress, cache)
    try:
        return carry_referrers(src, moved, RegistryDestination(pusher, warn), warn=warn)
    finally:
        pusher.registry.close()


def remote_referrers(
    ref: RegistryReference,
    *,
    platform: Platform | None = None,
    options: RegistryOptions | None = None,
    artifact_type: str | None = None,
    warn: Warn = log_warning,
) -> list[tuple[Digest, Descriptor]]:
    """(subject, referrer) for the referrers of the image ``ref`` names in its registry: those of
    the index a tag names and of the manifest chosen from it for ``platform``, as listed by the
    referrers API or the referrers tag (``artifact_type``'s only, when given)."""
    registry = (options or RegistryOptions()).registry(ref.registry)
    what = f"listing the referrers of {ref.short}"
    try:
        top, _ = registry.get_manifest(ref, what)
        chosen = top
        if top.media_type in mediatype.INDEXES:
            chosen, _ = resolve_manifest(registry, ref.with_digest(top.digest), platform, what)
        found: list[tuple[Digest, Descriptor]] = []
        for subject in dict.fromkeys([top.digest, chosen.digest]):
            try:
                listed = list_referrers(registry, ref.repository, subject, what, warn, artifact_type)
            except BadReferrers as exc:
                warn(f"{exc}; none listed")
                continue
            found += [(subject, r) for r in listed]
        return found
    finally:
        registry.close()
