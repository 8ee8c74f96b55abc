"""OCI 1.1 referrers over the distribution API (distribution-spec v1.1).

Listing: ``GET /v2/<name>/referrers/<digest>[?artifactType=]`` answers an image index of the
manifests whose ``subject`` is that digest; a 404 there means the registry has no referrers API,
and the client falls back to the *referrers tag*: ``<alg>-<encoded>`` (truncated to 32 and 64
characters, other characters than a tag allows made ``-``), an image index the clients keep.

Pushing: a manifest with a ``subject`` goes up by digest. A registry that processed the subject
says so with the ``OCI-Subject`` header; otherwise the client adds the manifest's descriptor to the
referrers tag's index: read it, append, keep every entry already there, put it back.

What comes back is checked as any other document (size and depth limits, schema, media types,
registered digests). What breaks the spec is a :class:`BadReferrers`: the caller reports it as a
warning and carries on with the image.
"""

from __future__ import annotations

import random
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import AuthError, PybuildError, RegistryError
from ...layout import (
    BlobWriter,
    Descriptor,
    Digest,
    Index,
    Layout,
    Manifest,
    StagedBlobs,
    dump_json,
    load_json,
    mediatype,
)
from ...layout.document import DOCUMENT_LIMIT
from ...layout.referrers import MAX_DOCUMENT, referrer_descriptor
from ..reference import RegistryReference
from .client import ERROR_LIMIT, Registry
from .connection import ConnectionDropped, DeadlineExceeded, InvalidResponse, Response
from .pull import Progress, download

#: entries one listing may hold, over all its pages; pages one listing may take
LISTING_LIMIT = 4096
PAGE_LIMIT = 64
#: how often the referrers tag is read, merged and written before giving up
FALLBACK_ATTEMPTS = 6
#: how deeply an index referrer may nest indexes
INDEX_DEPTH = 4
_NOT_TAG = re.compile(r"[^a-zA-Z0-9_.-]")
_TRANSPORT = (ConnectionDropped, DeadlineExceeded, InvalidResponse)

Warn = Callable[[str], None]


class BadReferrers(RegistryError):
    """A registry's referrers listing, referrers tag or referrer is not what the spec says."""


def referrers_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    return _NOT_TAG.sub("-", f"{digest.algorithm[:32]}-{digest.encoded[:64]}")


def _read_document(resp: Response, where: str) -> bytes:
    """A document-sized body: a registry that sends more is refused as bad input, not as a failure
    of the connection."""
    try:
        return resp.read(DOCUMENT_LIMIT)
    except _TRANSPORT:
        raise
    except RegistryError as exc:
        raise BadReferrers(f"{where}: {str(exc).split(': ')[-1]}") from None


def _parse_listing(raw: bytes, where: str, content_type: str | None = None) -> Index:
    """An image index, as the referrers API and the referrers tag must answer (``content_type``: the
    Content-Type it came with, if any)."""
    try:
        doc = load_json(raw, where, limit=DOCUMENT_LIMIT)
        media = doc.get("mediaType") if isinstance(doc, dict) else None
        media = media if isinstance(media, str) else content_type
        if media and media != mediatype.OCI_INDEX:
            raise BadReferrers(f"{where}: it is {media[:80]}, not an OCI image index")
        return Index.parse(raw, where)
    except BadReferrers:
        raise
    except PybuildError as exc:
        raise BadReferrers(str(exc)) from None


def _entries(index: Index, subject: Digest, where: str, warn: Warn) -> list[Descriptor]:
    """The listing's descriptors that can be referrers: manifests or indexes, by a digest pybuild
    verifies. Any other entry is skipped, with a warning."""
    out = []
    for desc in index.manifests:
        if desc.media_type not in mediatype.MANIFESTS | mediatype.INDEXES:
            warn(f"{where}: skipped {desc.digest}: {desc.media_type[:80]} is not a manifest or index")
        elif not desc.digest.registered:
            warn(f"{where}: skipped {str(desc.digest)[:100]}: unsupported digest")
        elif desc.digest == subject:
            warn(f"{where}: skipped {desc.digest}: it is the subject itself")
        else:
            out.append(desc)
    return out


