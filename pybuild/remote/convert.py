"""Docker schema 2 on its way to a destination that takes only OCI (an ``oci:`` layout, an
oci-archive), converted as containers/image converts it there: the media types of the manifest,
its config and its layers become OCI ones (mediatype.OCI_FOR_DOCKER), and a manifest list becomes an
OCI index of the converted manifests. Config and layer blobs stay byte for byte, so the image ID
stays; only the manifests (and indexes) are new documents, with new digests. The store and
registries keep Docker manifests as they are (skopeo keeps them for registries too).
"""

from __future__ import annotations

import dataclasses

from ..layout import (
    Descriptor,
    Digest,
    Index,
    Layout,
    StagedBlobs,
    dump_json,
    load_json,
    mediatype,
    stage_copy,
)

DOCKER = frozenset(mediatype.OCI_FOR_DOCKER)


def needs_oci(layout: Layout, desc: Descriptor) -> bool:
    """Whether the manifest or index ``desc`` names is, or holds, a Docker schema 2 document."""
    if desc.media_type in DOCKER:
        return True
    if desc.media_type in mediatype.INDEXES:
        index = Index.parse(
            layout.blobs.read(desc.digest, desc.size), f"index {desc.digest} in {layout.label}"
        )
        return any(needs_oci(layout, child) for child in index.manifests)
    return False


def convert_to_oci(src: Layout, desc: Descriptor, dst: Layout) -> tuple[Descriptor, dict[Digest, Descriptor]]:
    """Write the image or index ``desc`` names in ``src`` into ``dst`` with OCI media types (what is
    OCI already is copied as it is); returns its descriptor in ``dst`` and, for its referrers, what
    each of its manifests and indexes became (old digest -> new descriptor). ``src`` may be ``dst``.
    All or nothing: a document appears only after everything it references."""
    moved: dict[Digest, Descriptor] = {}
    with dst.writing():
        new = _convert(src, desc, dst, moved)
    return new, moved


def _convert(src: Layout, desc: Descriptor, dst: Layout, moved: dict[Digest, Descriptor]) -> Descriptor:
    what = f"{desc.media_type} {desc.digest} in {src.label}"
    raw = src.blobs.read(desc.digest, desc.size)
    doc = load_json(raw, what)
    changed = desc.media_type in DOCKER
    if desc.media_type in mediatype.INDEXES:
        new_children = []
        for child in Index.parse(raw, what).manifests:
            new = child
            if child.media_type in mediatype.MANIFESTS | mediatype.INDEXES:
                new = _convert(src, child, dst, moved)
            changed = changed or new.digest != child.digest
            new_children.append(new)
        if changed:
            doc["manifests"] = [c.to_dict() for c in new_children]
    else:
        with StagedBlobs() as staged:
            for blob in [doc["config"], *doc.get("layers", [])]:
                blob_desc = Descriptor.from_dict(blob, what)
                distributable = not any(w in blob_desc.media_type for w in ("foreign", "nondistributable"))
                if not distributable and not src.blobs.exists(blob_desc.digest):
                    pass  # a non-distributable layer may be absent: it is not copied
                elif not dst.blobs.exists(blob_desc.digest):
                    staged.add(stage_copy(src, dst, blob_desc))
                if mediatype.to_oci(blob_desc.media_type) != blob_desc.media_type:
                    blob["mediaType"] = mediatype.to_oci(blob_desc.media_type)
                    changed = True
            staged.commit()
    if not changed:  # OCI already: the same bytes, the same digest
        dst.blobs.put(raw, desc.digest.algorithm)
        moved[desc.digest] = desc
        return desc
    doc["mediaType"] = mediatype.to_oci(desc.media_type)
    digest, size = dst.blobs.put(dump_json(doc))
    new = dataclasses.replace(desc, media_type=doc["mediaType"], digest=digest, size=size)
    moved[desc.digest] = new
    return new
