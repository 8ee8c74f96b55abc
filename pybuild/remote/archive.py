"""Archive transports: docker-archive (``docker save``) and oci-archive (a tar of an OCI layout).

Reading a docker-archive stores each layer as it is in the archive (an uncompressed tar gets
``application/vnd.oci.image.layer.v1.tar``; gzip or zstd layers keep their compression and type),
checks every layer against the config's diff_ids, stores the config byte-exact and generates an OCI
manifest. Writing one decompresses each layer to a plain tar and checks it against its diff_id.
Archives are read member by member (never extracted) and written to a temp file, then renamed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import zstandard

from ..errors import DigestMismatch, ImageNotFound, PybuildError, RegistryError
from ..layout import (
    Descriptor,
    Digest,
    ImageConfig,
    Layout,
    Manifest,
    Platform,
    copy_blobs,
    dump_json,
    is_artifact,
    load_image,
    mediatype,
)

CHUNK = 1 << 20
BLOB_MEMBER = re.compile(r"(?:\./)?blobs/(sha256|sha512)/([0-9a-f]+)")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def open_tar(path: Path, what: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise RegistryError(f"{what}: {path} does not exist") from None
    except (OSError, tarfile.TarError) as exc:
        raise RegistryError(f"{what}: {path} is not a readable tar archive: {exc}") from None


def tar_members(tar: tarfile.TarFile, what: str) -> dict[str, tarfile.TarInfo]:
    """Regular files by normalised name (symlinks, as docker save writes for shared layers, resolved)."""
    out: dict[str, tarfile.TarInfo] = {}
    links: dict[str, str] = {}
    try:
        for info in tar:
            name = os.path.normpath(info.name).lstrip("/")
            if info.isreg():
                out[name] = info
            elif info.issym():
                links[name] = os.path.normpath(os.path.join(os.path.dirname(name), info.linkname))
    except tarfile.TarError as exc:
        raise RegistryError(f"{what}: corrupt archive: {exc}") from None
    for name, target in links.items():
        if target in out:
            out[name] = out[target]
    return out


def read_member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, what: str) -> bytes:
    info = members.get(os.path.normpath(name).lstrip("/"))
    if info is None:
        raise RegistryError(f"{what}: {name} is missing from the archive")
    if info.size > 64 << 20:
        raise RegistryError(f"{what}: {name} is too large ({info.size} bytes)")
    f = tar.extractfile(info)
    assert f is not None
    return f.read()


def _decompressor(head: bytes, f: Any) -> tuple[str, Any]:
    if head.startswith(GZIP_MAGIC):
        return "gzip", gzip.GzipFile(fileobj=f, mode="rb")
    if head.startswith(ZSTD_MAGIC):
        return "zstd", zstandard.ZstdDecompressor().stream_reader(f)
    return "none", f


# --- docker-archive ----------------------------------------------------------------------------


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """tarfile, gzip and zstandard errors from a damaged archive, as RegistryError."""
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, zstandard.ZstdError, OSError) as exc:
        raise RegistryError(f"{what}: corrupt archive: {exc}") from None


def read_docker_archive(
    path: Path | str, layout: Layout, tag: str | None = None, name: str | None = None
) -> Descriptor:
    """Store the image ``name`` (``repo:tag`` in RepoTags; the only image when None) from the archive.

    Returns the generated manifest's descriptor; ``tag`` is set in ``layout`` when given.
    """
    with translated(f"docker-archive:{path}"):
        return _read_docker_archive(Path(path), layout, tag, name)


def _read_docker_archive(path: Path, layout: Layout, tag: str | None, name: str | None) -> Descriptor:
    what = f"docker-archive:{path}"
    with open_tar(path, what) as tar:
        members = tar_members(tar, what)
        config_raw, config, layer_names = docker_entry(tar, members, name, what)
        with layout.writing():
            layers = []
            for i, (layer_name, diff_id) in enumerate(zip(layer_names, config.diff_ids, strict=True)):
                f = tar.extractfile(layer_member(members, layer_name, what))
                assert f is not None
                layers.append(_store_layer(layout, f, diff_id, f"{what}: layer {i} ({layer_name})"))
            desc = docker_manifest(layout, config_raw, layers)
            if tag is not None:
                layout.set_tag(tag, desc)
    return desc


def docker_entry(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str | None, what: str
) -> tuple[bytes, ImageConfig, list[str]]:
    """The image ``name`` (the only one when None) of a docker-archive's manifest.json: its config
    (bytes and parsed) and the archive's names of its layers, one per diff_id."""
    try:
        entries = json.loads(read_member(tar, members, "manifest.json", what))
    except ValueError:
        raise RegistryError(f"{what}: manifest.json is not JSON") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise RegistryError(f"{what}: manifest.json must be a non-empty array of objects")
    entry = choose_entry(entries, name, what)
    config_name, layer_names = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layer_names, list):
        raise RegistryError(f"{what}: manifest.json entry needs Config and Layers")
    config_raw = read_member(tar, members, config_name, what)
    try:
        config = ImageConfig.parse(config_raw, f"{what}: config {config_name}")
    except PybuildError as exc:
        raise RegistryError(str(exc)) from None
    if len(config.diff_ids) != len(layer_names):
        raise RegistryError(
            f"{what}: config has {len(config.diff_ids)} diff_ids "
            f"but the archive lists {len(layer_names)} layers"
        )
    return config_raw, config, [str(n) for n in layer_names]


