"""A Debian-based build whose RUN installs a package with apt-get, rootless, as the unprivileged test user.

The base is the debootstrap'd bookworm image (tests/fixtures/debian.py); apt reaches the machine's
configured Debian mirror through the host network, as a package manager in a build must.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.rootless import PYBUILD, as_test_user

CONTAINERFILE = """\
FROM debian
RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*
RUN hello > /greeting && id -u _apt > /apt-uid
"""


@pytest.mark.slow
@pytest.mark.rootless
def test_apt_get_install_rootless(debian_layout: Path, user_home: Path) -> None:
    ctx = user_home / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    oci = user_home / "oci"
    shutil.copytree(debian_layout, oci)
    subprocess.run(["chown", "-R", "pybuild-test", str(ctx), str(oci)], check=True)
    env = {"PYBUILD_STORE": str(user_home / "store")}

    def pb(*args: str) -> str:
        proc = as_test_user([PYBUILD, *args], user_home, env, timeout=600)
        assert proc.returncode == 0, f"pybuild {' '.join(args)}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    pb("copy", f"oci:{oci}:latest", "debian")
    out = pb("build", "-t", "localhost/deb", str(ctx))
    assert "Setting up hello" in out
    assert pb("run", "localhost/deb", "--", "cat", "/greeting") == "Hello, world!\n"
    # apt dropped to its sandbox user: a real uid of the subordinate range inside the container
    assert pb("run", "localhost/deb", "--", "cat", "/apt-uid").strip() == "42"
    info = json.loads(pb("inspect", "localhost/deb", "--json"))
    assert len(info["layers"]) == 3
    assert [h.get("empty_layer", False) for h in info["history"][-2:]] == [False, False]
    # the installed package is in the image's rootfs
    bundle = user_home / "bundle"
    pb("unpack", "localhost/deb", str(bundle))
    proc = as_test_user(["stat", "-c", "%a", str(bundle / "rootfs/usr/bin/hello")], user_home)
    assert proc.stdout.strip() == "755"
    assert os.path.getsize(bundle / "rootfs/usr/bin/hello") > 10_000
    pb("check")
