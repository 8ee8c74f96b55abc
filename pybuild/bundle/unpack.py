"""Runtime bundles: ``unpack`` an image into rootfs + config.json, ``repack`` a changed rootfs.

``unpack`` applies the layers in order with the safe applier, writes config.json (conversion.md),
and records the tree it produced in ``.pybuild-unpack.json`` beside the rootfs; ``repack`` compares
the rootfs with that record and commits what changed as one new layer on top of the image.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diff import Change, TreeRecord, apply_layer, changes_of, compare, open_layer, write_layer
from ..errors import BundleError, LayerError, UsageError, collect_warnings, warn
from ..layout import (
    Descriptor,
    Image,
    ImageStore,
    Layout,
    add_history,
    commit_image,
    copy_blobs,
    created_time,
    destination,
    dump_json,
    load_image,
    locate,
    mediatype,
)
from ..layout.digest import Digest
from ..layout.mutate import source_date_epoch as environment_epoch
from ..run import force_remove
from .runtimeconfig import make_runtime_config

RECORD = ".pybuild-unpack.json"
RECORD_VERSION = 1


def _tree_record(rootfs: Path) -> TreeRecord:
    try:
        return TreeRecord.of(rootfs)
    except LayerError as exc:
        raise BundleError(str(exc)) from None


@dataclass(frozen=True)
class UnpackResult:
    bundle: Path


def unpack_image(
    image: Image, bundle: Path, *, rootless: bool | None = None, source: str = ""
) -> UnpackResult:
    """Write ``bundle/rootfs`` and ``bundle/config.json``; ``bundle`` must not exist or be empty.

    Unprivileged, everything happens in a user namespace with the user's subordinate ids, so the
    rootfs has the image's owners (mapped) and the unpack record sees them as the container does.
    """
    from ..run import run_in_userns

    bundle = Path(bundle).absolute()
    if rootless is None:
        rootless = os.geteuid() != 0
    if bundle.exists() and (not bundle.is_dir() or any(bundle.iterdir())):
        raise BundleError(f"bundle {bundle} exists and is not empty")
    created = not bundle.exists()
    host_uid, host_gid = os.getuid(), os.getgid()
    layout = image.layout

    def work() -> list[str]:
        with collect_warnings(forward=False) as warnings:  # (a child: they are said by the parent)
            write(bundle / "rootfs")
        return warnings

    def write(rootfs: Path) -> None:
        try:
            try:
                rootfs.mkdir(parents=True)
                os.chmod(rootfs, 0o755)
            except OSError as exc:
                raise BundleError(f"cannot create bundle {bundle}: {exc.strerror or exc}") from None
            for layer in image.layers:
                if mediatype.layer_compression(layer.media_type) is None:
                    raise BundleError(
                        f"layer {layer.digest} in {layout.label} has unknown media type {layer.media_type}"
                    )
                with layout.blobs.open(layer.digest, layer.size) as blob:
                    stream = open_layer(blob, layer.media_type, what=f"layer {layer.digest}")
                    apply_layer(stream, rootfs, what=f"layer {layer.digest}")
                    # drain: the verifying reader checks size and digest at EOF
                    while stream.read(1 << 20):
                        pass
                    while blob.read(1 << 20):
                        pass
            spec = make_runtime_config(
                image.config, rootfs, rootless=rootless, host_uid=host_uid, host_gid=host_gid
            )
            record = {
                "version": RECORD_VERSION,
                "layout": str(layout.root),
                "source": source,
                "manifest": image.descriptor.to_dict(),
                "rootless": rootless,
                "tree": _tree_record(rootfs).to_json(),
            }
            _write_atomic(bundle / "config.json", json.dumps(spec, indent=2).encode())
            _write_atomic(bundle / RECORD, dump_json(record))
        except BaseException:
            for child in bundle.iterdir() if bundle.exists() else []:
                force_remove(child)
            if created:
                with contextlib.suppress(OSError):
                    bundle.rmdir()
            raise

    for message in run_in_userns(work):
        warn(message)
    return UnpackResult(bundle)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_record(bundle: Path) -> dict[str, Any]:
    path = Path(bundle) / RECORD
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BundleError(f"{bundle} was not unpacked by pybuild: {RECORD} is missing") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} is unreadable: {exc}") from None
    if (
        not isinstance(record, dict)
        or record.get("version") != RECORD_VERSION
        or not isinstance(record.get("tree"), dict)
    ):
        raise BundleError(f"{path} is not a pybuild unpack record")
    return record


def bundle_changes(bundle: Path) -> list[Change]:
    """What changed in ``bundle/rootfs`` since unpack, by the one tree comparison (diff/trees.py)
    against the record unpack made."""
    record = read_record(bundle)
    try:
        before = TreeRecord.from_json(record["tree"])
    except ValueError as exc:
        raise BundleError(f"{Path(bundle) / RECORD} is not a pybuild unpack record: {exc}") from None
    rootfs = Path(bundle) / "rootfs"
    try:
        return changes_of(compare(before, rootfs))
    except LayerError as exc:
        raise BundleError(str(exc)) from None


def repack_bundle(
    bundle: Path,
    image: Image,
    layout: Layout,
    *,
    compression: str = "gzip",
    source_date_epoch: int | None = None,
    history_comment: str = "",
) -> Descriptor:
    """Commit the bundle's changes as one layer on top of ``image`` (hold ``layout.writing()``).

    As root the layer streams straight into the blob store. Unprivileged, the bundle is read inside
    a user namespace (its files belong to subordinate ids) and the uncompressed tar passes through
    a temp file in the bundle, which is compressed and stored here.
    """
    from ..diff import LayerWriter
    from ..run import run_in_userns

    bundle = Path(bundle).absolute()
    rootfs = bundle / "rootfs"
    created = created_time(source_date_epoch)
    layers = list(image.layers)
    media = mediatype.layer_media_type(compression, docker=image.is_docker)
    diff_id: Digest | None = None
    if os.geteuid() == 0:
        changes = bundle_changes(bundle)
        if changes:
            with layout.blobs.writer() as writer:
                stats = write_layer(
                    changes, rootfs, writer, compression=compression, source_date_epoch=source_date_epoch
                )
            assert writer.digest is not None
            layers.append(Descriptor(media, writer.digest, writer.size))
            diff_id = Digest.parse(stats.diff_id)
    else:
        temp = bundle / f".pybuild-repack-{os.getpid()}.tar"

        def produce() -> bool:
            changes = bundle_changes(bundle)
            if not changes:
                return False
            with open(temp, "wb") as out:
                write_layer(changes, rootfs, out, compression="none", source_date_epoch=source_date_epoch)
            return True

        try:
            if run_in_userns(produce):
                with layout.blobs.writer() as writer, open(temp, "rb") as tar:
                    sink = LayerWriter(writer, compression)
                    while chunk := tar.read(1 << 20):
                        sink.write(chunk)
                    stats = sink.close()
                assert writer.digest is not None
                layers.append(Descriptor(media, writer.digest, writer.size))
                diff_id = Digest.parse(stats.diff_id)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()

    def change(doc: dict[str, Any]) -> None:
        add_history(
            doc,
            created,
            "pybuild repack",
            diff_id=str(diff_id) if diff_id is not None else None,
            comment=history_comment,
        )

    config = image.config.changed(change)
    return commit_image(
        layout, config, layers, docker=image.is_docker, annotations=image.manifest.annotations or None
    )


def repack(
    bundle: Path,
    store: ImageStore,
    tag: str,
    *,
    compression: str = "gzip",
    comment: str = "",
    source_date_epoch: int | None = None,
) -> Descriptor:
    """What changed in ``bundle`` (made by :func:`unpack_image`) as a new layer on top of the image it
    was unpacked from, named ``tag`` (a store name or oci:DIR:TAG; the image's blobs are copied there
    when needed). ``source_date_epoch``: the created time and the clamp of file times (default
    $SOURCE_DATE_EPOCH, else now). Returns the new manifest's descriptor."""
    if compression not in ("gzip", "zstd", "none"):
        raise UsageError(f"--compression {compression!r}: expected gzip, zstd or none")
    record = read_record(bundle)
    source = Layout.open(record["layout"])
    desc = Descriptor.from_dict(record["manifest"], f"{bundle}: manifest")
    layout, name = destination(store, tag)
    epoch = source_date_epoch if source_date_epoch is not None else environment_epoch()
    with layout.writing():
        if layout.root != source.root:
            copy_blobs(source, layout, desc)
        image = load_image(layout, desc)
        if image.is_docker and compression == "zstd":
            raise UsageError(f"{tag}: Docker-format images have gzip or plain tar layers, not zstd")
        new = repack_bundle(
            bundle, image, layout, compression=compression, source_date_epoch=epoch, history_comment=comment
        )
        layout.set_tag(name, new)
    return new


def unpack_ref(store: ImageStore, ref: str, bundle: Path, *, rootless: bool | None = None) -> UnpackResult:
    """Unpack the image ``ref`` names (in ``store`` or oci:DIR[:TAG]) into the runtime bundle
    ``bundle`` (see :func:`unpack_image`)."""
    found = locate(store, ref)
    return unpack_image(load_image(found.layout, found.descriptor), bundle, rootless=rootless, source=ref)
