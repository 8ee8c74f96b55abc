"""Re-compressing an image's layers (``--compression``): new layer blobs, same diff_ids and config."""

from __future__ import annotations

from ..diff import LayerWriter, open_layer
from ..errors import DigestMismatch, UsageError
from ..layout import Descriptor, Layout, commit_image, copy_blobs, load_image, mediatype


def _plain(layer: Descriptor) -> bool:
    """An uncompressed layer that may be compressed on the way out (not a non-distributable one)."""
    media = layer.media_type
    return mediatype.layer_compression(media) == "none" and "nondistributable" not in media


def has_uncompressed_layers(layout: Layout, desc: Descriptor) -> bool:
    """Whether the image ``desc`` names (a manifest, not an index) has an uncompressed layer."""
    if desc.media_type not in mediatype.MANIFESTS:
        return False
    return any(_plain(layer) for layer in load_image(layout, desc).layers)


def recompress_image(
    src: Layout, desc: Descriptor, dst: Layout, compression: str, *, only_uncompressed: bool = False
) -> Descriptor:
    """Write ``desc``'s image into ``dst`` with every layer in ``compression``; returns the new manifest.

    Layers already in that compression are copied as they are; with ``only_uncompressed`` so are
    all compressed ones (what skopeo does for an OCI layout or a registry: plain tar layers get
    compressed, gzip and zstd ones stay). Each new layer's diff_id is checked against the config,
    so a damaged layer can never be re-signed by recompression.
    """
    if compression not in ("gzip", "zstd", "none"):
        raise UsageError(f"unknown compression {compression!r}: expected gzip, zstd or none")
    image = load_image(src, desc)
    if image.is_docker and compression == "zstd":
        raise UsageError(f"{src.label}: Docker-format images have gzip or plain tar layers, not zstd")
    layers: list[Descriptor] = []
    with dst.writing():
        for layer, diff_id in zip(image.layers, image.config.diff_ids, strict=True):
            keep = only_uncompressed and not _plain(layer)
            if keep or mediatype.layer_compression(layer.media_type) == compression:
                copy_blobs(src, dst, layer)
                layers.append(layer)
                continue
            with src.blobs.open(layer.digest, layer.size) as blob, dst.blobs.writer() as writer:
                reader = open_layer(blob, layer.media_type, what=f"layer {layer.digest}")
                sink = LayerWriter(writer, compression)
                while chunk := reader.read(1 << 20):
                    sink.write(chunk)
                while blob.read(1 << 20):  # reach EOF so the blob's digest is checked
                    pass
                stats = sink.close()
                if stats.diff_id != str(diff_id):
                    raise DigestMismatch(
                        f"layer {layer.digest} in {src.label}: content does not match diff_id {diff_id}"
                    )
            assert writer.digest is not None
            media = mediatype.layer_media_type(compression, docker=image.is_docker)
            layers.append(Descriptor(media, writer.digest, writer.size, annotations=dict(layer.annotations)))
        return commit_image(
            dst, image.config, layers, docker=image.is_docker, annotations=image.manifest.annotations or None
        )
