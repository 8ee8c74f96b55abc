"""Hostile layers: each ends confined to the root or in a one-line LayerError; nothing outside changes."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from pybuild.diff import apply_layer, open_layer
from pybuild.errors import LayerError

Entry = tuple[str, str, object]  # (kind, name, payload)


def tar_of(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            data = None
            if kind == "file":
                body = payload if isinstance(payload, bytes) else b"pwned\n"
                info.size, data = len(body), io.BytesIO(body)
                info.mode = 0o644
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, int(payload) if isinstance(payload, int) else 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
            elif kind == "mode":  # a second entry for an existing path, with another mode
                info.mode = int(payload)  # type: ignore[call-overload]
                info.size, data = 0, io.BytesIO(b"")
            tar.addfile(info, data)
    return buf.getvalue()


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes | None]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            body = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None  # noqa: SIM115
            out[p] = (st.st_mode, st.st_mtime_ns, body)
    return out


@pytest.fixture
def arena(tmp_path: Path) -> tuple[Path, Path]:
    """(root, outside): a root to apply into, and a sentinel directory beside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched\n")
    os.chmod(outside / "victim", 0o644)
    root = tmp_path / "root"
    root.mkdir()
    return root, outside


def depth_to(outside: Path, root: Path) -> str:
    return "../" * (len(root.parts) + 1) + str(outside).lstrip("/")


CASES: dict[str, Callable[[Path, Path], list[list[Entry]]]] = {
    "dotdot-name": lambda r, o: [[("file", "../outside/victim", None)]],
    "dotdot-deep": lambda r, o: [[("dir", "a", None), ("file", "a/../../outside/new", None)]],
    "absolute-name": lambda r, o: [[("file", f"{o}/victim", None)]],
    "symlink-parent-absolute": lambda r, o: [[("symlink", "esc", str(o)), ("file", "esc/victim", None)]],
    "symlink-parent-relative": lambda r, o: [
        [("symlink", "esc", depth_to(o, r)), ("file", "esc/victim", None)]
    ],
    "symlink-over-two-layers": lambda r, o: [[("symlink", "esc", str(o))], [("file", "esc/victim", None)]],
    "hardlink-outside-root": lambda r, o: [[("hardlink", "h", f"{o}/victim")]],
    "hardlink-dotdot": lambda r, o: [[("hardlink", "h", "../outside/victim")]],
    "hardlink-through-symlink": lambda r, o: [[("symlink", "esc", str(o)), ("hardlink", "h", "esc/victim")]],
    "root-as-symlink": lambda r, o: [[("symlink", ".", str(o))]],
    "root-as-symlink-slash": lambda r, o: [[("symlink", "./", str(o))]],
    "root-as-file": lambda r, o: [[("file", "/", None)]],
    "whiteout-dotdot": lambda r, o: [[("file", "../outside/.wh.victim", None)]],
    "whiteout-name-dotdot": lambda r, o: [[("file", ".wh...", None)]],
    "whiteout-through-symlink": lambda r, o: [
        [("symlink", "esc", str(o))],
        [("file", "esc/.wh.victim", None)],
    ],
    "opaque-through-symlink": lambda r, o: [
        [("symlink", "esc", str(o))],
        [("file", "esc/.wh..wh..opq", None)],
    ],
    "chmod-through-symlink": lambda r, o: [[("symlink", "link", f"{o}/victim"), ("mode", "link", 0o777)]],
    "dir-entry-over-symlink": lambda r, o: [[("symlink", "d", str(o)), ("dir", "d", 0o777)]],
    "symlink-loop": lambda r, o: [[("symlink", "l1", "l2"), ("symlink", "l2", "l1"), ("file", "l1/x", None)]],
    "bare-wh": lambda r, o: [[("file", ".wh.", None)]],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_layer(arena: tuple[Path, Path], case: str) -> None:
    root, outside = arena
    before = snapshot(outside)
    beside = sorted(os.listdir(root.parent))
    for layer in CASES[case](root, outside):
        try:
            apply_layer(io.BytesIO(tar_of(layer)), root)
        except LayerError as exc:
            assert "\n" not in str(exc) and str(exc)
            break
    assert snapshot(outside) == before, "something outside the root changed"
    assert sorted(os.listdir(root.parent)) == beside, "something appeared beside the root"
    assert stat.S_ISDIR(os.lstat(root).st_mode), "the root was replaced"


def test_symlink_targets_stored_verbatim_and_parents_confined(arena: tuple[Path, Path]) -> None:
    root, outside = arena
    apply_layer(
        io.BytesIO(tar_of([("symlink", "esc", str(outside)), ("file", "esc/victim", b"inside\n")])), root
    )
    assert os.readlink(root / "esc") == str(outside)
    # the write went to <root>/<outside>/victim: the symlink was resolved inside the root
    assert (root / str(outside).lstrip("/") / "victim").read_bytes() == b"inside\n"


def test_chmod_through_symlink_leaves_target_alone(arena: tuple[Path, Path]) -> None:
    root, _ = arena
    (root / "target").write_text("t")
    os.chmod(root / "target", 0o600)
    apply_layer(io.BytesIO(tar_of([("symlink", "link", "target"), ("mode", "link", 0o777)])), root)
    assert stat.S_IMODE(os.lstat(root / "target").st_mode) == 0o600
    assert stat.S_ISREG(os.lstat(root / "link").st_mode)  # the last entry for "link" wins


def test_symlink_loop_message(arena: tuple[Path, Path]) -> None:
    root, _ = arena
    layer = tar_of([("symlink", "l1", "l2"), ("symlink", "l2", "l1"), ("file", "l1/x", None)])
    with pytest.raises(LayerError, match="too many levels of symbolic links"):
        apply_layer(io.BytesIO(layer), root)


@pytest.mark.parametrize("cut", [100, 600, 1500])
def test_truncated_tar(arena: tuple[Path, Path], cut: int) -> None:
    root, _ = arena
    data = tar_of([("file", "big", b"x" * 4000), ("file", "next", None)])
    with pytest.raises(LayerError, match=r"truncated|corrupt|unexpected end"):
        apply_layer(io.BytesIO(data[:cut]), root)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_corrupt_compressed_layer(arena: tuple[Path, Path], kind: str) -> None:
    root, _ = arena
    plain = tar_of([("file", "f", b"y" * 10000)])
    zstd = zstandard.ZstdCompressor(write_checksum=True)
    data = bytearray(gzip.compress(plain) if kind == "gzip" else zstd.compress(plain))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(LayerError, match="corrupt"):
        apply_layer(open_layer(io.BytesIO(bytes(data))), root)


def test_not_a_tar(arena: tuple[Path, Path]) -> None:
    root, _ = arena
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(b"this is not a tar stream at all" * 40), root)


