"""Where buildah 1.28 builds, in the outer containers of tests/ci/test_matrix.py: the bar pybuild is
held to there. Not a test (it checks nothing of pybuild's): it records buildah's results, to be
compared with pybuild's expectations in the matrix.

    .venv/bin/python -m tests.ci.buildah_matrix     # as root; prints a Markdown table

In each configuration: `buildah bud --isolation chroot` (the isolation buildah documents for builds
inside containers) with the vfs driver, its storage on the store volume (or in the home directory
on the container's root), the same busybox base and context as pybuild's build, without the heredoc
(buildah 1.28 predates RUN heredocs). buildah comes from the same self-contained tree as pybuild.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.ci.outer import Container, Outer, prepare
from tests.ci.test_matrix import CONTAINERFILE, MATRIX

POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}\n'


def buildah_in(outer: Outer, top: Path) -> tuple[bool, str]:
    work = Path(tempfile.mkdtemp(prefix=f"{outer.name}-", dir=top))
    os.chmod(work, 0o755)
    container = Container(outer, work, top / "pybuild", top / "ctx", top / "base")
    try:
        root = container.rootfs  # (the overlay mounted on this machine: writes are copied up)
        (root / "etc/containers").mkdir(exist_ok=True)
        (root / "var/tmp").mkdir(mode=0o1777, exist_ok=True)
        os.chmod(root / "var/tmp", 0o1777)
        (root / "etc/containers/policy.json").write_text(POLICY)
        (root / "etc/containers/registries.conf").write_text("")
        run = root / "tmp" / f"run-{outer.uid}"
        run.mkdir(mode=0o700)
        os.chown(run, outer.host_id(outer.uid), outer.host_id(outer.uid))
        storage = (
            "/store/buildah" if outer.volume else ("/root" if outer.uid == 0 else "/home/build") + "/buildah"
        )
        proc = container.run(
            "buildah",
            "--root",
            storage,
            "--runroot",
            f"/tmp/buildah-run-{outer.uid}",
            "--storage-driver",
            "vfs",
            "bud",
            "--isolation",
            "chroot",
            "-f",
            "/ctx/Containerfile.buildah",
            "-t",
            "localhost/result",
            "/ctx",
            env=(f"XDG_RUNTIME_DIR=/tmp/run-{outer.uid}", "BUILDAH_ISOLATION=chroot"),
        )
        lines = proc.stderr.strip().splitlines() or [""]
        said = next((line for line in lines if "rror" in line), lines[-1])
        return proc.returncode == 0, said
    finally:
        container.close()


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root (the outer containers are runc bundles)")
    top = prepare("pybuild-ci-buildah-", ("buildah",))
    try:
        ctx = top / "ctx"
        plain = CONTAINERFILE.format(base="oci:/base:latest").split("RUN <<EOF")[0]
        (ctx / "Containerfile.buildah").write_text(plain)
        (ctx / "hello.txt").write_text("hello\n")
        print("| configuration | pybuild (expected, tested) | buildah 1.28 --isolation chroot |")
        print("|---|---|---|")
        builds = 0
        for outer in MATRIX:
            ok, said = buildah_in(outer, top)
            builds += ok
            expected = f"builds ({outer.mode})" if outer.expect == "builds" else "fails, doctor names the fix"
            result = "builds" if ok else f"fails: {said[:150]}"
            if ok != outer.buildah:
                result += " (differs from what test_matrix.py records)"
            print(f"| {outer.name} | {expected} | {result} |", flush=True)
        pybuild = sum(o.expect == "builds" for o in MATRIX)
        print(f"\nbuildah builds in {builds} of {len(MATRIX)}; pybuild in {pybuild} of {len(MATRIX)}")
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=False)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
