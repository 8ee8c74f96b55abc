"""COPY and ADD's --chmod (build/copier.py). --chown's lookup: tests/run/test_users.py."""

from __future__ import annotations

import re
import stat

import pytest

from pybuild.builder.copier import apply_chmod, parse_chmod
from pybuild.errors import ContainerfileError


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
