"""write_layer's bytes are tarfile's bytes: the headers built by hand, the data read in large chunks
and written from a thread must give exactly what ``tarfile`` (PAX, ``addfile`` per entry) gave."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import threading
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pybuild.diff import Change, LayerWriter, write_layer, write_tree
from pybuild.diff.compression import CHUNK
from pybuild.diff.idmap import IdMap
from pybuild.diff.tarwriter import _header, _keep_xattr, sort_key, tar_name
from pybuild.diff.trees import walk
from pybuild.errors import LayerError
from pybuild.layout import Layout

ROOT = os.geteuid() == 0
CAPABILITY = b"\x01\x00\x00\x02" + bytes(16)  # vfs_cap_data v2, effective, no capabilities


# --- the reference: write_layer as it was, every entry through tarfile.addfile --------------------


def reference_layer(
    changes: Iterable[Change], root: Path, source_date_epoch: int | None = None, id_map: IdMap | None = None
) -> bytes:
    out = io.BytesIO()
    entries = sorted(((tar_name(c), c) for c in changes), key=lambda e: sort_key(e[0]))
    links: dict[tuple[int, int], str] = {}
    seen: set[str] = set()
    clamp = source_date_epoch
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, change in entries:
            if name in seen:
                continue
            seen.add(name)
            if change.kind != "add":
                info = tarfile.TarInfo(name)
                info.type = tarfile.REGTYPE
                info.mode = 0o644
                info.mtime = clamp or 0
                info.uname = info.gname = ""
                tar.addfile(info)
                continue
            _reference_add(tar, root, change.path, links, clamp, id_map)
    return out.getvalue()


def _reference_add(
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
        return
    try:
        tar.addfile(info, data)
    finally:
        if data is not None:
            data.close()


def new_layer(changes: Iterable[Change], root: Path, **kwargs: Any) -> bytes:
    out = io.BytesIO()
    stats = write_layer(changes, root, out, compression="none", **kwargs)
    data = out.getvalue()
    assert stats.diff_id == stats.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stats.size == len(data)
    return data


def all_of(root: Path) -> list[Change]:
    return [Change(path, "add") for path, _ in walk(root)]


# --- a tree with every kind of entry and every header corner ---------------------------------------


def _set_mtime(path: Path, mtime: int) -> None:
    os.utime(path, (mtime, mtime), follow_symlinks=False)


def make_tree(root: Path) -> list[Change]:
    """Every entry kind and header corner; returns the changes, with whiteouts, to write."""
    root.mkdir()
    d = root / "d"
    d.mkdir()
    for size in (0, 1, 511, 512, 513, 10240, 10241):
        (d / f"f{size}").write_bytes(os.urandom(size))
    for size in (CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 700):  # chunk boundaries, the writing thread
        (d / f"big{size}").write_bytes(os.urandom(size))
    # names about the 100-byte ustar limit, for files and directories (which get a "/")
    for length in (99, 100, 101, 150):
        (root / ("n" * length)).write_text("x")
        (root / ("m" * (length - 2))).mkdir()
    (root / ("m" * 98) / "child").write_text("y")
    deep = root / "deep"
    deep.mkdir()
    (deep / ("p" * 90) / ("q" * 90)).mkdir(parents=True)
    (deep / ("p" * 90) / ("q" * 90) / "file").write_text("z")
    # non-ASCII names, names that are not UTF-8, and their links
    (root / "café").write_text("utf-8")
    (root / "日本語").mkdir()
    bad = os.fsencode(root) + b"/caf\xe9"
    with open(bad, "wb") as f:
        f.write(b"latin-1 name")
    os.symlink("café", root / "sym-utf8")
    os.symlink(os.fsdecode(b"caf\xe9"), root / "sym-bytes")
    os.symlink("t" * 150, root / "sym-long")
    os.symlink("t" * 100, root / "sym-100")
    os.symlink("../d/f1", root / "sym-short")
    # hard links: short, long and non-ASCII first names
    (root / "h1").write_text("shared")
    os.link(root / "h1", root / "h2")
    os.link(root / "h1", root / ("h" * 120))
    (root / "hé").write_text("shared too")
    os.link(root / "hé", root / "hz")
    (root / ("i" * 110)).write_text("long first name")
    os.link(root / ("i" * 110), root / "iz")
    # modes, fifos, sockets (skipped), xattrs
    (root / "setuid").write_text("s")
    os.chmod(root / "setuid", 0o6755)
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    os.mkfifo(root / "fifo")
    os.mknod(root / "socket", stat.S_IFSOCK | 0o600)
    (root / "xattrs").write_text("x")
    os.setxattr(root / "xattrs", "user.plain", b"value")
    os.setxattr(root / "xattrs", "user.binary", b"\xff\x00\xfe")
    os.setxattr(root / "xattrs", "user.utf8", "é".encode())
    os.setxattr(root / "xattrs", "user.overlay.opaque", b"y")
    (root / "xdir").mkdir()
    os.setxattr(root / "xdir", "user.dir", b"1")
    # times: before 1970, the ustar limit, after it
    for name, mtime in (("t-neg", -100_000), ("t-zero", 0), ("t-max", 8**11 - 1), ("t-over", 8**11)):
        (root / name).write_text(name)
        _set_mtime(root / name, mtime)
    if ROOT:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "sda", stat.S_IFBLK | 0o660, os.makedev(8, 1))
        os.mknod(root / "bigdev", stat.S_IFCHR | 0o600, os.makedev(4095, 1048575))
        os.mknod(root / "whiteout", stat.S_IFCHR, os.makedev(0, 0))
        os.setxattr(root / "xattrs", "trusted.secret", b"dropped")
        os.setxattr(root / "xattrs", "security.capability", CAPABILITY)
        for name, uid in (("u-fit", 8**7 - 1), ("u-over", 8**7), ("u-big", 2**32 - 2)):
            (root / name).write_text(name)
            os.chown(root / name, uid, 7)
        os.chown(root / "sym-short", 8**7, 8**7, follow_symlinks=False)
        os.chown(root / "fifo", 12, 8**7 + 5)
    changes = all_of(root)
    changes += [
        Change("d/gone", "delete"),
        Change("d", "opaque"),
        Change("w" * 120, "delete"),
        Change("d/" + "v" * 97, "delete"),
        Change("dé/gone", "delete"),
        Change(os.fsdecode(b"x\xff/y"), "delete"),
        Change("café", "add"),  # twice: written once
    ]
    return changes


@pytest.fixture(scope="module")
def corners(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Change]]:
    root = tmp_path_factory.mktemp("corners") / "r"
    return root, make_tree(root)


@pytest.mark.parametrize("epoch", [None, 0, 1000, 1_700_000_000, 8**11 + 5])
def test_same_bytes_as_tarfile(corners: tuple[Path, list[Change]], epoch: int | None) -> None:
    root, changes = corners
    assert new_layer(changes, root, source_date_epoch=epoch) == reference_layer(changes, root, epoch)


def test_same_bytes_as_tarfile_through_an_id_map(corners: tuple[Path, list[Change]]) -> None:
    root, changes = corners
    shifted = IdMap(uids=((7, 0, 2**32 - 1),), gids=((3, 0, 2**32 - 1),))
    assert new_layer(changes, root, id_map=shifted) == reference_layer(changes, root, id_map=shifted)
    narrow = IdMap(uids=((0, 0, 1),), gids=((0, 0, 1),))
    if ROOT:
        with pytest.raises(LayerError, match=r"outside the id map$") as caught:
            new_layer(changes, root, id_map=narrow)
        with pytest.raises(LayerError) as expected:
            reference_layer(changes, root, id_map=narrow)
        assert str(caught.value) == str(expected.value)


def test_tarfile_reads_every_entry_back(corners: tuple[Path, list[Change]]) -> None:
    root, changes = corners
    with tarfile.open(fileobj=io.BytesIO(new_layer(changes, root))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        big = members[f"d/big{3 * CHUNK + 700}"]
        assert tar.extractfile(big).read() == (root / big.name).read_bytes()  # type: ignore[union-attr]
    assert members["d/.wh." + "v" * 97].size == 0  # a whiteout name of 103 bytes
    assert members["sym-long"].linkname == "t" * 150
    assert members["h" * 120].linkname == "h1" and members["iz"].linkname == "i" * 110
    assert "socket" not in members


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_layers_hold_the_same_tar(corners: tuple[Path, list[Change]], compression: str) -> None:
    root, changes = corners
    out = io.BytesIO()
    stats = write_layer(changes, root, out, compression=compression)
    reference = io.BytesIO()
    with LayerWriter(reference, compression) as writer:
        writer.write(reference_layer(changes, root))
    assert out.getvalue() == reference.getvalue()
    assert stats == writer.stats


@settings(max_examples=60, deadline=None)
@given(
    spec=st.dictionaries(
        st.text(st.sampled_from("ab/é\udcff."), min_size=1, max_size=6).filter(
            lambda n: "/" not in n and n not in (".", "..")
        ),
        st.tuples(
            st.sampled_from(["file", "dir", "link", "fifo"]),
            st.integers(0, 3000),
            st.sampled_from([0o644, 0o4755, 0o1777, 0o000]),
            st.integers(-(2**34), 2**34),
        ),
        max_size=6,
    ),
    epoch=st.one_of(st.none(), st.integers(0, 2**34)),
)
def test_same_bytes_as_tarfile_for_any_tree(
    tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any], epoch: int | None
) -> None:
    root = tmp_path_factory.mktemp("any")
    for name, (kind, size, mode, mtime) in spec.items():
        path = root / name
        if kind == "file":
            path.write_bytes(b"%d" % size * (size // 4))
        elif kind == "dir":
            path.mkdir()
            (path / name).write_bytes(b"in")
        elif kind == "link":
            os.symlink(name * (1 + size // 10), path)
        else:
            os.mkfifo(path)
        if kind != "link":
            os.chmod(path, mode | 0o700 if kind == "dir" else mode)
        _set_mtime(path, mtime)
    changes = all_of(root) + [Change(name + "x", "delete") for name in spec]
    assert new_layer(changes, root, source_date_epoch=epoch) == reference_layer(changes, root, epoch)


# --- the hand-built header against TarInfo.tobuf ---------------------------------------------------

KINDS = [tarfile.REGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE]
NAMES = st.text(st.sampled_from("aZ09/._-~ é\udce9日"), max_size=130) | st.text(max_size=110)


def around(*edges: int) -> st.SearchStrategy[int]:
    near = [e + d for e in edges for d in (-1, 0, 1)]
    return st.sampled_from(near) | st.integers(min(near), max(near))


@settings(max_examples=1000, deadline=None)
@given(
    name=NAMES,
    linkname=NAMES,
    kind=st.sampled_from(KINDS),
    mode=st.integers(0, 0o177777),
    uid=around(0, 8**7, 2**32),
    gid=around(0, 8**7, 2**32),
    size=around(0, 8**11, 2**40),
    mtime=around(-(2**40), 0, 8**11, 2**40),
)
@example(name="a" * 100, linkname="", kind=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, size=0, mtime=0)
@example(name="a" * 99, linkname="", kind=tarfile.DIRTYPE, mode=0o755, uid=0, gid=0, size=0, mtime=0)
@example(name="a" * 100, linkname="", kind=tarfile.DIRTYPE, mode=0o755, uid=0, gid=0, size=0, mtime=0)
@example(name="x", linkname="b" * 100, kind=tarfile.SYMTYPE, mode=0o777, uid=0, gid=0, size=0, mtime=0)
@example(name="x", linkname="b" * 101, kind=tarfile.LNKTYPE, mode=0o644, uid=0, gid=0, size=0, mtime=0)
def test_hand_built_header_is_tarfiles(
    name: str, linkname: str, kind: bytes, mode: int, uid: int, gid: int, size: int, mtime: int
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode & 0o7777, uid, gid, mtime
    info.size = size if kind == tarfile.REGTYPE else 0
    info.linkname = linkname if kind in (tarfile.LNKTYPE, tarfile.SYMTYPE) else ""
    info.uname = info.gname = ""
    try:
        want: bytes | None = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    except ValueError:  # a number too large even for pax: tarfile's own error stays
        want = None
    full_name = name + "/" if kind == tarfile.DIRTYPE and not name.endswith("/") else name
    got = _header(full_name, mode, uid, gid, info.size, mtime, kind, info.linkname)
    if got is not None:
        assert got == want
    else:  # only what needs a pax header (or fails) is left to tarfile
        assert want is None or len(want) > tarfile.BLOCKSIZE


# --- errors, threads and memory -------------------------------------------------------------------


class Full:
    """Fails like a full disk once it holds more than ``room`` bytes; counts writes after that."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.size = 0
        self.after = 0

    def write(self, data: Any) -> int:
        n = len(memoryview(data))
        if self.size + n > self.room:
            self.after += 1
            raise OSError(28, "No space left on device")
        self.size += n
        return n


