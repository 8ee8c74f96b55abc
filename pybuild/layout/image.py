"""Images in a layout: a manifest and its config, found through index.json; commit and copy."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from ..errors import ImageNotFound, InvalidDocument, LayoutError, UsageError
from . import mediatype
from .descriptor import Descriptor, Platform
from .digest import Digest
from .document import ImageConfig, Index, Manifest
from .imagelayout import Layout
from .store import BlobWriter, StagedBlobs

_MACHINES = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", None),
    "i386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


def host_platform() -> Platform:
    machine = _platform.machine().lower()
    arch, variant = _MACHINES.get(machine, (machine, None))
    return Platform(architecture=arch, os="linux", variant=variant)


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]``, as in ``--platform linux/arm64/v8``."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
    return Platform(architecture=parts[1], os=parts[0], variant=parts[2] if len(parts) == 3 else None)


def platform_matches(want: Platform, have: Platform | None) -> bool:
    if have is None:
        return False
    if (want.os, want.architecture) != (have.os, have.architecture):
        return False
    return not (want.variant and have.variant and want.variant != have.variant)


@dataclass(frozen=True)
class Image:
    """A read-only view of one image: its manifest descriptor, manifest and config."""

    layout: Layout
    descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig

    @property
    def layers(self) -> list[Descriptor]:
        return list(self.manifest.layers)

    @property
    def diff_ids(self) -> list[Any]:
        return list(self.config.diff_ids)

    @property
    def id(self) -> str:
        """The image ID as buildah and podman show it: the config's digest."""
        return str(self.manifest.config.digest)

    @property
    def is_docker(self) -> bool:
        return self.manifest.is_docker


def read_manifest(layout: Layout, descriptor: Descriptor) -> Manifest:
    return Manifest.parse(
        layout.blobs.read(descriptor.digest, descriptor.size),
        f"manifest {descriptor.digest} in {layout.label}",
    )


def read_index(layout: Layout, descriptor: Descriptor) -> Index:
    return Index.parse(
        layout.blobs.read(descriptor.digest, descriptor.size), f"index {descriptor.digest} in {layout.label}"
    )


def read_config(layout: Layout, descriptor: Descriptor) -> ImageConfig:
    return ImageConfig.parse(
        layout.blobs.read(descriptor.digest, descriptor.size), f"config {descriptor.digest} in {layout.label}"
    )


def select_manifest(
    layout: Layout, descriptor: Descriptor, platform: Platform | None = None, _depth: int = 0
) -> Descriptor:
    """Follow indexes down to the manifest for ``platform`` (the host's by default)."""
    if descriptor.media_type in mediatype.MANIFESTS:
        return descriptor
    if descriptor.media_type not in mediatype.INDEXES:
        raise LayoutError(
            f"{descriptor.digest} in {layout.label} is {descriptor.media_type}, "
            "not an image manifest or index"
        )
    if _depth > 8:
        raise LayoutError(f"index {descriptor.digest} in {layout.label} nests too deeply")
    want = platform or host_platform()
    index = read_index(layout, descriptor)
    candidates = [m for m in index.manifests if platform_matches(want, m.platform)]
    if not candidates and platform is None:
        # No platform annotations at all (single-image indexes): take the only one.
        plain = [m for m in index.manifests if m.platform is None]
        if len(index.manifests) == 1 or len(plain) == 1:
            candidates = plain or list(index.manifests)
    if not candidates:
        offered = ", ".join(str(m.platform) for m in index.manifests if m.platform) or "none"
        raise ImageNotFound(
            f"index {descriptor.digest} in {layout.label} has no image for {want} (it has: {offered})"
        )
    # Prefer an exact variant match.
    exact = [m for m in candidates if m.platform is not None and m.platform.variant == want.variant]
    return select_manifest(layout, (exact or candidates)[0], platform, _depth + 1)


def load_image(layout: Layout, descriptor: Descriptor, platform: Platform | None = None) -> Image:
    chosen = select_manifest(layout, descriptor, platform)
    manifest = read_manifest(layout, chosen)
    if manifest.config.media_type not in mediatype.CONFIGS:
        raise InvalidDocument(
            f"manifest {chosen.digest} in {layout.label}: config media type {manifest.config.media_type} "
            "is not an image config"
        )
    config = read_config(layout, manifest.config)
    return Image(layout, chosen, manifest, config)


