"""Layer directories: each layer extracted once, in overlay format, into the store's private area
(``PrivateArea.layer_dir``), to be stacked as overlay lowerdirs by `pybuild run` and builds; and the
gc of that area with the remover it needs (files of subordinate ids go in the user namespace)."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

from ..diff import apply_layer, open_layer
from ..errors import DigestMismatch, LayerError
from ..layout import Descriptor, Digest, Image, Layout, SweepResult
from .cleanup import force_remove
from .userns import run_in_userns


class _Hashing:
    """A reader that hashes what passes through (the uncompressed tar: its diff_id)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.hasher = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.inner.read(n)
        self.hasher.update(data)
        return data


def remove_tree(path: Path) -> None:
    """Remove a tree written in the user namespace (its files may belong to subordinate ids)."""
    run_in_userns(lambda: force_remove(Path(path)))


def layer_dirs(store: Layout, image: Image) -> list[Path]:
    """The image's layers as extracted directories, top layer first (overlay's lowerdir order)."""
    return layer_dirs_of(store, image.layout, list(zip(image.layers, image.config.diff_ids, strict=True)))


def layer_dir(store: Layout, diff_id: Digest) -> Path:
    """Where the layer with ``diff_id`` is (or will be) extracted in ``store``."""
    return store.private.layer_dir(diff_id)


def layer_dirs_of(store: Layout, source: Layout, layers: list[tuple[Descriptor, Digest]]) -> list[Path]:
    """``layers`` (bottom first, blobs in ``source``) as extracted directories in ``store``, top first."""
    base = store.private.layers
    base.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for layer, diff_id in layers:
        final = store.private.layer_dir(diff_id)
        if not final.is_dir():
            temp = base / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"

            def extract(
                layer: Any = layer, diff_id: Any = diff_id, temp: Path = temp, final: Path = final
            ) -> None:
                temp.mkdir()
                try:
                    with source.blobs.open(layer.digest, layer.size) as blob:
                        reader = _Hashing(open_layer(blob, layer.media_type, what=f"layer {layer.digest}"))
                        apply_layer(reader, temp, overlay=True, what=f"layer {layer.digest}")  # type: ignore[arg-type]
                        while reader.read(1 << 20):
                            pass
                        while blob.read(1 << 20):
                            pass
                    if "sha256:" + reader.hasher.hexdigest() != str(diff_id):
                        raise DigestMismatch(
                            f"layer {layer.digest} in {source.label} does not match diff_id {diff_id}"
                        )
                    os.chmod(temp, 0o755)
                    try:
                        os.rename(temp, final)
                    except OSError:  # another process extracted it first
                        force_remove(temp)
                except BaseException:
                    force_remove(temp)
                    raise

            try:
                run_in_userns(extract)
            except OSError as exc:
                raise LayerError(f"cannot extract layer {layer.digest}: {exc.strerror or exc}") from None
        out.append(final)
    return list(reversed(out))


def sweep(store: Layout) -> SweepResult:
    """The private area's gc (``PrivateArea.sweep``): stale cache records, unused layer directories,
    workspaces of builds that ended."""
    return store.private.sweep(store, remove_tree)
