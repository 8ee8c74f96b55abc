"""OCI 1.1 artifacts that refer to an image (SBOMs, provenance, signatures), kept in a layout.

An artifact is an image manifest with an ``artifactType``, the empty config descriptor
(``application/vnd.oci.empty.v1+json``, content ``{}``), the document as its one layer, and
``subject`` set to the image's manifest (manifest.md, "Guidelines for Artifact Usage"). It is listed
in index.json without a ref name, as index.json's entry point for auxiliary descriptors
(image-layout.md); its descriptor there carries the artifactType and annotations, as the
distribution-spec's referrers API returns them. ``gc`` keeps an artifact while its subject lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BlobNotFound, PybuildError, UsageError
from . import mediatype
from .descriptor import REF_NAME, Descriptor
from .digest import Digest
from .document import Manifest, dump_json, load_json
from .imagelayout import Layout

EMPTY_JSON = b"{}"
EMPTY_DIGEST = Digest.of_bytes(EMPTY_JSON)
EMPTY_DESCRIPTOR = Descriptor(mediatype.OCI_EMPTY, EMPTY_DIGEST, len(EMPTY_JSON))
#: an in-toto attestation (a provenance statement) as a document and an artifact type
IN_TOTO_JSON = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
MAX_DOCUMENT = 256 << 20  # an attached document larger than this is refused


def _check_media_type(value: str, what: str) -> None:
    if not mediatype.is_valid(value):
        raise UsageError(f"invalid {what} {str(value)[:80]!r}: expected TYPE/SUBTYPE (RFC 6838)")


def attach(
    layout: Layout,
    subject: Descriptor,
    artifact_type: str,
    media_type: str,
    data: bytes,
    annotations: Mapping[str, str] | None = None,
) -> Descriptor:
    """Store ``data`` as an artifact referring to ``subject`` (an image manifest or index in
    ``layout``) and list it in index.json; returns the artifact's descriptor as listed there.

    Attaching the same document again changes nothing (same bytes, same digest)."""
    _check_media_type(artifact_type, "artifact type")
    _check_media_type(media_type, "media type")
    if subject.media_type not in mediatype.MANIFESTS | mediatype.INDEXES:
        raise UsageError(
            f"cannot attach to {subject.digest} in {layout.label}: it is {subject.media_type}, "
            "not an image manifest or index"
        )
    notes = dict(annotations or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in notes.items()):
        raise UsageError("artifact annotations must be strings")
    if REF_NAME in notes:
        raise UsageError(f"an artifact refers to its subject and has no tag: {REF_NAME} is not allowed")
    if len(data) > MAX_DOCUMENT:
        raise UsageError(
            f"the document is {len(data)} bytes, more than an artifact may hold ({MAX_DOCUMENT})"
        )
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_DESCRIPTOR.to_dict(),
        "layers": [],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_dict(),
    }
    if notes:
        doc["annotations"] = notes
    with layout.writing():
        if not layout.blobs.exists(subject.digest):
            raise BlobNotFound(f"cannot attach to {subject.digest}: it is not in {layout.label}")
        layout.blobs.put(EMPTY_JSON)
        digest, size = layout.blobs.put(data)
        doc["layers"] = [Descriptor(media_type, digest, size).to_dict()]
        manifest = Manifest.new(doc)
        raw = manifest.to_bytes()
        digest, size = layout.blobs.put(raw)
        listed = Descriptor(
            mediatype.OCI_MANIFEST, digest, size, annotations=notes, artifact_type=artifact_type
        )
        list_artifact(layout, listed)
    return listed


def list_artifact(layout: Layout, listed: Descriptor) -> None:
    """List the artifact ``listed`` (in ``layout``, as the referrers API lists it) in index.json,
    untagged, unless it is listed already. Hold ``layout.writing()``."""

    def change(manifests: list[Descriptor]) -> list[Descriptor]:
        if any(m.digest == listed.digest and m.ref_name is None for m in manifests):
            return manifests
        return [*manifests, listed]

    layout.update_index(change)


def subject_of(layout: Layout, descriptor: Descriptor) -> Descriptor | None:
    """The subject of the manifest or index ``descriptor`` names, or None where it has none."""
    if descriptor.media_type not in mediatype.MANIFESTS | mediatype.INDEXES:
        return None
    raw = layout.blobs.read(descriptor.digest, descriptor.size)
    from .document import Index, load_json

    doc = load_json(raw, f"{descriptor.digest} in {layout.label}")
    if not isinstance(doc, dict) or "subject" not in doc:
        return None
    what = f"manifest {descriptor.digest} in {layout.label}"
    parsed: Manifest | Index
    if descriptor.media_type in mediatype.INDEXES:
        parsed = Index.parse(raw, what)
    else:
        parsed = Manifest.parse(raw, what, lenient=True)
    return parsed.subject


def is_artifact(layout: Layout, descriptor: Descriptor) -> bool:
    """Whether an index.json entry is an artifact referring to an image (it has a subject), not an
    image. One that cannot be read counts as an image, so that its problem shows where it is used."""
    try:
        return subject_of(layout, descriptor) is not None
    except PybuildError:
        return False


def as_referrer(layout: Layout, descriptor: Descriptor) -> Descriptor:
    """``descriptor`` as the referrers API lists it: artifactType (the manifest's, else its config's
    media type) and the manifest's annotations."""
    raw = layout.blobs.read(descriptor.digest, descriptor.size)
    return referrer_descriptor(raw, descriptor, f"manifest {descriptor.digest} in {layout.label}")


