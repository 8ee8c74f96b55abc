"""What an image from a registry must be before anything is named after it.

The same rules as ``pybuild check``: documents within their size and depth limits and valid for
their schema, known media types, a supported digest for every blob, and one diff_id per layer.
A check that fails here fails the pull before a byte of any layer is fetched.
"""

from __future__ import annotations

from ...errors import PybuildError, RegistryError
from ...layout import Descriptor, ImageConfig, Manifest, mediatype
from ...layout.document import DOCUMENT_LIMIT


def check_manifest(manifest: Manifest, where: str) -> None:
    """Media types and digests of what an image manifest references."""
    config = manifest.config
    if config.media_type not in mediatype.CONFIGS:
        raise RegistryError(
            f"{where}: config {config.digest} has unknown media type {config.media_type[:100]!r}"
        )
    if config.size > DOCUMENT_LIMIT:
        raise RegistryError(f"{where}: config {config.digest} is larger than {DOCUMENT_LIMIT} bytes")
    for blob in [config, *manifest.layers]:
        if not blob.digest.registered:
            raise RegistryError(f"{where}: unsupported digest {blob.digest}")
    for layer in manifest.layers:
        if layer.media_type not in mediatype.LAYERS:
            raise RegistryError(
                f"{where}: layer {layer.digest} has unknown media type {layer.media_type[:100]!r}"
            )


def check_config(raw: bytes, manifest: Manifest, where: str) -> ImageConfig:
    """The config's bytes parse as an image config with one diff_id per layer; uncompressed layers'
    digests are their diff_ids."""
    try:
        config = ImageConfig.parse(raw, f"{where}: config {manifest.config.digest}")
    except PybuildError as exc:
        raise RegistryError(str(exc)) from None
    if len(config.diff_ids) != len(manifest.layers):
        raise RegistryError(
            f"{where}: {len(manifest.layers)} layers but its config has {len(config.diff_ids)} diff_ids"
        )
    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
        plain = mediatype.layer_compression(layer.media_type) == "none"
        if plain and layer.digest.algorithm == diff_id.algorithm and layer.digest != diff_id:
            raise RegistryError(
                f"{where}: uncompressed layer {layer.digest} does not match its diff_id {diff_id}"
            )
    return config


def parse_manifest(raw: bytes, desc: Descriptor, where: str) -> Manifest:
    try:
        manifest = Manifest.parse(raw, f"{where}: manifest {desc.digest}")
    except PybuildError as exc:
        raise RegistryError(str(exc)) from None
    check_manifest(manifest, where)
    return manifest