def _pages(registry: Registry, repository: str, url: str, what: str) -> Iterator[Response]:
    """The referrers API's answers for ``url``, following ``Link: <...>; rel="next"``."""
    return registry.pages(
        url,
        scope=f"repository:{repository}:pull",
        what=what,
        headers={"Accept": mediatype.OCI_INDEX},
        error=BadReferrers,
        limit=PAGE_LIMIT,
        listing="the referrers listing",
    )


def list_referrers(
    registry: Registry,
    repository: str,
    subject: Digest,
    what: str,
    warn: Warn,
    artifact_type: str | None = None,
) -> list[Descriptor]:
    """The referrers of ``subject`` in ``repository`` (only ``artifact_type``'s when given): from the
    referrers API, else from the referrers tag (nothing when there is none). Raises BadReferrers
    when the answer breaks the spec."""
    where = f"registry {registry.host}: {what}: referrers of {subject}"
    query = f"?{urllib.parse.urlencode({'artifactType': artifact_type})}" if artifact_type else ""
    found: list[Descriptor] = []
    filtered = True
    for resp in _pages(registry, repository, f"/v2/{repository}/referrers/{subject}{query}", what):
        if resp.status == 404:
            resp.close()
            if found:
                raise BadReferrers(f"{where}: a later page of the listing is missing")
            return _from_tag(registry, repository, subject, what, warn, artifact_type)
        applied = (resp.header("OCI-Filters-Applied") or "").replace(" ", "").split(",")
        filtered = filtered and "artifactType" in applied
        content_type = (resp.header("Content-Type") or "").split(";")[0].strip()
        raw = _read_document(resp, where)
        found += _entries(_parse_listing(raw, where, content_type or None), subject, where, warn)
        if len(found) > LISTING_LIMIT:
            raise BadReferrers(f"{where}: more than {LISTING_LIMIT} referrers")
    if artifact_type and not filtered:  # the registry did not filter: the client does
        found = [d for d in found if d.artifact_type == artifact_type]
    return _unique(found)


def _unique(found: list[Descriptor]) -> list[Descriptor]:
    seen: set[Digest] = set()
    out = []
    for desc in found:
        if desc.digest not in seen:
            seen.add(desc.digest)
            out.append(desc)
    return out


def _read_tag(
    registry: Registry, repository: str, subject: Digest, what: str
) -> tuple[dict[str, Any], str | None]:
    """The referrers tag's index as JSON ({} when there is no such tag) and its ETag."""
    tag = referrers_tag(subject)
    where = f"registry {registry.host}: {what}: referrers tag {tag}"
    resp = registry.request(
        "GET",
        f"/v2/{repository}/manifests/{tag}",
        scope=f"repository:{repository}:pull",
        what=what,
        headers={"Accept": f"{mediatype.OCI_INDEX}, {mediatype.OCI_MANIFEST}, {mediatype.DOCKER_MANIFEST}"},
        ok=(200, 404),
    )
    if resp.status == 404:
        resp.read(ERROR_LIMIT)
        return {}, None
    etag = resp.header("ETag")
    content_type = (resp.header("Content-Type") or "").split(";")[0].strip()
    raw = _read_document(resp, where)
    index = _parse_listing(raw, where, content_type or None)  # size, depth, type, schema, descriptors
    return index.to_dict(), etag


def _from_tag(
    registry: Registry, repository: str, subject: Digest, what: str, warn: Warn, artifact_type: str | None
) -> list[Descriptor]:
    doc, _ = _read_tag(registry, repository, subject, what)
    if not doc:
        return []
    where = f"registry {registry.host}: {what}: referrers tag {referrers_tag(subject)}"
    found = _entries(Index.new(doc), subject, where, warn)
    if len(found) > LISTING_LIMIT:
        raise BadReferrers(f"{where}: more than {LISTING_LIMIT} referrers")
    completed = [_completed(registry, repository, d, what, where, warn) for d in _unique(found)]
    return [d for d in completed if d is not None and artifact_type in (None, d.artifact_type)]


