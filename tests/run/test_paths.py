"""The one path resolver (run/paths.py), with runc's and BuildKit's rules, and its corners.

Its callers are tested where they act: RUN mount targets (tests/builder/test_build.py::
test_run_mount_target_through_a_symlink_stays_inside), the build context's ignore file and sources
(tests/builder/test_ignore.py, test_sources.py), and the image's /etc/passwd (tests/run/test_users.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pybuild.errors import RunError
from pybuild.run.paths import MAX_LINKS, join_in_root, read_in_root, resolve_in_root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "r"
    (r / "a" / "b").mkdir(parents=True)
    (r / "etc").mkdir()
    (r / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (r / "file").write_text("x")
    os.symlink("/a", r / "abs")
    os.symlink("../../../../..", r / "a" / "up")
    os.symlink("b", r / "a" / "rel")
    os.symlink("/etc/passwd", r / "pw")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("/missing/deeper", r / "dangling")
    return r


@pytest.mark.parametrize(
    "path, expected",
    [
        ("", ""),
        ("/", ""),
        (".", ""),
        ("..", ""),
        ("/../../etc", "etc"),  # `..` stops at the root
        ("/abs/b", "a/b"),  # an absolute target starts from the root
        ("a/up/etc/passwd", "etc/passwd"),  # a relative target cannot climb out either
        ("a/rel/", "a/b"),
        ("a//./rel/../b", "a/b"),  # `..` after a link: from where the link led
        ("pw", "etc/passwd"),  # the last component is followed too
        ("missing/x", "missing/x"),  # missing components are plain names
        ("dangling/x", "missing/deeper/x"),
        ("missing/../abs", "a"),  # as runc: after `..`, a link is followed again
        ("file/x", "file/x"),  # below a file: a plain name (the caller finds nothing there)
    ],
)
def test_resolve_in_root(root: Path, path: str, expected: str) -> None:
    assert resolve_in_root(root, path) == expected
    assert join_in_root(root, path) == (root / expected if expected else root)


def test_links_are_limited(root: Path) -> None:
    assert resolve_in_root(root, "loop1/x") is None
    with pytest.raises(RunError, match=r"'loop1/x' in .*: too many levels of symbolic links"):
        join_in_root(root, "loop1/x")
    # a chain of exactly MAX_LINKS links resolves; one more does not
    for i in range(MAX_LINKS + 1):
        os.symlink(f"c{i + 1}" if i < MAX_LINKS else "a", root / f"c{i}")
    assert resolve_in_root(root, f"c{1}") == "a"
    assert resolve_in_root(root, "c0") is None


def test_read_in_root(root: Path) -> None:
    assert read_in_root(root, "/pw") == b"root:x:0:0::/:/bin/sh\n"
    assert read_in_root(root, "/etc") is None  # a directory
    assert read_in_root(root, "/nothing") is None
    assert read_in_root(root, "/pw", limit=4) == b"root"
    os.mkfifo(root / "fifo")
    assert read_in_root(root, "/fifo") is None  # never blocks on a fifo
    with pytest.raises(RunError, match="too many levels"):
        read_in_root(root, "loop1")
