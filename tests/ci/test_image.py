"""The pybuild image (Containerfile at the repository's root): `pybuild build` builds it, and it works
as the outer container of a CI job: as root under Docker's default capabilities and seccomp profile
(in place), and as its user `build` under podman's profile (user namespace through newuidmap with
file capabilities). Needs Debian's and PyPI's package registries (apt-get and pip run in it)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci.outer import Container, Outer
from tests.ci.test_matrix import CONTAINERFILE
from tests.fixtures.rootless import PYBUILD
from tests.fixtures.tools import validate_layout

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image_root(debian_layout: Path) -> Iterator[dict[str, Path]]:
    top = Path(tempfile.mkdtemp(prefix="pybuild-image-", dir="/var/tmp"))
    os.chmod(top, 0o755)
    try:
        proc = subprocess.run(
            [
                PYBUILD,
                "--store",
                str(top / "store"),
                "build",
                "--build-arg",
                f"BASE=oci:{debian_layout}:latest",
                # this machine reaches PyPI through a proxy whose CA only its own bundle has
                "--secret",
                "id=ca,src=/etc/ssl/certs/ca-certificates.crt",
                "-t",
                f"oci:{top / 'image'}:latest",
                str(PROJECT),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        validate_layout(top / "image", "latest")
        unpacked = subprocess.run(
            [
                PYBUILD,
                "--store",
                str(top / "store"),
                "unpack",
                f"oci:{top / 'image'}:latest",
                str(top / "bundle"),
            ],
            capture_output=True,
            text=True,
        )
        assert unpacked.returncode == 0, unpacked.stderr
        base = top / "base"
        subprocess.run(["cp", "-a", str(debian_layout), str(base)], check=True)
        subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
        ctx = top / "ctx"
        ctx.mkdir()
        (ctx / "Containerfile").write_text(
            CONTAINERFILE.format(base="oci:/base:latest").replace("/bin/vi", "/bin/dmesg")
            + "RUN useradd -u 4242 owner && install -o owner -m 600 /dev/null /owned\n"
        )
        (ctx / "hello.txt").write_text("hello\n")
        yield {"top": top, "rootfs": top / "bundle" / "rootfs", "base": base, "ctx": ctx}
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=False)


@pytest.mark.slow
def test_the_image_holds_pybuild_on_its_own_tree(image_root: dict[str, Path]) -> None:
    rootfs = image_root["rootfs"]
    assert (rootfs / "pybuild/bin/pybuild").is_file() and (rootfs / "pybuild/bin/python3").is_file()
    for tool, cap in (("newuidmap", "cap_setuid=ep"), ("newgidmap", "cap_setgid=ep")):
        path = rootfs / "usr/bin" / tool
        assert not os.stat(path).st_mode & 0o4000, tool  # no setuid bit ...
        assert (
            cap in subprocess.run(["getcap", str(path)], capture_output=True, text=True).stdout
        )  # file caps
    assert (rootfs / "usr/bin/fuse-overlayfs").is_file()
    config = json.loads((rootfs.parent / "config.json").read_text())
    assert any(e.startswith("PATH=/pybuild/bin:") for e in config["process"]["env"])


def _build_in(outer: Outer, image_root: dict[str, Path]) -> str:
    """Build the context in the pybuild image used as ``outer``; the manifest digest of the result."""
    work = Path(tempfile.mkdtemp(prefix=f"{outer.name}-", dir=image_root["top"]))
    os.chmod(work, 0o755)
    container = Container(outer, work, None, image_root["ctx"], image_root["base"], tree=image_root["rootfs"])
    try:
        isolation = ["--isolation", "inplace"] if outer.mode == "inplace" else []
        doctor = container.run("pybuild", "doctor", *isolation)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert f"build and run mode: {outer.mode}" in doctor.stdout, doctor.stdout
        build = container.run(
            "pybuild", "build", *isolation, "--timestamp", "0", "-t", "oci:/out/l:r", "/ctx", timeout=900
        )
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        for proc in (doctor, build):
            assert "Traceback" not in proc.stdout + proc.stderr
        # the image built has the file owned by another user: ids beyond root work in both
        rootfs = container.result("l")
        owned = os.stat(rootfs / "owned")
        assert (owned.st_uid, oct(owned.st_mode & 0o777)) == (4242, "0o600")
        assert (rootfs / "script-ran").read_text() == "script\n"
        assert not (rootfs / "bin/dmesg").exists()
        index = json.loads((container.out / "l" / "index.json").read_text())
        return str(index["manifests"][0]["digest"])
    finally:
        container.close()


@pytest.mark.slow
def test_the_image_as_a_ci_job_container(image_root: dict[str, Path]) -> None:
    """As root under Docker's default profile (in place: the Debian base goes into the container's
    own /) and as the image's user under podman's (native overlay in a user namespace mapped by
    newuidmap's file capabilities): byte for byte the same image."""
    in_place = _build_in(
        Outer("image-docker-root", "builds", "inplace", seccomp="docker", volume=False), image_root
    )
    native = _build_in(Outer("image-podman-user", "builds", "native", seccomp="podman", uid=1000), image_root)
    assert in_place == native