def _completed(
    registry: Registry, repository: str, desc: Descriptor, what: str, where: str, warn: Warn
) -> Descriptor | None:
    """An entry of the referrers tag as the referrers API would list it. A tool that rewrites the
    index may drop ``artifactType`` (skopeo 1.9's ``copy --all`` does): it is read from the manifest
    again; None (with a warning) when that manifest cannot be read."""
    if desc.artifact_type is not None or desc.media_type not in mediatype.MANIFESTS:
        return desc
    try:
        found, raw = registry.get_manifest(
            RegistryReference(registry.host, repository, digest=desc.digest), what
        )
        return referrer_descriptor(raw, found, f"{where}: {desc.digest}")
    except (*_TRANSPORT, AuthError):
        raise
    except PybuildError as exc:
        warn(
            f"{where}: skipped {desc.digest}: {str(exc).removeprefix(f'registry {registry.host}: {what}: ')}"
        )
        return None


def add_to_tag(registry: Registry, repository: str, subject: Digest, listed: Descriptor, what: str) -> None:
    """Add ``listed`` (a referrer of ``subject``, as the referrers API lists it) to the referrers tag,
    keeping every entry already there (by digest: nothing is listed twice).

    A registry has no compare-and-swap for tags that every registry honours. The index is put with
    ``If-Match`` (its ETag when read) or ``If-None-Match: *`` (when there was none), which a registry
    that supports conditional requests refuses with 412 if another client changed the tag in
    between: then it is read and merged again. Otherwise (CNCF distribution ignores both headers)
    the tag is read back after the write; when another client's write replaced ours, our entry is
    missing and is merged in again. The race that remains: a client that read the tag before our
    write and writes after our read-back drops our entry, and nothing tells us (a client that reads
    its own write back, as pybuild does, restores its own entry, not ours). Only the referrers API,
    or a registry that honours the conditional headers, closes that window.
    """
    tag = referrers_tag(subject)
    where = f"registry {registry.host}: {what}: referrers tag {tag}"
    entry = listed.to_dict()
    for attempt in range(FALLBACK_ATTEMPTS):
        if attempt > 1:
            time.sleep(random.uniform(0.05, 0.2) * attempt)  # noqa: S311 - jitter against a competing writer, not a secret
        doc, etag = _read_tag(registry, repository, subject, what)
        manifests = list(doc.get("manifests", [])) if doc else []
        if any(m.get("digest") == entry["digest"] for m in manifests):
            return  # listed (already, or by our write that this read confirms)
        new = {**doc} if doc else {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX}
        new["manifests"] = [*manifests, entry]
        raw = dump_json(new)
        headers = {"Content-Type": mediatype.OCI_INDEX, "Content-Length": str(len(raw))}
        if etag:
            headers["If-Match"] = etag
        elif not doc:
            headers["If-None-Match"] = "*"
        resp = registry.request(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            scope=f"repository:{repository}:pull,push",
            what=what,
            headers=headers,
            body=lambda raw=raw: raw,  # type: ignore[misc]
            ok=(201, 412),
        )
        resp.read(ERROR_LIMIT)
    raise RegistryError(
        f"{where}: {listed.digest} could not be kept in it: it changed under {FALLBACK_ATTEMPTS} tries"
    )


def _check_blob(desc: Descriptor, where: str) -> None:
    if not desc.digest.registered:
        raise BadReferrers(f"{where}: unsupported digest {str(desc.digest)[:100]}")
    if desc.size > MAX_DOCUMENT:
        raise BadReferrers(f"{where}: blob {desc.digest} is {desc.size} bytes, more than {MAX_DOCUMENT}")


