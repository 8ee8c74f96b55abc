"""The copy fallback (run/treecopy.py) on its own: the stacked lowers copied into a private tree,
and afterwards the difference written as an upperdir that kernel overlay stacks into exactly the
changed copy. (Every mode giving the same layer, root and rootless: tests/run/test_modes.py.)"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pybuild.diff import Change, scan_upperdir
from pybuild.diff.overlay import LowerStack, is_opaque, is_whiteout, make_whiteout, mark_opaque
from pybuild.run.treecopy import CopiedRoot, copy_stack, write_difference
from tests.fixtures.trees import tree, tree_differences


@pytest.fixture
def lowers(tmp_path: Path) -> list[Path]:
    top, below = tmp_path / "top", tmp_path / "below"
    for d in ("etc", "data/keep", "data/gone", "data/recreated", "data/retyped"):
        (below / d).mkdir(parents=True)
    (top / "data").mkdir(parents=True)
    (below / "etc" / "conf").write_text("conf")
    (below / "etc" / "untouched").write_text("u")
    (below / "data" / "keep" / "a").write_text("a")
    (below / "data" / "gone" / "b").write_text("b")
    (below / "data" / "recreated" / "old").write_text("old")
    (below / "data" / "retyped" / "x").write_text("x")
    (below / "data" / "hidden-by-top").write_text("h")
    assert make_whiteout(str(top / "data" / "hidden-by-top"))
    (top / "data" / "opaque").mkdir()
    mark_opaque(top / "data" / "opaque")
    (below / "data" / "opaque").mkdir()
    (below / "data" / "opaque" / "under").write_text("under")
    os.symlink("conf", below / "etc" / "link")
    os.setxattr(below / "etc" / "conf", "user.kept", b"1")
    for d in (top, below):
        for dirpath, dirnames, filenames in os.walk(d):
            for name in dirnames + filenames:
                os.utime(os.path.join(dirpath, name), (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    return [top, below]


def _difference(copied: CopiedRoot, upper: Path) -> Path:
    upper.mkdir()
    try:
        write_difference(copied, upper, rootless=False)
    finally:
        copied.close()
    return upper


def test_the_copy_is_the_stacked_view(tmp_path: Path, lowers: list[Path]) -> None:
    copied = copy_stack(lowers, tmp_path / "copy")
    try:
        assert sorted(copied.record.entries) == sorted(LowerStack(lowers).view())
        assert "data/hidden-by-top" not in copied.record.entries
        assert "data/opaque/under" not in copied.record.entries
        assert os.getxattr(tmp_path / "copy" / "etc" / "conf", "user.kept") == b"1"
        assert copied.record.source("etc/conf") == str(lowers[1] / "etc" / "conf")
        assert len(copied.held) == sum(1 for m in copied.record.entries.values() if stat.S_ISDIR(m.mode))
    finally:
        copied.close()
    assert not copied.held


def test_the_difference_stacks_into_the_changed_copy(tmp_path: Path, lowers: list[Path]) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test mounts overlay directly and runs as root (CI does)")
    root = tmp_path / "copy"
    copied = copy_stack(lowers, root)
    (root / "etc" / "conf").write_text("CONF")  # same size, new content
    same = os.stat(root / "data" / "opaque")
    os.utime(root / "data" / "opaque", ns=(same.st_atime_ns, same.st_mtime_ns))  # only the ctime moves
    os.unlink(root / "data" / "keep" / "a")
    shutil.rmtree(root / "data" / "gone")
    shutil.rmtree(root / "data" / "recreated")
    (root / "data" / "recreated").mkdir()
    (root / "data" / "recreated" / "new").write_text("new")
    shutil.rmtree(root / "data" / "retyped")
    (root / "data" / "retyped").write_text("now a file")
    os.chown(root / "etc" / "untouched", 123, 456)
    (root / "data" / "fresh" / "deep").mkdir(parents=True)
    want = tree(root, mtimes=True)
    upper = _difference(copied, tmp_path / "upper")
    assert is_whiteout(os.lstat(upper / "data" / "keep" / "a"))
    assert is_whiteout(os.lstat(upper / "data" / "gone"))
    assert not os.path.lexists(upper / "data" / "gone" / "b")
    assert is_opaque(upper / "data" / "recreated") and not is_opaque(upper / "data" / "fresh")
    assert not os.path.lexists(upper / "etc" / "link") and not os.path.lexists(upper / "data" / "opaque")
    assert os.getxattr(upper / "etc" / "conf", "user.kept") == b"1"
    changes = set(scan_upperdir(upper, lowers))
    assert {
        Change("data/recreated", "opaque"),
        Change("data/retyped", "add"),
        Change("data/gone", "delete"),
    } <= changes
    assert not {c for c in changes if c.path in ("etc/link", "data/opaque", "data/opaque/under")}
    merged = tmp_path / "merged"
    merged.mkdir()
    lowerdir = ":".join(str(p) for p in [upper, *lowers])
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir},userxattr", str(merged)], check=True
    )
    try:
        got = tree(merged, mtimes=True)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert tree_differences(got, want) == []


def test_nothing_changed_leaves_an_empty_upperdir(tmp_path: Path, lowers: list[Path]) -> None:
    upper = _difference(copy_stack(lowers, tmp_path / "copy"), tmp_path / "upper")
    assert list(upper.iterdir()) == []
