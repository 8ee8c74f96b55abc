"""pybuild inside CI job containers: a matrix of outer runc containers (tests/ci/outer.py), each with
the result pybuild must give there: it builds (in the mode named), or it fails with the doctor's
named fix. In every one: `pybuild doctor`, then a small multi-stage build (COPY, COPY --from,
WORKDIR, RUN deleting a base file, a heredoc script), no traceback anywhere, and every image built
is byte for byte the one built on this machine (same manifest digest, --timestamp 0), validated.

The bar (issue 15): every configuration where buildah 1.28 builds (tests/ci/buildah_matrix.py
records them), plus every root configuration, through in-place mode where no namespace can be made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci.outer import Container, Outer, prepare
from tests.fixtures.rootless import PYBUILD
from tests.fixtures.tools import validate_layout

CONTAINERFILE = """\
FROM {base} AS build
RUN echo built > /artifact && mkdir -p /work/sub && echo x > /work/sub/f
FROM {base}
COPY hello.txt /hello.txt
COPY --from=build /artifact /work/sub/f /from-build/
WORKDIR /app
RUN cat /hello.txt > copied && rm /bin/vi && echo ran > /ran && chmod 640 /ran
RUN <<EOF
#!/bin/sh
echo script > /script-ran
EOF
"""
PROC_NOTE = "a fresh /proc was refused"
SYS_NOTE = "sysfs was refused"
SINGLE = "single-id user namespace map"
SECCOMP = "a seccomp profile refuses it"
NO_NATIVE = "native overlay cannot be used here"
HOSTNAME = "the hostname cannot be set"  # podman's profile allows sethostname only with CAP_SYS_ADMIN

# fmt: off
MATRIX = [
    # root in Docker's capability set (no CAP_SYS_ADMIN), as docker run gives it
    Outer("docker-root", "builds", "native", buildah=True),
    Outer("docker-root-unmasked", "builds", "native", masked=False, buildah=True),
    Outer("docker-root-store-on-overlay", "builds", "copy", volume=False, buildah=True),
    Outer("docker-root-store-on-overlay-fuse", "builds", "fuse", volume=False, fuse=True, buildah=True),
    Outer("docker-root-nnp", "builds", "native", nnp=True, buildah=True),
    Outer("docker-root-podman-seccomp", "builds", "native", seccomp="podman", notes=(HOSTNAME,),
          buildah=True),
    Outer("docker-root-docker-seccomp", "builds", "inplace", fix=SECCOMP, seccomp="docker"),
    Outer("docker-root-docker-seccomp-store-on-overlay", "builds", "inplace", fix=SECCOMP, seccomp="docker",
          volume=False),
    # root in runc's default capability set: no CAP_SETFCAP, so no user namespace can map uid 0
    Outer("runc-root", "builds", "inplace", fix="add CAP_SETFCAP", caps="runc"),
    Outer("runc-root-docker-seccomp", "builds", "inplace", fix="add CAP_SETFCAP", caps="runc",
          seccomp="docker"),
    # uid 1000 (the capabilities only bound what newuidmap may use)
    Outer("docker-user-plain-uidmap", "builds", "native", uid=1000, notes=(SINGLE,)),
    # (shadow's setuid newuidmap writes no map without CAP_SYS_ADMIN in the bounding set)
    Outer("docker-user-setuid-uidmap", "builds", "native", uid=1000, uidmap="setuid", notes=(SINGLE,)),
    Outer("docker-user-filecaps-uidmap", "builds", "native", uid=1000, uidmap="filecaps", buildah=True),
    Outer("docker-user-filecaps-nnp", "builds", "native", uid=1000, uidmap="filecaps", nnp=True,
          notes=(SINGLE,)),
    Outer("docker-user-store-on-overlay", "builds", "copy", uid=1000, uidmap="filecaps", volume=False,
          buildah=True),
    Outer("docker-user-fuse-podman-seccomp", "builds", "fuse", uid=1000, uidmap="filecaps", volume=False,
          fuse=True, seccomp="podman", notes=(HOSTNAME,), buildah=True),
    Outer("docker-user-docker-seccomp", "fails", fix=SECCOMP, uid=1000, uidmap="filecaps",
          seccomp="docker"),
    Outer("runc-user-setuid-uidmap", "builds", "native", uid=1000, uidmap="setuid", caps="runc",
          notes=(SINGLE,)),
    # a user-namespaced root (Docker's userns-remap): Docker's capabilities inside its namespace
    Outer("userns-root", "builds", "native", runtime="userns", buildah=True),
    Outer("userns-root-docker-seccomp", "builds", "inplace", fix=SECCOMP, runtime="userns",
          seccomp="docker"),
    Outer("userns-user-filecaps-uidmap", "builds", "native", runtime="userns", uid=1000, uidmap="filecaps",
          buildah=True),
    # rootless runc, run by the unprivileged test user: one id, the user's own
    Outer("rootless-runc", "builds", "inplace", fix="add CAP_SETFCAP", runtime="rootless", caps="runc"),
    # rootless podman: Docker's capability set and podman's seccomp profile, in the user's namespace
    Outer("rootless-podman", "builds", "native", runtime="rootless", seccomp="podman", notes=(HOSTNAME,)),
    Outer("rootless-runc-docker-seccomp", "builds", "inplace", fix=SECCOMP, runtime="rootless",
          seccomp="docker"),
]
# fmt: on


@pytest.fixture(scope="module")
def outer_parts() -> Iterator[dict[str, Path]]:
    """What every outer container shares: pybuild's self-contained tree, the busybox base as an
    OCI layout, the build context; and the image built on this machine to compare with."""
    top = prepare("pybuild-ci-")
    try:
        context = top / "ctx"
        (context / "Containerfile").write_text(CONTAINERFILE.format(base="oci:/base:latest"))
        (context / "hello.txt").write_text("hello\n")
        here = top / "here"
        here.mkdir()
        (here / "Containerfile").write_text(CONTAINERFILE.format(base=f"oci:{top / 'base'}:latest"))
        shutil.copy(context / "hello.txt", here)
        proc = subprocess.run(
            [
                PYBUILD,
                "--store",
                str(top / "store"),
                "build",
                "--timestamp",
                "0",
                "-t",
                f"oci:{top / 'ref'}:r",
                str(here),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        validate_layout(top / "ref", "r")
        yield {
            "top": top,
            "pybuild": top / "pybuild",
            "base": top / "base",
            "ctx": context,
            "ref": top / "ref",
        }
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=False)


def test_the_bar() -> None:
    """The matrix holds pybuild to issue 15's bar: it builds wherever buildah 1.28 builds (11 of
    these 24, recorded by tests/ci/buildah_matrix.py), and in every root configuration."""
    assert len(MATRIX) == 24 and sum(o.buildah for o in MATRIX) == 11
    assert all(o.expect == "builds" for o in MATRIX if o.buildah or o.uid == 0)
    assert {o.caps for o in MATRIX} == {"runc", "docker"} and {o.seccomp for o in MATRIX} == {
        "none",
        "docker",
        "podman",
    }
    assert {o.runtime for o in MATRIX} == {"root", "userns", "rootless"} and {o.uid for o in MATRIX} == {
        0,
        1000,
    }
    assert {o.uidmap for o in MATRIX} == {"plain", "setuid", "filecaps"}
    assert (
        any(o.fuse for o in MATRIX)
        and any(not o.volume for o in MATRIX)
        and any(not o.masked for o in MATRIX)
    )


def _manifest_digest(layout: Path) -> str:
    manifests = json.loads((layout / "index.json").read_text())["manifests"]
    assert len(manifests) == 1, manifests
    return str(manifests[0]["digest"])


def _no_traceback(*procs: subprocess.CompletedProcess[str]) -> None:
    for proc in procs:
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _mode_line(doctor: str) -> str:
    lines = [line for line in doctor.splitlines() if "build and run mode:" in line]
    assert len(lines) == 1, doctor
    return lines[0].split("build and run mode:", 1)[1].strip()


@pytest.mark.slow
@pytest.mark.parametrize("outer", MATRIX, ids=[o.name for o in MATRIX])
def test_in_a_ci_container(outer: Outer, outer_parts: dict[str, Path]) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"{outer.name}-", dir=outer_parts["top"]))
    os.chmod(work, 0o755)
    container = Container(outer, work, outer_parts["pybuild"], outer_parts["ctx"], outer_parts["base"])
    try:
        doctor = container.run("pybuild", "doctor")
        build_args = ["pybuild", "build", "--timestamp", "0", "-t", "oci:/out/l:r", "/ctx"]
        if outer.mode == "inplace":
            # nothing but in-place works: the doctor says so, names the fix, and exits 1 ...
            assert doctor.returncode == 1, doctor.stdout + doctor.stderr
            assert outer.fix in doctor.stdout and "--isolation inplace" in doctor.stdout, doctor.stdout
            # ... a build without the flag fails with one line pointing at it, and nothing written
            refused = container.run(*build_args)
            assert refused.returncode == 1 and "no mode can run a step here" in refused.stderr, refused.stderr
            assert "--isolation inplace" in refused.stderr
            assert not (container.out / "l").exists()
            _no_traceback(refused)
            asked = container.run("pybuild", "doctor", "--isolation", "inplace")
            assert asked.returncode == 0, asked.stdout + asked.stderr
            assert _mode_line(asked.stdout).startswith("inplace"), asked.stdout
            _no_traceback(asked)
            build_args[2:2] = ["--isolation", "inplace"]
        elif outer.expect == "builds":
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr
            assert _mode_line(doctor.stdout).startswith(outer.mode), doctor.stdout
        else:
            assert doctor.returncode == 1, doctor.stdout + doctor.stderr
            assert outer.fix in doctor.stdout and "problem" in doctor.stdout, doctor.stdout
        build = container.run(*build_args)
        _no_traceback(doctor, build)
        if outer.expect == "fails":
            assert build.returncode == 1, build.stdout + build.stderr
            errors = [line for line in build.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, build.stderr
            assert f"hint: {outer.fix}" in build.stderr and "pybuild doctor" in build.stderr  # the same fix
            assert not (container.out / "l").exists()
            return
        assert build.returncode == 0, build.stdout + build.stderr
        # each fallback is named, once; none silently
        notes = {*outer.notes}
        if outer.mode != "inplace":
            notes.add(SYS_NOTE)  # sysfs needs a network namespace of pybuild's own: /sys is bound
            if outer.masked:
                notes.add(PROC_NOTE)
            if outer.mode != "native":
                notes.add(NO_NATIVE)
        for note in (PROC_NOTE, SYS_NOTE, SINGLE, NO_NATIVE, HOSTNAME):
            assert build.stderr.count(note) == (note in notes), build.stderr
        validate_layout(container.out / "l", "r")
        assert _manifest_digest(container.out / "l") == _manifest_digest(outer_parts["ref"])
        if outer.mode == "inplace":
            # the build ran in the container's own /: it holds the last stage's image now
            upper = container.rootfs if outer.runtime == "rootless" else work / "upper"
            assert (upper / "script-ran").read_text() == "script\n"
            assert not (upper / "bin" / "vi").exists() and (upper / "bin" / "busybox").is_file()
            assert (upper / "app" / "copied").read_text() == "hello\n"
            # and a rebuild in the same container takes every step from the cache
            again = container.run(*build_args[:-2], "oci:/out/l:again", "/ctx")
            assert again.returncode == 0 and again.stdout.count("--> Using cache") == 5, again.stdout
    finally:
        container.close()