def referrer_descriptor(raw: bytes, descriptor: Descriptor, what: str) -> Descriptor:
    """The descriptor of the manifest or index ``raw`` (which ``descriptor`` names) as the referrers
    API lists it (distribution-spec, "Listing Referrers")."""
    from .document import Index, load_json

    doc = load_json(raw, what)
    artifact_type: str | None
    if descriptor.media_type in mediatype.INDEXES:
        index = Index.parse(raw, what)
        artifact_type, annotations = doc.get("artifactType"), index.annotations
    else:
        manifest = Manifest.parse(raw, what, lenient=True)
        artifact_type = doc.get("artifactType") or manifest.config.media_type
        annotations = manifest.annotations
    return Descriptor(
        descriptor.media_type,
        descriptor.digest,
        descriptor.size,
        annotations=annotations,
        artifact_type=artifact_type,
    )


def referrers(layout: Layout, subject_digest: Digest, artifact_type: str | None = None) -> list[Descriptor]:
    """The artifacts in index.json whose subject is ``subject_digest`` (only those of
    ``artifact_type`` if given), in index.json's order, as the referrers API lists them."""
    found: list[Descriptor] = []
    seen: set[Digest] = set()
    for desc in layout.read_index().manifests:
        if desc.digest in seen or desc.media_type not in mediatype.MANIFESTS | mediatype.INDEXES:
            continue
        seen.add(desc.digest)
        try:
            subject = subject_of(layout, desc)
        except BlobNotFound:
            continue  # a listed manifest that is missing refers to nothing: `check` reports it
        if subject is None or subject.digest != subject_digest:
            continue
        referrer = as_referrer(layout, desc)
        if artifact_type is None or referrer.artifact_type == artifact_type:
            found.append(referrer)
    return found


def with_subject(raw: bytes, descriptor: Descriptor, subject: Descriptor, what: str) -> bytes:
    """The manifest or index ``raw`` (which ``descriptor`` names) with its ``subject`` pointing at
    ``subject`` instead: a new document, so a new digest."""
    from .document import Index

    new = Descriptor(subject.media_type, subject.digest, subject.size).to_dict()

    def change(doc: dict[str, Any]) -> None:
        doc["subject"] = new

    parsed: Manifest | Index
    if descriptor.media_type in mediatype.INDEXES:
        parsed = Index.parse(raw, what)
    else:
        parsed = Manifest.parse(raw, what, lenient=True)
    return parsed.changed(change).to_bytes()


def with_statement_subject(raw: bytes, old: Digest, new: Digest, what: str) -> bytes | None:
    """The in-toto statement ``raw`` with each subject that names the manifest ``old`` naming
    ``new`` instead (a push that gzips the store's layers writes a new manifest, and a verifier
    compares the statement's subject with the manifest it was given); None when no subject names
    ``old`` (nothing of ours to follow). ``what`` names the statement in errors."""
    doc = load_json(raw, what)
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        return None
    subjects = doc.get("subject")
    if not isinstance(subjects, list):
        return None
    changed = False
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and digests.get(old.algorithm) == old.encoded:
            subject["digest"] = {new.algorithm: new.encoded}
            changed = True
    return dump_json(doc) if changed else None
