from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.rootless import PYBUILD, as_test_user


def test_doctor_as_root(pybuild_cli: Any) -> None:
    checks = json.loads(pybuild_cli("doctor", "--json").stdout)
    assert all(c["ok"] for c in checks), checks
    assert {c["name"] for c in checks} >= {"user namespaces", "newuidmap", "native overlay", "fuse-overlayfs"}


@pytest.mark.rootless
def test_doctor_as_the_test_user(user_home: Path) -> None:
    proc = as_test_user([PYBUILD, "doctor", "--json"], user_home)
    assert proc.returncode == 0, proc.stderr
    names = {c["name"]: c["ok"] for c in json.loads(proc.stdout)}
    assert names["/etc/subuid range for pybuild-test"] and names["native overlay (rootless, userxattr)"]
    assert names["entering a user namespace"]


@pytest.mark.rootless
def test_doctor_names_the_fix_for_a_user_without_ranges() -> None:
    proc = subprocess.run(
        ["runuser", "-u", "nobody", "--", PYBUILD, "doctor"],
        capture_output=True,
        text=True,
        cwd="/tmp",
        timeout=60,
    )
    assert proc.returncode == 1
    assert "problem  /etc/subuid range for nobody: none" in proc.stdout
    assert "fix: usermod --add-subuids 100000-165535 nobody" in proc.stdout


def test_doctor_names_the_mode_builds_will_use(pybuild_cli: Any) -> None:
    checks = {c["name"]: c for c in json.loads(pybuild_cli("doctor", "--json").stdout)}
    assert checks["build and run mode"]["detail"] == "native"  # this machine has rootless overlay
    forced = json.loads(pybuild_cli("doctor", "--json", env={"PYBUILD_RUN_MODE": "copy"}).stdout)
    detail = {c["name"]: c for c in forced}["build and run mode"]["detail"]
    assert detail.startswith("copy (forced by PYBUILD_RUN_MODE)")
