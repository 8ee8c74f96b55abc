"""What ``inspect`` reads of an archive: the documents of its image, never its layers' content.

An oci-archive's index.json, and the manifests, indexes and image configs it reaches (artifacts'
manifests too, for ``--referrers``); a docker-archive's manifest.json entry and config, with the
OCI manifest pybuild makes for it when it reads the archive (the same digest ``copy`` gives it). They
are read member by member from the tar, verified, into a throwaway layout; as skopeo inspect does,
no layer is extracted (a compressed docker-archive layer is hashed as it streams by, for its digest).
"""

from __future__ import annotations

import hashlib
import tarfile

from ..errors import DigestMismatch, RegistryError
from ..layout import Descriptor, Digest, Index, Layout, Manifest, mediatype
from ..layout.document import DOCUMENT_LIMIT
from .archive import (
    CHUNK,
    archived_image,
    compression_of,
    docker_entry,
    docker_manifest,
    layer_member,
    open_tar,
    read_member,
    tar_members,
    translated,
)
from .transport import ArchiveReference


def archive_documents(ref: ArchiveReference, into: Layout) -> Descriptor:
    """Put the documents of the image ``ref`` names into the empty layout ``into`` (an oci-archive's
    index.json too); returns the image's descriptor there (a manifest, or an index)."""
    what = f"{ref.transport}:{ref.path}"
    with translated(what), open_tar(ref.path, what) as tar:
        members = tar_members(tar, what)
        if ref.transport == "docker-archive":
            return _docker(tar, members, ref.name, into, what)
        return _oci(tar, members, ref.name, into, what)


def _docker(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str | None, into: Layout, what: str
) -> Descriptor:
    config_raw, config, layer_names = docker_entry(tar, members, name, what)
    layers = []
    for layer_name, diff_id in zip(layer_names, config.diff_ids, strict=True):
        info = layer_member(members, layer_name, what)
        f = tar.extractfile(info)
        assert f is not None
        head = f.read(4)
        compression = compression_of(head)
        digest = diff_id  # a plain tar layer is stored as it is: its digest is its diff_id
        if compression != "none":
            hasher = hashlib.sha256(head)
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
            digest = Digest.from_hasher(hasher)
        layers.append(Descriptor(mediatype.layer_media_type(compression), digest, info.size))
    return docker_manifest(into, config_raw, layers)


def _oci(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], tag: str | None, into: Layout, what: str
) -> Descriptor:
    (into.root / "index.json").write_bytes(read_member(tar, members, "index.json", what))
    todo = list(into.read_index().manifests)
    seen: set[Digest] = set()
    while todo:
        desc = todo.pop()
        if desc.digest in seen or desc.media_type not in mediatype.MANIFESTS | mediatype.INDEXES:
            continue
        seen.add(desc.digest)
        raw = _document(tar, members, desc, into, what)
        if desc.media_type in mediatype.INDEXES:
            todo.extend(Index.parse(raw, f"{what}: index {desc.digest}").manifests)
            continue
        manifest = Manifest.parse(raw, f"{what}: manifest {desc.digest}", lenient=True)
        if manifest.config.media_type in mediatype.CONFIGS:  # an artifact's config is not needed
            _document(tar, members, manifest.config, into, what)
    return archived_image(into, tag, what)


def _document(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], desc: Descriptor, into: Layout, what: str
) -> bytes:
    """The blob ``desc`` names (a document: small), copied into ``into`` once verified."""
    name = f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}"
    info = members.get(name)
    if info is None:
        raise RegistryError(f"{what}: {name} is missing from the archive")
    if info.size != desc.size or desc.size > DOCUMENT_LIMIT:
        raise RegistryError(f"{what}: {name} has {info.size} bytes, its descriptor says {desc.size}")
    data = read_member(tar, members, name, what)
    try:
        with into.blobs.writer(desc.digest.algorithm, expected=desc.digest) as writer:
            writer.write(data)
    except DigestMismatch as exc:
        raise DigestMismatch(f"{what}: {exc}") from None
    return data
