"""COPY and ADD's --chmod and destinations (builder/copier.py). --chown's lookup: tests/run/test_users.py."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from pybuild.builder.copier import apply_chmod, parse_chmod
from pybuild.errors import ContainerfileError
from tests.fixtures.cli import Pybuild, assert_fails, context


@pytest.mark.parametrize(
    ("spec", "mode", "is_dir", "expected"),
    [
        ("0640", 0o755, False, 0o640),
        ("u=rwx,g=rx,o=", 0o644, False, 0o750),
        ("a+x", 0o644, False, 0o755),
        ("go-w", 0o666, False, 0o644),
        ("+X", 0o644, True, 0o755),  # X: directories get x
        ("+X", 0o644, False, 0o644),  # a file without any x keeps none
        ("+X", 0o744, False, 0o755),
        ("u+s,+t", 0o755, True, 0o755 | stat.S_ISUID | stat.S_ISVTX),
    ],
)
def test_chmod(spec: str, mode: int, is_dir: bool, expected: int) -> None:
    assert apply_chmod(mode, parse_chmod(spec, "COPY"), is_dir) == expected


@pytest.mark.parametrize("spec", ["17777", "u+q", "x=r", "u", ""])
def test_bad_chmod(spec: str) -> None:
    with pytest.raises(ContainerfileError, match=re.escape(f"COPY: --chmod={spec}")):
        parse_chmod(spec, "COPY")


# --- destinations through symlinks: the one resolver (run/paths.py), inside the root -------------
SYMLINKED = """FROM busybox
RUN mkdir -p /opt/real /srv && ln -s /opt/real /abs && ln -s ../../../../opt/real /srv/up && \\
    ln -s /srv/up /chain && ln -s /srv/missing/dir /dangling
COPY f.txt /abs/
COPY f.txt /srv/up/g.txt
COPY tree/ /chain/sub/
COPY f.txt /dangling/h.txt
"""


@pytest.mark.usefixtures("store_checked")
def test_copy_to_symlinked_destinations(pb: Pybuild, tmp_path: Path) -> None:
    """COPY follows a symlinked destination as the container would: an absolute link, a relative one
    climbing past / (which stops at the root), a chain of both, a dangling one (its target is made);
    the links themselves stay links."""
    ctx = context(tmp_path / "ctx", SYMLINKED, **{"f.txt": "f\n", "tree/a/b.txt": "b\n"})
    pb.build(ctx, None, "localhost/symlinked")
    root = pb.rootfs("localhost/symlinked")
    assert (root / "opt/real/f.txt").read_text() == "f\n"
    assert (root / "opt/real/g.txt").read_text() == "f\n"
    assert (root / "opt/real/sub/a/b.txt").read_text() == "b\n"
    assert (root / "srv/missing/dir/h.txt").read_text() == "f\n"
    assert os.readlink(root / "abs") == "/opt/real" and os.readlink(root / "chain") == "/srv/up"
    assert os.readlink(root / "srv/up") == "../../../../opt/real"
    pb.validate_oci("localhost/symlinked")


def test_copy_to_a_symlink_loop_is_one_line(pb: Pybuild, tmp_path: Path) -> None:
    text = "FROM busybox\nRUN ln -s /loop2 /loop1 && ln -s /loop1 /loop2\nCOPY f.txt /loop1/x/\n"
    ctx = context(tmp_path / "ctx", text, **{"f.txt": "f\n"})
    proc = pb.build(ctx, None, "localhost/loop", check=False)
    assert_fails(proc, 1, "/loop1/x", "too many levels of symbolic links")