def test_duplicates_last_wins_and_whiteouts_spare_this_layer(arena: tuple[Path, Path]) -> None:
    root, _ = arena
    (root / "old").write_text("lower")
    layer = tar_of(
        [
            ("file", "f", b"first"),
            ("file", "f", b"second"),
            ("file", "new", b"n"),
            ("file", ".wh.new", None),
            ("file", ".wh.old", None),
        ]
    )
    apply_layer(io.BytesIO(layer), root)
    assert (root / "f").read_bytes() == b"second"
    assert (root / "new").read_bytes() == b"n"
    assert not (root / "old").exists()


def test_opaque_keeps_this_layers_content(arena: tuple[Path, Path]) -> None:
    root, _ = arena
    (root / "d").mkdir()
    (root / "d" / "lower").write_text("l")
    layer = tar_of([("dir", "d", None), ("file", "d/mine", b"m"), ("file", "d/.wh..wh..opq", None)])
    apply_layer(io.BytesIO(layer), root)
    assert sorted(os.listdir(root / "d")) == ["mine"]


def test_mode_000_directories(arena: tuple[Path, Path]) -> None:
    root, _ = arena
    layer = tar_of([("dir", "locked", 0o000), ("file", "locked/inside", b"ok")])
    apply_layer(io.BytesIO(layer), root)
    assert stat.S_IMODE(os.stat(root / "locked").st_mode) == 0
    os.chmod(root / "locked", 0o700)
    assert (root / "locked" / "inside").read_bytes() == b"ok"