def layer_member(members: dict[str, tarfile.TarInfo], layer_name: str, what: str) -> tarfile.TarInfo:
    info = members.get(os.path.normpath(layer_name).lstrip("/"))
    if info is None:
        raise RegistryError(f"{what}: layer {layer_name} is missing from the archive")
    return info


def docker_manifest(layout: Layout, config_raw: bytes, layers: list[Descriptor]) -> Descriptor:
    """Store a docker-archive image's config (byte-exact) and the OCI manifest made for it."""
    digest, size = layout.blobs.put(config_raw)
    manifest = Manifest.build(Descriptor(mediatype.OCI_CONFIG, digest, size), layers)
    digest, size = layout.blobs.put(manifest.to_bytes())
    return Descriptor(mediatype.OCI_MANIFEST, digest, size)


def compression_of(head: bytes) -> str:
    """A layer's compression by its first bytes: "gzip", "zstd" or "none"."""
    return "gzip" if head.startswith(GZIP_MAGIC) else "zstd" if head.startswith(ZSTD_MAGIC) else "none"


def choose_entry(entries: list[dict[str, Any]], name: str | None, what: str) -> dict[str, Any]:
    if name is None:
        if len(entries) > 1:
            raise RegistryError(
                f"{what}: the archive holds {len(entries)} images: name one (docker-archive:PATH:NAME:TAG)"
            )
        return entries[0]
    wanted = {name, f"docker.io/{name}", f"docker.io/library/{name}"}
    for entry in entries:
        tags = entry.get("RepoTags") or []
        if any(t in wanted or f"docker.io/{t}" in wanted or f"docker.io/library/{t}" in wanted for t in tags):
            return entry
    raise ImageNotFound(f"{what}: no image {name!r} in the archive")


def _store_layer(layout: Layout, f: IO[bytes], diff_id: Digest, what: str) -> Descriptor:
    """Store the layer as it is, checking its uncompressed content against ``diff_id``."""
    head = f.read(4)
    compression = compression_of(head)
    with layout.blobs.writer() as writer:
        writer.write(head)
        while chunk := f.read(CHUNK):
            writer.write(chunk)
    assert writer.digest is not None
    if compression == "none":
        actual = writer.digest
    else:
        with layout.blobs.open(writer.digest) as raw:
            actual = _diff_id(raw, what)
    if actual != diff_id:
        raise DigestMismatch(f"{what}: content has diff_id {actual}, the config says {diff_id}")
    return Descriptor(mediatype.layer_media_type(compression), writer.digest, writer.size)


def _diff_id(f: IO[bytes], what: str) -> Digest:
    head = f.read(4)
    hasher = hashlib.sha256()
    _, stream = _decompressor(head, _Prefixed(head, f))
    try:
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise RegistryError(f"{what}: cannot decompress: {exc}") from None
    return Digest.from_hasher(hasher)


class _Prefixed:
    """A stream with ``head`` put back in front."""

    def __init__(self, head: bytes, f: IO[bytes]) -> None:
        self._head = head
        self._f = f

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._f.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._f.read(n - len(data))
            return data
        return self._f.read(n)

    def readable(self) -> bool:
        return True


