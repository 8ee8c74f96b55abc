"""`pybuild doctor` on this machine, as root and as unprivileged users (tests/ci/test_matrix.py runs it
in CI job containers, where most of what it probes fails)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pybuild.run.emulation import COMMON
from tests.fixtures.rootless import PYBUILD, as_test_user

NAMES = [
    "privilege",
    "newuidmap",
    "newgidmap",
    "user namespace",
    "mount namespace",
    "native overlay",
    "fuse-overlayfs",
    "copy mode",
    "/proc",
    "/sys",
    "in-place mode",
    *(f"emulation {p}" for p in COMMON),
    "build and run mode",
]


def test_doctor_as_root(pybuild_cli: Any) -> None:
    proc = pybuild_cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert list(checks) == NAMES
    assert checks["user namespace"]["detail"] == "not needed: CAP_SYS_ADMIN here"
    assert checks["/proc"]["detail"] == "mounted fresh" and checks["/sys"]["detail"] == "mounted fresh"
    # pybuild runs from /usr's Python here: in-place mode would put images over it, and says so
    inplace = checks["in-place mode"]
    assert not inplace["ok"] and inplace["detail"] == (
        "in-place mode needs pybuild on a tree of its own, and it runs from /usr, where images have files"
    )
    assert "pybuild image" in inplace["fix"]
    assert all(c["ok"] for name, c in checks.items() if name != "in-place mode"), checks
    assert not any(c["required"] and not c["ok"] for c in checks.values())


@pytest.mark.rootless
def test_doctor_as_the_test_user(user_home: Path) -> None:
    proc = as_test_user([PYBUILD, "doctor", "--json"], user_home)
    assert proc.returncode == 0, proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["user namespace id map"]["ok"]
    assert "newuidmap/newgidmap with pybuild-test's /etc/subuid" in checks["user namespace id map"]["detail"]
    assert checks["native overlay"]["ok"] and checks["mount namespace"]["ok"]
    assert checks["in-place mode"]["detail"].startswith("in-place mode needs root")
    assert checks["build and run mode"]["detail"] == "native"


@pytest.mark.rootless
def test_doctor_names_the_fix_for_a_user_without_ranges() -> None:
    """No subordinate ranges: builds still work with a single-id map, and the doctor warns with the fix."""
    proc = subprocess.run(
        ["runuser", "-u", "nobody", "--", PYBUILD, "doctor"],
        capture_output=True,
        text=True,
        cwd="/tmp",
        timeout=60,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "warning  user namespace id map: single id (only root exists in containers: files owned by others "
        "cannot be made): no /etc/subuid and /etc/subgid ranges for nobody" in proc.stdout
    )
    assert "fix: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 nobody" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_doctor_names_the_mode_builds_will_use(pybuild_cli: Any) -> None:
    checks = {c["name"]: c for c in json.loads(pybuild_cli("doctor", "--json").stdout)}
    assert checks["build and run mode"]["detail"] == "native"  # this machine has rootless overlay
    forced = json.loads(pybuild_cli("doctor", "--json", env={"PYBUILD_RUN_MODE": "copy"}).stdout)
    detail = {c["name"]: c for c in forced}["build and run mode"]["detail"]
    assert detail == "copy (asked for by PYBUILD_RUN_MODE): works"
    asked = json.loads(pybuild_cli("doctor", "--json", "--isolation", "fuse").stdout)
    assert {c["name"]: c for c in asked}["build and run mode"]["detail"] == "fuse (asked for): works"


def test_doctor_refuses_in_place_here(pybuild_cli: Any) -> None:
    """Asked to check in-place mode where it cannot be used: exit 1, the reason, no traceback."""
    proc = pybuild_cli("doctor", "--isolation", "inplace", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "problem  build and run mode: inplace (asked for): in-place mode needs pybuild on a tree of its own"
        in proc.stdout
    )
    assert "Traceback" not in proc.stdout + proc.stderr