def commit_image(
    layout: Layout,
    config: ImageConfig,
    layers: list[Descriptor],
    *,
    docker: bool = False,
    annotations: dict[str, str] | None = None,
) -> Descriptor:
    """Write ``config`` and a manifest over ``layers`` (already in the store); return its descriptor.

    Call inside ``layout.writing()`` together with the tagging, so gc cannot sweep in between.
    """
    if len(config.diff_ids) != len(layers):
        raise LayoutError(
            f"config has {len(config.diff_ids)} diff_ids but the image has {len(layers)} layers"
        )
    for layer in layers:
        if not layout.blobs.exists(layer.digest):
            raise LayoutError(f"layer {layer.digest} is not in {layout.label}")
    digest, size = layout.blobs.put(config.to_bytes())
    manifest = build_manifest(digest, size, layers, docker=docker, annotations=annotations)
    digest, size = layout.blobs.put(manifest.to_bytes())
    return Descriptor(manifest.media_type, digest, size)


def build_manifest(
    config_digest: Digest,
    config_size: int,
    layers: list[Descriptor],
    *,
    docker: bool = False,
    annotations: dict[str, str] | None = None,
) -> Manifest:
    """The manifest ``commit_image`` writes for a config and layers: the same bytes wherever it is
    made (a layout, or on the way to a registry)."""
    config_media = mediatype.DOCKER_CONFIG if docker else mediatype.OCI_CONFIG
    return Manifest.build(
        Descriptor(config_media, config_digest, config_size),
        layers,
        media_type=mediatype.DOCKER_MANIFEST if docker else mediatype.OCI_MANIFEST,
        annotations=annotations if not docker else None,
    )


def format_layer(desc: Descriptor, docker: bool) -> Descriptor:
    """The layer's descriptor with the media type of the format (Docker schema 2 or OCI), the
    same bytes; a zstd layer has no Docker media type."""
    compression = mediatype.layer_compression(desc.media_type)
    if compression is None:
        return desc
    if docker and compression == "zstd":
        raise UsageError(
            f"layer {desc.digest} is zstd-compressed: Docker-format images have gzip or plain tar layers",
            hints=["build with --format oci"],
        )
    wanted = mediatype.layer_media_type(compression, docker=docker)
    if wanted == desc.media_type:
        return desc
    return Descriptor(wanted, desc.digest, desc.size, annotations=desc.annotations)


def referenced_blobs(layout: Layout, descriptor: Descriptor, _depth: int = 0) -> list[Descriptor]:
    """Every descriptor reachable from ``descriptor`` (itself first), following indexes and manifests."""
    if _depth > 8:
        raise LayoutError(f"index {descriptor.digest} in {layout.label} nests too deeply")
    out = [descriptor]
    if descriptor.media_type in mediatype.INDEXES:
        for child in read_index(layout, descriptor).manifests:
            out.extend(referenced_blobs(layout, child, _depth + 1))
    elif descriptor.media_type in mediatype.MANIFESTS:
        manifest = read_manifest(layout, descriptor)
        out.append(manifest.config)
        out.extend(manifest.layers)
        if manifest.subject is not None and layout.blobs.exists(manifest.subject.digest):
            out.append(manifest.subject)
    return out


def stage_copy(src: Layout, dst: Layout, desc: Descriptor) -> BlobWriter:
    """Copy one blob from ``src`` into ``dst``'s temp dir, verified and sealed: the caller commits
    or aborts the writer returned."""
    writer = dst.blobs.writer(desc.digest.algorithm, expected=desc.digest)
    try:
        with src.blobs.open(desc.digest, desc.size) as reader:
            while chunk := reader.read(1 << 20):
                writer.write(chunk)
        writer.seal()
    except BaseException:
        writer.abort()
        raise
    return writer


def copy_blobs(src: Layout, dst: Layout, descriptor: Descriptor) -> int:
    """Copy everything ``descriptor`` references from ``src`` into ``dst``, verified, never recompressed.

    All or nothing: every blob is written and verified first, and only then do they all appear in
    ``dst`` (children first, so a manifest never lands before what it references); a failure leaves
    ``dst`` as it was. Blobs already in ``dst`` are skipped. Returns the number of blobs copied. Hold
    ``dst.writing()``.
    """
    seen: set[Digest] = set()
    with StagedBlobs() as staged:
        for desc in reversed(referenced_blobs(src, descriptor)):
            if desc.digest in seen or dst.blobs.exists(desc.digest):
                continue
            seen.add(desc.digest)
            staged.add(stage_copy(src, dst, desc))
        staged.commit()
    return len(staged.writers)