@contextlib.contextmanager
def _atomic_output(path: Path, what: str) -> Iterator[IO[bytes]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise RegistryError(f"{what}: cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(
    layout: Layout,
    desc: Descriptor,
    path: Path | str,
    repo_tags: list[str] | None = None,
    platform: Platform | None = None,
) -> None:
    """Write the image ``desc`` names as a ``docker save`` archive with plain tar layers."""
    path = Path(path)
    what = f"docker-archive:{path}"
    image = load_image(layout, desc, platform)
    config_raw = layout.blobs.read(image.manifest.config.digest, image.manifest.config.size)
    config_name = f"{image.manifest.config.digest.encoded}.json"
    layer_names = []
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        _atomic_output(path, what) as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        written: set[str] = set()
        for i, (layer, diff_id) in enumerate(zip(image.layers, image.diff_ids, strict=True)):
            name = f"{diff_id.encoded}.tar"
            layer_names.append(name)
            if name in written:
                continue
            tmp = Path(tmpdir) / name
            hasher = hashlib.sha256()
            with layout.blobs.open(layer.digest, layer.size) as raw, open(tmp, "wb") as plain:
                head = raw.read(4)
                _, stream = _decompressor(head, _Prefixed(head, raw))
                try:
                    while chunk := stream.read(CHUNK):
                        hasher.update(chunk)
                        plain.write(chunk)
                except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
                    raise RegistryError(
                        f"{what}: layer {i} ({layer.digest}): cannot decompress: {exc}"
                    ) from None
            actual = Digest.from_hasher(hasher)
            if actual != diff_id:
                raise DigestMismatch(
                    f"{what}: layer {i} ({layer.digest}) has diff_id {actual}, config says {diff_id}"
                )
            tar.add(str(tmp), arcname=name, recursive=False, filter=_plain_info)
            tmp.unlink()
            written.add(name)
        _add_bytes(tar, config_name, config_raw)
        entry = {"Config": config_name, "RepoTags": list(repo_tags or []), "Layers": layer_names}
        _add_bytes(tar, "manifest.json", dump_json([entry]))
        repositories: dict[str, dict[str, str]] = {}
        for repo_tag in repo_tags or []:
            repo, _, tag = repo_tag.rpartition(":")
            repositories.setdefault(repo, {})[tag] = layer_names[-1].removesuffix(".tar")
        _add_bytes(tar, "repositories", dump_json(repositories))


def _plain_info(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    info.mtime = 0
    return info


# --- oci-archive -------------------------------------------------------------------------------


def read_oci_archive(
    path: Path | str, layout: Layout, tag: str | None = None, dst_tag: str | None = None
) -> Descriptor:
    """Copy the image tagged ``tag`` (the only one when None) from an oci-archive into ``layout``."""
    with translated(f"oci-archive:{path}"):
        return _read_oci_archive(Path(path), layout, tag, dst_tag)


def _read_oci_archive(path: Path, layout: Layout, tag: str | None, dst_tag: str | None) -> Descriptor:
    what = f"oci-archive:{path}"
    with tempfile.TemporaryDirectory() as tmpdir:
        staging = Layout.create(Path(tmpdir) / "layout", label=what)
        with open_tar(path, what) as tar:
            members = tar_members(tar, what)
            index_raw = read_member(tar, members, "index.json", what)
            for name, info in members.items():
                match = BLOB_MEMBER.fullmatch(name)
                if match is None:
                    continue
                try:
                    digest = Digest(match.group(1), match.group(2))
                except PybuildError:
                    continue
                f = tar.extractfile(info)
                assert f is not None
                try:
                    with staging.blobs.writer(digest.algorithm, expected=digest) as writer:
                        while chunk := f.read(CHUNK):
                            writer.write(chunk)
                except DigestMismatch as exc:
                    raise DigestMismatch(f"{what}: {exc}") from None
        (staging.root / "index.json").write_bytes(index_raw)
        src = archived_image(staging, tag, what)
        with layout.writing():
            copy_blobs(staging, layout, src)
            if dst_tag is not None:
                layout.set_tag(dst_tag, src)
    return src


def archived_image(layout: Layout, tag: str | None, what: str) -> Descriptor:
    """The image ``tag`` names in an oci-archive's layout; without a tag, the one tagged image, else
    the only image in index.json. Artifacts (manifests with a subject: an SBOM, a signature) listed
    untagged beside it are not images, and never make the choice ambiguous."""
    try:
        if tag is not None:
            src = layout.resolve(tag)
        else:
            tags = layout.tags()
            if len(tags) == 1:
                src = tags[0][1]
            else:
                images = {d.digest: d for d in layout.read_index().manifests if not is_artifact(layout, d)}
                if len(images) != 1:
                    raise ImageNotFound(
                        f"{what}: the archive holds {len(images)} images: name one (oci-archive:PATH:TAG)"
                    )
                src = next(iter(images.values()))
    except ImageNotFound as exc:
        raise ImageNotFound(str(exc).replace(layout.label, what)) from None
    return Descriptor(src.media_type, src.digest, src.size, platform=src.platform)


def write_oci_archive(layout: Layout, desc: Descriptor, path: Path | str, tag: str | None = None) -> None:
    """Write the image (or index) ``desc`` names as a tar of an OCI layout, tagged ``tag``."""
    path = Path(path)
    what = f"oci-archive:{path}"
    with tempfile.TemporaryDirectory() as tmpdir:
        staging = Layout.create(Path(tmpdir) / "layout", label=what)
        plain = Descriptor(desc.media_type, desc.digest, desc.size, platform=desc.platform)
        copy_blobs(layout, staging, plain)
        if tag is not None:
            staging.set_tag(tag, plain)
        else:
            staging.update_index(lambda manifests: [*manifests, plain])
        with (
            _atomic_output(path, what) as out,
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in ("oci-layout", "index.json"):
                tar.add(str(staging.root / name), arcname=name, recursive=False, filter=_plain_info)
            blobs = staging.root / "blobs"
            for algorithm_dir in sorted(blobs.iterdir()):
                for blob in sorted(algorithm_dir.iterdir()):
                    tar.add(
                        str(blob),
                        arcname=f"blobs/{algorithm_dir.name}/{blob.name}",
                        recursive=False,
                        filter=_plain_info,
                    )
        shutil.rmtree(staging.root, ignore_errors=True)