def big_tree(root: Path, files: int = 6, size: int = 3 * CHUNK + 17) -> Path:
    root.mkdir()
    for i in range(files):
        (root / f"f{i}").write_bytes(os.urandom(size))
    return root


@pytest.mark.parametrize("room", [0, 10, CHUNK, 5 * CHUNK + 3])
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_full_disk_is_one_layer_error_and_threads_end(tmp_path: Path, room: int, compression: str) -> None:
    root = big_tree(tmp_path / "r")
    before = threading.active_count()
    sink = Full(room)
    with pytest.raises(LayerError, match=r"^cannot write a layer from .*: No space left on device$"):
        write_layer(all_of(root), root, sink, compression=compression)
    assert threading.active_count() == before
    assert sink.after == 1  # nothing was written after the first failure


def test_sink_exception_propagates_and_threads_end(tmp_path: Path) -> None:
    root = big_tree(tmp_path / "r")

    class Broken:
        def write(self, data: Any) -> int:
            raise RuntimeError("broken sink")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="broken sink"):
        write_layer(all_of(root), root, Broken(), compression="none")
    assert threading.active_count() == before


def test_file_that_shrank_is_a_layer_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = big_tree(tmp_path / "r", files=2)
    changes = all_of(root)  # (walking the tree lstats too: before the patch)
    real = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> Any:
        st = real(path, *args, **kwargs)
        if str(path).endswith("/f1"):
            os.truncate(path, 100)  # after the size was taken
        return st

    monkeypatch.setattr(os, "lstat", lstat)
    before = threading.active_count()
    with pytest.raises(LayerError, match=r"^cannot write a layer from .*: unexpected end of data$"):
        write_layer(changes, root, io.BytesIO(), compression="gzip")
    assert threading.active_count() == before


