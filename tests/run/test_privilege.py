"""What pybuild may do where it runs (run/privilege.py): capabilities by number, and whether the
uid-map helpers can work, judged from the binary as installed (tests/ci/test_matrix.py shows each
judgement right in real outer containers)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pybuild.run.privilege import (
    CAP_SETUID,
    CAP_SYS_ADMIN,
    can_mount,
    has_caps,
    helper_problem,
    missing_caps,
    namespace_ids,
    status,
)


def test_capabilities_are_read_from_this_process() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (CI does)")
    info = status()
    assert has_caps(CAP_SYS_ADMIN, CAP_SETUID) and can_mount()
    assert has_caps(CAP_SETUID, mask=info.bounding)
    assert not has_caps(CAP_SETUID, mask=0) and missing_caps(
        CAP_SYS_ADMIN, CAP_SETUID, mask=1 << CAP_SETUID
    ) == ["CAP_SYS_ADMIN"]
    assert namespace_ids("uid") == [(0, 4294967295)]


@pytest.mark.parametrize(
    ("install", "problem"),
    [
        ("plain", "is neither setuid root nor has file capabilities"),
        ("setuid", None),  # root here has CAP_SYS_ADMIN in its bounding set
        ("filecaps", None),
    ],
)
def test_helpers_as_installed(
    install: str, problem: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = shutil.which("newuidmap")
    assert source is not None, "uidmap is not installed: run scripts/setup.sh"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    target = bin_dir / "newuidmap"
    shutil.copy(source, target)
    os.chmod(target, 0o755)
    if install == "setuid":
        os.chmod(target, 0o4755)
    elif install == "filecaps":
        subprocess.run(["setcap", "cap_setuid+ep", str(target)], check=True)
    monkeypatch.setenv("PATH", str(bin_dir))
    found = helper_problem("newuidmap")
    if problem is None:
        assert found is None
    else:
        assert found == f"{target} {problem}"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert helper_problem("newuidmap") == "newuidmap is not installed"
