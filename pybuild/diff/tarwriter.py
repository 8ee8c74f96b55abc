"""The deterministic layer writer: PAX tar, sorted, whiteouts first, streamed through compression."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import LayerError
from .changeset import OPAQUE, WHITEOUT_PREFIX, Change, walk
from .compression import LayerStats, LayerWriter, Sink
from .idmap import IdMap

KEPT_XATTR_PREFIXES = ("user.",)
KEPT_XATTRS = ("security.capability",)


def _keep_xattr(name: str) -> bool:
    if name.startswith(("user.overlay.", "trusted.")):
        return False
    return name in KEPT_XATTRS or name.startswith(KEPT_XATTR_PREFIXES)


def tar_name(change: Change) -> str:
    if change.kind == "add":
        return change.path
    parent, _, base = change.path.rpartition("/")
    name = OPAQUE if change.kind == "opaque" else WHITEOUT_PREFIX + base
    target = change.path if change.kind == "opaque" else parent
    return f"{target}/{name}" if target else name


def sort_key(name: str) -> list[tuple[int, str]]:
    """Parents before children; in a directory, whiteouts before their siblings."""
    return [(0 if part.startswith(WHITEOUT_PREFIX) else 1, part) for part in name.split("/")]


def _whiteout_info(name: str, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.mode = 0o644
    info.mtime = mtime
    info.uname = info.gname = ""
    return info


def write_layer(
    changes: Iterable[Change],
    root: Path,
    out: Sink,
    *,
    compression: str = "gzip",
    source_date_epoch: int | None = None,
    id_map: IdMap | None = None,
) -> LayerStats:
    """Write the changes (entries read from ``root``) as a layer to ``out``; returns its LayerStats."""
    root = Path(root)
    entries = sorted(((tar_name(c), c) for c in changes), key=lambda e: sort_key(e[0]))
    sink = LayerWriter(out, compression)
    links: dict[tuple[int, int], str] = {}
    seen: set[str] = set()
    clamp = source_date_epoch
    # no `with` around the tar: after a failure its close would write the end-of-archive blocks
    # into the failed writer, and that second error would hide the first (ENOSPC, say)
    tar: Any = None
    try:
        tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]  # noqa: SIM115
        tar.copybufsize = 1 << 20
        for name, change in entries:
            if name in seen:
                continue
            seen.add(name)
            if change.kind != "add":
                tar.addfile(_whiteout_info(name, clamp or 0))
                continue
            _add(tar, root, change.path, links, clamp, id_map)
        tar.close()
        return sink.close()
    except tarfile.TarError as exc:
        _discard(tar, sink)
        raise LayerError(f"cannot write a layer from {root}: {exc}") from None
    except OSError as exc:
        _discard(tar, sink)
        where = f": {exc.filename}" if exc.filename else ""
        raise LayerError(f"cannot write a layer from {root}: {exc.strerror or exc}{where}") from None
    except BaseException:
        _discard(tar, sink)
        raise


def _discard(tar: Any, sink: LayerWriter) -> None:
    """After a failure: stop the compression threads, and mark the tar closed so that neither its
    close nor its stream's finaliser writes into the failed writer."""
    sink.abort()
    if tar is not None:
        tar.closed = True
        stream = getattr(tar, "fileobj", None)
        if stream is not None and hasattr(stream, "closed"):
            stream.closed = True


def _add(
    tar: tarfile.TarFile,
    root: Path,
    path: str,
    links: dict[tuple[int, int], str],
    clamp: int | None,
    id_map: IdMap | None,
) -> None:
    full = root / path
    st = os.lstat(full)
    info = tarfile.TarInfo(path)
    mode = st.st_mode
    info.mode = stat.S_IMODE(mode)
    uid, gid = st.st_uid, st.st_gid
    if id_map is not None:
        uid, gid = id_map.to_container(uid, gid)
        if uid < 0 or gid < 0:
            raise LayerError(f"{path} in {root} is owned by {st.st_uid}:{st.st_gid}, outside the id map")
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    mtime = int(st.st_mtime)
    info.mtime = min(mtime, clamp) if clamp is not None else mtime
    pax: dict[str, str] = {}
    try:
        for attr in os.listxattr(full, follow_symlinks=False):
            if _keep_xattr(attr):
                value = os.getxattr(full, attr, follow_symlinks=False)
                pax["SCHILY.xattr." + attr] = value.decode("utf-8", "surrogateescape")
    except OSError:
        pass
    info.pax_headers = pax
    data = None
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info.type = tarfile.LNKTYPE
            info.linkname = links[key]
        else:
            if st.st_nlink > 1:
                links[key] = path
            info.type = tarfile.REGTYPE
            info.size = st.st_size
            data = open(full, "rb")  # noqa: SIM115 - closed below
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(full)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        return  # sockets have no tar form
    try:
        tar.addfile(info, data)
    finally:
        if data is not None:
            data.close()


def write_tree(root: Path, out: Sink, **kwargs: Any) -> LayerStats:
    """Every entry below ``root`` as one layer (a base layer)."""
    return write_layer((Change(path, "add") for path, _ in walk(Path(root))), root, out, **kwargs)