def test_small_layer_starts_no_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "f").write_bytes(b"x" * (CHUNK // 2))
    started: list[Any] = []
    monkeypatch.setattr(threading.Thread, "start", started.append)
    write_layer(all_of(root), root, io.BytesIO(), compression="none")
    assert started == []


def test_memory_stays_bounded_with_a_slow_sink(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    with open(root / "sparse", "wb") as f:
        f.truncate(48 * CHUNK)  # reads as zeros, costs no disk

    class Slow:
        def write(self, data: Any) -> int:
            time.sleep(0.002)
            return len(memoryview(data))

    tracemalloc.start()
    try:
        write_layer(all_of(root), root, Slow(), compression="none")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * CHUNK, peak


# --- into the blob store: one hash for an uncompressed layer --------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_layer_into_the_blob_store(tmp_path: Path, compression: str) -> None:
    root = big_tree(tmp_path / "r", files=3)
    layout = Layout.create(tmp_path / "l")
    with layout.blobs.writer() as writer:
        stats = write_layer(all_of(root), root, writer, compression=compression)
    assert writer.digest is not None and str(writer.digest) == stats.digest and writer.size == stats.size
    blob = layout.blobs.read(writer.digest, limit=1 << 30)
    assert stats.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    out = io.BytesIO()
    write_tree(root, out, compression="none")
    assert stats.diff_id == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    if compression == "none":
        assert blob == out.getvalue()


def test_sha512_blob_writer_is_hashed_on_its_own(tmp_path: Path) -> None:
    root = big_tree(tmp_path / "r", files=1)
    layout = Layout.create(tmp_path / "l")
    with layout.blobs.writer("sha512") as writer:
        assert writer.sha256_hasher() is None
        stats = write_layer(all_of(root), root, writer, compression="none")
    out = io.BytesIO()
    write_tree(root, out, compression="none")
    assert stats.diff_id == stats.digest == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    assert writer.digest is not None and writer.digest.algorithm == "sha512"


def test_shared_hasher_only_for_a_fresh_sha256_writer(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    with layout.blobs.writer() as writer:
        assert writer.sha256_hasher() is not None
        writer.write(b"already")
        assert writer.sha256_hasher() is None
        sink = LayerWriter(writer, "none")  # hashes on its own: the blob holds more than the layer
        sink.write(b"layer")
        stats = sink.close()
    assert stats.diff_id == "sha256:" + hashlib.sha256(b"layer").hexdigest()
    assert str(writer.digest) == "sha256:" + hashlib.sha256(b"alreadylayer").hexdigest()


def test_sort_key_orders_as_component_pairs() -> None:
    """The one-string key sorts as the list of (whiteout first, component) pairs it stands for,
    including names with control characters, prefixes of each other and whiteouts."""
    import itertools

    def pairs(name: str) -> list[tuple[int, str]]:
        return [(0 if part.startswith(".wh.") else 1, part) for part in name.split("/")]

    parts = ["a", "b", "a!", "ab", "a\x01", "\x01", "\x02", "é", ".wh.a", ".wh..wh..opq", "z"]
    names = {"/".join(c) for n in (1, 2, 3) for c in itertools.product(parts, repeat=n)}
    assert sorted(names, key=sort_key) == sorted(names, key=pairs)
