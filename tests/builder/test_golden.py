"""The golden build (testdata/golden-scratch): the same digests on every machine, root and rootless.

Its inputs are pinned (no base image, modes by --chmod, times by --timestamp 0, no compression), so
the digests depend only on pybuild. A difference here means pybuild's output changed: if that is
intended, run testdata/golden-scratch/regenerate.sh and say why in the commit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import PYBUILD
from tests.fixtures.rootless import TEST_USER, as_test_user

GOLDEN = Path(__file__).resolve().parents[2] / "testdata" / "golden-scratch"
FIELDS = ("digest", "config", "diff_ids", "layers", "runtime", "history", "created")


def expected() -> dict[str, Any]:
    return dict(json.loads((GOLDEN / "expected.json").read_text()))


def built(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info[k] for k in FIELDS}


def test_golden_build_as_root(tmp_path: Path) -> None:
    env = {"PYBUILD_STORE": str(tmp_path / "store"), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    args = ["build", "-q", "--timestamp", "0", "--compression", "none", "-t", "localhost/golden"]
    subprocess.run([PYBUILD, *args, str(GOLDEN / "context")], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [PYBUILD, "inspect", "--json", "localhost/golden"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert built(json.loads(out)) == expected()
    bundle = tmp_path / "bundle"
    subprocess.run([PYBUILD, "unpack", "localhost/golden", str(bundle)], env=env, check=True)
    rootfs = bundle / "rootfs"
    assert (rootfs / "srv" / "hello.txt").read_text() == "hello from a golden build\n"
    assert (rootfs / "usr" / "local" / "bin" / "hello").stat().st_mode & 0o7777 == 0o755
    assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["/usr/local/bin/hello"]


@pytest.mark.rootless
def test_golden_build_rootless(user_home: Path) -> None:
    ctx = user_home / "context"
    shutil.copytree(GOLDEN / "context", ctx)
    subprocess.run(["chown", "-R", TEST_USER, str(ctx)], check=True)
    env = {"PYBUILD_STORE": str(user_home / "store")}
    args = ["build", "-q", "--timestamp", "0", "--compression", "none", "-t", "localhost/golden", str(ctx)]
    proc = as_test_user([PYBUILD, *args], user_home, env)
    assert proc.returncode == 0, proc.stderr
    proc = as_test_user([PYBUILD, "inspect", "--json", "localhost/golden"], user_home, env)
    assert built(json.loads(proc.stdout)) == expected()