def fetch_referrer(
    registry: Registry,
    repository: str,
    listed: Descriptor,
    subject: Digest,
    layout: Layout,
    what: str,
    progress: Progress,
) -> tuple[bytes, Descriptor]:
    """Fetch the referrer ``listed`` and what it references into ``layout`` (verified; the blobs
    appear only once all are there) and check that its subject is ``subject``. Returns its bytes and
    its descriptor as the referrers API lists it; the caller lists it in index.json."""
    where = f"registry {registry.host}: {what}: referrer {listed.digest}"
    ref = RegistryReference(registry.host, repository, digest=listed.digest)
    with layout.writing(), StagedBlobs() as staged:
        raw, media_type, found_subject = _fetch_tree(registry, ref, layout, staged, what, progress, where, 0)
        if found_subject != subject:
            raise BadReferrers(
                f"{where}: it is listed as a referrer of {subject}, but its subject is "
                f"{found_subject if found_subject is not None else 'missing'}"
            )
        staged.commit()
        layout.blobs.put(raw, listed.digest.algorithm)
    desc = Descriptor(media_type, listed.digest, len(raw))
    try:
        return raw, referrer_descriptor(raw, desc, where)
    except PybuildError as exc:  # pragma: no cover - _fetch_tree parsed it already
        raise BadReferrers(str(exc)) from None


def _fetch_tree(
    registry: Registry,
    ref: RegistryReference,
    layout: Layout,
    staged: StagedBlobs,
    what: str,
    progress: Progress,
    where: str,
    depth: int,
) -> tuple[bytes, str, Digest | None]:
    """One manifest (its config and layers) or index (its manifests), fetched and staged; (bytes,
    media type, subject digest)."""
    if depth > INDEX_DEPTH:
        raise BadReferrers(f"{where}: indexes nest more than {INDEX_DEPTH} deep")
    try:
        desc, raw = registry.get_manifest(ref, what)
    except (*_TRANSPORT, AuthError):
        raise
    except RegistryError as exc:  # not there, not JSON, too large, not a manifest, digest wrong
        raise BadReferrers(
            f"{where}: {str(exc).removeprefix(f'registry {registry.host}: {what}: ')}"
        ) from None
    parsed: Manifest | Index
    try:
        if desc.media_type in mediatype.INDEXES:
            parsed = Index.parse(raw, f"{where}: index {desc.digest}")
        else:
            parsed = Manifest.parse(raw, f"{where}: manifest {desc.digest}", lenient=True)
    except PybuildError as exc:
        raise BadReferrers(str(exc)) from None
    if isinstance(parsed, Index):
        for child in parsed.manifests:
            if child.media_type not in mediatype.MANIFESTS | mediatype.INDEXES or not child.digest.registered:
                raise BadReferrers(f"{where}: index entry {str(child.digest)[:100]} is not a manifest")
            if not layout.blobs.exists(child.digest):
                child_raw, _, _ = _fetch_tree(
                    registry, ref.with_digest(child.digest), layout, staged, what, progress, where, depth + 1
                )
                staged.add(_sealed(layout, child_raw, child.digest))
    else:
        blobs: dict[Digest, Descriptor] = {}
        for blob in [parsed.config, *parsed.layers]:
            _check_blob(blob, where)
            if not layout.blobs.exists(blob.digest) and blob.digest not in blobs:
                blobs[blob.digest] = blob
        for blob in blobs.values():
            staged.add(download(registry, layout, ref.repository, blob, what, progress))
    subject = parsed.subject.digest if parsed.subject is not None else None
    return raw, desc.media_type, subject


def _sealed(layout: Layout, raw: bytes, digest: Digest) -> BlobWriter:
    writer = layout.blobs.writer(digest.algorithm, expected=digest)
    try:
        writer.write(raw)
        writer.seal()
    except BaseException:
        writer.abort()
        raise
    return writer
