"""The applier's tar reader against tarfile, and the applier's worker threads."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.diff import applier as applier_module
from pybuild.diff import apply_layer
from pybuild.diff.tarreader import TarEntry, TarReader
from pybuild.errors import LayerError

FORMATS = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT, "ustar": tarfile.USTAR_FORMAT}
KINDS = ["file", "dir", "symlink", "hardlink", "chr", "blk", "fifo"]

segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1, max_size=40
)
names = st.lists(segment, min_size=1, max_size=9).map("/".join)
members = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(KINDS),
            "name": names,
            "link": names,
            "size": st.integers(0, 3000),
            "mode": st.integers(0, 0o7777),
            "uid": st.integers(0, 1 << 21),
            "gid": st.integers(0, 70000),
            "mtime": st.one_of(st.integers(0, 1 << 33), st.floats(0, 1e10)),
            "xattrs": st.dictionaries(
                st.sampled_from(["user.a", "user.long.name", "security.capability"]),
                st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
                max_size=2,
            ),
        }
    ),
    min_size=1,
    max_size=12,
)


def m(kind: str, name: str, **over: object) -> dict[str, object]:
    """One member for ``build``: a root-owned entry with mtime 1, changed by ``over``."""
    base: dict[str, object] = {"kind": kind, "name": name, "link": "", "size": 0, "mode": 0o644}
    return {**base, "uid": 0, "gid": 0, "mtime": 1, "xattrs": {}, **over}


def build(entries: list[dict[str, object]], fmt: int, global_headers: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=global_headers) as tar:
        for i, e in enumerate(entries):
            info = tarfile.TarInfo(str(e["name"]))
            info.mode, info.uid, info.gid = int(e["mode"]), int(e["uid"]), int(e["gid"])  # type: ignore[call-overload]
            info.mtime = e["mtime"]  # type: ignore[assignment]
            data = None
            kind = e["kind"]
            if kind == "file":
                info.size = int(e["size"])  # type: ignore[call-overload]
                data = io.BytesIO(bytes([i % 251]) * info.size)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = str(e["link"])
            else:
                info.type = {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[
                    str(kind)
                ]
                info.devmajor, info.devminor = 8, i
            if fmt == tarfile.PAX_FORMAT:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e["xattrs"].items()}  # type: ignore[attr-defined]
            try:
                tar.addfile(info, data)
            except ValueError:
                continue  # a name or number this format cannot hold
    return buf.getvalue()


def by_tarfile(data: bytes) -> list[tuple[object, ...]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for info in tar:
            body = tar.extractfile(info).read() if info.isreg() else b""  # type: ignore[union-attr]
            out.append((*key(TarEntry.from_tarinfo(info)), body))
    return out


def by_reader(data: bytes, chunked: bool = False) -> tuple[list[tuple[object, ...]], bool]:
    stream: object = io.BytesIO(data)
    if chunked:  # a raw stream that returns short reads
        stream = _Dribble(data)
    reader = TarReader(stream, "layer")  # type: ignore[arg-type]
    out = []
    while (entry := reader.next()) is not None:
        body = reader.read(entry.size) if entry.isreg() else b""
        while len(body) < entry.size and (more := reader.read(entry.size - len(body))):
            body += more
        out.append((*key(entry), body))
    return out, reader.fell_back


class _Dribble:
    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.data.read(min(n, 700) if n >= 0 else 700)


def key(e: TarEntry) -> tuple[object, ...]:
    return (
        e.name,
        e.type,
        e.mode,
        e.uid,
        e.gid,
        e.size,
        e.mtime,
        e.linkname,
        e.devmajor,
        e.devminor,
        e.xattrs,
    )


@settings(max_examples=150, deadline=None)
@given(entries=members, fmt=st.sampled_from(sorted(FORMATS)), chunked=st.booleans())
def test_fast_parser_reads_what_tarfile_reads(
    entries: list[dict[str, object]], fmt: str, chunked: bool
) -> None:
    data = build(entries, FORMATS[fmt])
    got, fell_back = by_reader(data, chunked)
    assert got == by_tarfile(data)
    assert not fell_back


def test_long_names_and_links_in_every_format() -> None:
    long = "/".join(["d" * 60] * 6)  # 365 characters: GNU long names, PAX path, no ustar prefix split
    entries = [
        m("file", long, size=5, mtime=1.5),
        m("symlink", "s", link=long, mode=0o777),
        m("hardlink", long + "2", link=long),
    ]
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        data = build(entries, fmt)
        got, fell_back = by_reader(data)
        assert got == by_tarfile(data) and not fell_back
        assert got[0][0] == long and got[1][7] == long
    split = "/".join(["p" * 50] * 3) + "/name"  # fits ustar's prefix + name
    data = build([{**entries[0], "name": split}], tarfile.USTAR_FORMAT)
    assert by_reader(data)[0][0][0] == split


def test_global_pax_header_falls_back_to_tarfile() -> None:
    entries = [m("file", f"f{i}", size=700, mode=0o600, uid=1, gid=2, mtime=3) for i in range(3)]
    data = build(entries, tarfile.PAX_FORMAT, {"comment": "global"})
    got, fell_back = by_reader(data)
    assert fell_back and got == by_tarfile(data) and len(got) == 3


def test_sparse_member_falls_back_to_tarfile(tmp_path: Path) -> None:
    # a GNU sparse header ("S") written by hand: one 512-byte data region at offset 0, real size 2048
    info = tarfile.TarInfo("sparse")
    info.type, info.size, info.mode = tarfile.GNUTYPE_SPARSE, 512, 0o644
    head = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    head[386:398] = b"%011o\0" % 0  # sparse[0].offset
    head[398:410] = b"%011o\0" % 512  # sparse[0].numbytes
    head[483:495] = b"%011o\0" % 2048  # realsize
    head[148:156] = b"        "
    head[148:155] = b"%06o\0" % (sum(head) & 0o777777)
    data = bytes(head) + b"s" * 512 + tarfile.TarInfo("after").tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024
    got, fell_back = by_reader(data)
    assert fell_back and got == by_tarfile(data)
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(io.BytesIO(data), root)
    assert (root / "sparse").read_bytes() == b"s" * 512 + b"\0" * 1536
    assert (root / "after").exists()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_truncation_is_a_layer_error_or_a_clean_end(tmp_path: Path, fmt: str) -> None:
    entries = [
        m("dir", "d", mode=0o755),
        m("file", "d/" + "n" * 120, size=1300, xattrs={"user.a": "v"}),
        m("file", "last", size=10),
    ]
    data = build(entries, FORMATS[fmt])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.getmembers()
        end = tar.offset  # where the zero blocks start
    for cut in range(0, end, 97):
        root = tmp_path / f"r{cut}"
        root.mkdir()
        try:
            apply_layer(io.BytesIO(data[:cut]), root)
        except LayerError as exc:
            assert "\n" not in str(exc)
            assert any(w in str(exc) for w in ("truncated", "corrupt", "not a tar stream"))
        else:
            pytest.fail(f"a stream cut at {cut} of {end} bytes was accepted")


def test_bad_checksum_is_corrupt(tmp_path: Path) -> None:
    good = tarfile.TarInfo("a").tobuf(tarfile.USTAR_FORMAT)
    bad = bytearray(tarfile.TarInfo("b").tobuf(tarfile.USTAR_FORMAT))
    bad[0] ^= 1
    with pytest.raises(LayerError, match="corrupt: bad checksum"):
        apply_layer(io.BytesIO(good + bytes(bad) + b"\0" * 1024), tmp_path)


def test_oversized_extended_header_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 64 << 20
    with pytest.raises(LayerError, match="extended header"):
        apply_layer(io.BytesIO(info.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024), tmp_path)


# --- the worker threads ------------------------------------------------------------------------


def _add_entry(tar: tarfile.TarFile, name: str, body: bytes | None = None, **attrs: object) -> None:
    """One member: ``attrs`` set on its TarInfo, ``body`` as its data."""
    info = tarfile.TarInfo(name)
    for k, v in attrs.items():
        setattr(info, k, v)
    if body is not None:
        info.size = len(body)
    tar.addfile(info, io.BytesIO(body) if body is not None else None)


@pytest.mark.parametrize("max_cached", [applier_module.MAX_CACHED, 2])
def test_many_entries_in_order_across_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_cached: int
) -> None:
    monkeypatch.setattr(applier_module, "MAX_CACHED", max_cached)  # 2: the fd cache dropped often
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add = partial(_add_entry, tar)

        for d in range(8):
            add(f"d{d}", type=tarfile.DIRTYPE, mode=0o755)
            for f in range(40):
                add(f"d{d}/f{f}", f"{d}/{f}".encode(), mode=0o640, mtime=1000 + f)
            add(f"d{d}/f3", b"second", mode=0o600)  # a later duplicate wins
            add(f"d{d}/h", type=tarfile.LNKTYPE, linkname=f"d{d}/f39")  # right after its target
            add(
                f"d{d}/s",
                type=tarfile.SYMTYPE,
                linkname="../d0",
            )
            add(f"d{d}/s/through{d}", b"via symlink")  # parent is the symlink queued just before
        add("big", b"B" * (applier_module.SMALL + 1), mode=0o755)
        add("locked", type=tarfile.DIRTYPE, mode=0)
        add("locked/inside", b"ok")
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(io.BytesIO(buf.getvalue()), root)
    for d in range(8):
        assert (root / f"d{d}" / "f3").read_bytes() == b"second"
        assert stat.S_IMODE(os.lstat(root / f"d{d}" / "f3").st_mode) == 0o600
        assert (root / f"d{d}" / "f7").read_bytes() == f"{d}/7".encode()
        assert os.lstat(root / f"d{d}" / "f7").st_mtime == 1007
        assert os.lstat(root / f"d{d}" / "h").st_ino == os.lstat(root / f"d{d}" / "f39").st_ino
        assert os.readlink(root / f"d{d}" / "s") == "../d0"
        assert (root / "d0" / f"through{d}").read_bytes() == b"via symlink"
    assert (root / "big").stat().st_size == applier_module.SMALL + 1
    assert stat.S_IMODE(os.stat(root / "locked").st_mode) == 0
    os.chmod(root / "locked", 0o700)
    assert (root / "locked" / "inside").read_bytes() == b"ok"


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workers=st.integers(1, 4))
def test_a_write_error_in_a_worker_is_one_layer_error(
    tmp_path_factory: pytest.TempPathFactory, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(applier_module, "WORKERS", workers)
    real = applier_module.write_all

    def failing(fd: int, data: bytes) -> None:
        if data == b"boom":
            raise OSError(28, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(applier_module, "write_all", failing)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(50):
            body = b"boom" if i == 20 else b"fine"
            info = tarfile.TarInfo(f"f{i}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    root = tmp_path_factory.mktemp("root")
    with pytest.raises(LayerError) as caught:
        apply_layer(io.BytesIO(buf.getvalue()), root)
    assert str(caught.value) == "layer: entry 'f20': No space left on device"
    assert [t for t in __import__("threading").enumerate() if t.name.startswith("pybuild-apply")] == []


def test_names_made_implicitly_or_through_symlinks_are_still_found(tmp_path: Path) -> None:
    """The applier skips the lstat for names it knows are new in directories it made; parents made
    on the way, and files made through a symlink, must still count as existing."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add = partial(_add_entry, tar)

        add("a", type=tarfile.DIRTYPE, mode=0o755)
        add("a/b/c", b"implicit parent")  # a/b made on the way
        add("a/b", type=tarfile.DIRTYPE, mode=0o750)  # then named: exists already
        add("a/b/c", b"again")
        add("t", type=tarfile.DIRTYPE, mode=0o755)
        add("s", type=tarfile.SYMTYPE, linkname="t")
        add("s/f", b"one")  # made in t through the symlink
        add("t/f", b"two")  # the same file by its own name: the later entry wins
        add("t/g", b"g")
        add("t/g", type=tarfile.DIRTYPE, mode=0o700)  # a file replaced by a directory
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(io.BytesIO(buf.getvalue()), root)
    assert (root / "a" / "b" / "c").read_bytes() == b"again"
    assert stat.S_IMODE(os.stat(root / "a" / "b").st_mode) == 0o750
    assert (root / "t" / "f").read_bytes() == b"two"
    assert stat.S_ISDIR(os.lstat(root / "t" / "g").st_mode)


def test_an_error_read_ahead_is_not_dropped(tmp_path: Path) -> None:
    """A stream that fails after the end of the archive (as a verifying reader does at EOF): the
    error comes out of apply_layer even though the applier never asked for those bytes."""

    class FailsAtEnd(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n)
            if not data:
                raise LayerError("layer does not match its digest")
            return data

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    with pytest.raises(LayerError, match="does not match"):
        apply_layer(FailsAtEnd(buf.getvalue()), tmp_path)


@pytest.mark.parametrize("field", ["path", "linkpath"])
def test_nul_bytes_in_names_are_refused(tmp_path: Path, field: str) -> None:
    info = tarfile.TarInfo("x")
    info.type, info.linkname = tarfile.SYMTYPE, "t"
    info.pax_headers = {field: "a\0b"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info)
    with pytest.raises(LayerError, match="NUL byte"):
        apply_layer(io.BytesIO(buf.getvalue()), tmp_path)
