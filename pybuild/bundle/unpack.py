"""Runtime bundles: ``unpack`` an image into rootfs + config.json, ``repack`` a changed rootfs.

``unpack`` applies the layers in order with the safe applier, writes config.json (conversion.md),
and records the tree it produced in ``.pybuild-unpack.json`` beside the rootfs; ``repack`` compares
the rootfs with that record and commits what changed as one new layer on top of the image.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..diff import Change, apply_layer, open_layer, write_layer
from ..errors import BundleError
from ..layout import Descriptor, Image, Layout, commit_image, dump_json, mediatype
from ..layout.digest import Digest
from ..run import force_remove
from .runtimeconfig import make_runtime_config

RECORD = ".pybuild-unpack.json"
RECORD_VERSION = 1


def _tree_record(rootfs: Path) -> dict[str, list[Any]]:
    """path -> [mode, uid, gid, size, mtime_ns, ctime_ns, ino, link target] for every entry."""
    out: dict[str, list[Any]] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        folder = rootfs / rel if rel else rootfs
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise BundleError(f"cannot read {folder}: {exc.strerror or exc}") from None
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            target = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
            out[path] = [
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_ino,
                target,
            ]
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)
    return out


@dataclass(frozen=True)
class UnpackResult:
    bundle: Path
    warnings: list[str]


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
        warnings: list[str] = []
        rootfs = bundle / "rootfs"
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
                    report = apply_layer(stream, rootfs, what=f"layer {layer.digest}")
                    # drain: the verifying reader checks size and digest at EOF
                    while stream.read(1 << 20):
                        pass
                    while blob.read(1 << 20):
                        pass
                    warnings.extend(report.warnings)
            spec = make_runtime_config(
                image.config, rootfs, rootless=rootless, host_uid=host_uid, host_gid=host_gid
            )
            record = {
                "version": RECORD_VERSION,
                "layout": str(layout.root),
                "source": source,
                "manifest": image.descriptor.to_dict(),
                "rootless": rootless,
                "tree": _tree_record(rootfs),
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
        return warnings

    return UnpackResult(bundle, run_in_userns(work))


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
    """What changed in ``bundle/rootfs`` since unpack: additions/modifications and deletions."""
    record = read_record(bundle)
    before: dict[str, list[Any]] = record["tree"]
    now = _tree_record(Path(bundle) / "rootfs")
    changes: list[Change] = []
    for path, meta in now.items():
        old = before.get(path)
        if old is None or old != meta:
            # a changed directory whose only change is its children is still written: harmless
            if old is not None and stat.S_ISDIR(meta[0]) and stat.S_ISDIR(old[0]) and old[:4] == meta[:4]:
                continue
            if old is not None and stat.S_ISDIR(meta[0]) != stat.S_ISDIR(old[0]):
                changes.append(Change(path, "delete"))
            changes.append(Change(path, "add"))
    deleted = sorted(p for p in before if p not in now)
    gone: set[str] = set()
    for path in deleted:  # only the top of a deleted subtree needs a whiteout
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent in gone:
            gone.add(path)
            continue
        gone.add(path)
        changes.append(Change(path, "delete"))
    return changes


def _now(epoch: int | None) -> str:
    when = datetime.fromtimestamp(epoch, UTC) if epoch is not None else datetime.now(UTC)
    return (
        when.strftime("%Y-%m-%dT%H:%M:%SZ") if epoch is not None else when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )


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
    created = _now(source_date_epoch)
    entry: dict[str, Any] = {"created": created, "created_by": "pybuild repack"}
    if history_comment:
        entry["comment"] = history_comment
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
    if diff_id is None:
        entry["empty_layer"] = True

    def change(doc: dict[str, Any]) -> None:
        doc["created"] = created
        if diff_id is not None:
            doc["rootfs"]["diff_ids"].append(str(diff_id))
        doc.setdefault("history", []).append(entry)

    config = image.config.changed(change)
    return commit_image(
        layout, config, layers, docker=image.is_docker, annotations=image.manifest.annotations or None
    )
