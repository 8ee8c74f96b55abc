"""In-place mode's edges, in an outer container where nothing else works (root, Docker's capabilities
and seccomp profile): what needs a namespace is refused with one line, users and ownership work,
what a step leaves running is ended with it, and a failed step leaves nothing half-written. Never
on this machine's own `/`: always inside an outer container (tests/ci/outer.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.ci.outer import Container, Outer, prepare
from tests.fixtures.tools import validate_layout

FILES = {
    "Containerfile.network": "FROM oci:/base:latest\nRUN --network=none true\n",
    "Containerfile.mount": "FROM oci:/base:latest\nRUN --mount=type=bind,source=.,target=/src true\n",
    "Containerfile.tmpfs": "FROM oci:/base:latest\nRUN --mount=type=tmpfs,target=/t,size=1m true\n",
    "Containerfile.users": (
        "FROM oci:/base:latest\n"
        "COPY --chown=65534:65534 hello.txt /nobody-owns\n"
        "USER nobody\n"
        "RUN id -u > /tmp/uid && (sleep 1000 &) && true\n"
        "USER root\n"
        "RUN ! pidof sleep && chown 123:456 /tmp/uid && mkdir -p /etc/app && echo x > /etc/app/conf\n"
    ),
    "Containerfile.fails": "FROM oci:/base:latest\nRUN echo half > /half && exit 3\n",
    "Containerfile.after": "FROM oci:/base:latest\nRUN test ! -e /half && echo whole > /whole\n",
    "Containerfile.a": "FROM oci:/base:latest\nRUN sleep 2 && echo a > /a && test ! -e /b\n",
    "Containerfile.b": "FROM oci:/base:latest\nRUN sleep 2 && echo b > /b && test ! -e /a\n",
}
TWO_AT_ONCE = """
import json, subprocess
procs = [
    subprocess.Popen(
        ["pybuild", "build", "--isolation", "inplace", "-f", f"/ctx/Containerfile.{n}",
         "-t", f"oci:/out/{n}:r", "/ctx"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    for n in "ab"
]
print(json.dumps([[p.wait(), *p.communicate()] for p in procs]))
"""


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    top = prepare("pybuild-inplace-")
    box = None
    try:
        ctx = top / "ctx"
        for name, text in FILES.items():
            (ctx / name).write_text(text)
        (ctx / "hello.txt").write_text("hello\n")
        work = top / "work"
        work.mkdir()
        box = Container(
            Outer("inplace", "builds", "inplace", seccomp="docker"), work, top / "pybuild", ctx, top / "base"
        )
        yield box
    finally:
        if box is not None:
            box.close()
        subprocess.run(["rm", "-rf", str(top)], check=False)


def build(box: Container, name: str, tag: str) -> subprocess.CompletedProcess[str]:
    proc = box.run(
        "pybuild",
        "build",
        "--isolation",
        "inplace",
        "-f",
        f"/ctx/Containerfile.{name}",
        "-t",
        f"oci:/out/{tag}:r",
        "/ctx",
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.slow
def test_what_needs_a_namespace_is_refused(container: Container) -> None:
    proc = build(container, "network", "network")
    assert proc.returncode == 1
    assert one_error(proc) == (
        "error: Containerfile.network:2: RUN --network=none needs a network namespace: "
        "in-place mode runs without namespaces"
    )
    proc = build(container, "mount", "mount")
    assert proc.returncode == 1
    assert one_error(proc) == (
        "error: Containerfile.mount:2: RUN --mount at /src needs a mount namespace: "
        "in-place mode runs without namespaces"
    )
    proc = build(container, "tmpfs", "tmpfs")
    assert proc.returncode == 1
    assert one_error(proc) == (
        "error: Containerfile.tmpfs:2: RUN --mount=type=tmpfs at /t needs a mount namespace: "
        "in-place mode runs without namespaces"
    )
    assert not any((container.out / name).exists() for name in ("network", "mount", "tmpfs"))


@pytest.mark.slow
def test_users_owners_and_leftover_processes(container: Container) -> None:
    proc = build(container, "users", "users")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rootfs = container.result("users")
    owned = os.stat(rootfs / "nobody-owns")
    assert (owned.st_uid, owned.st_gid) == (65534, 65534)
    uid = os.stat(rootfs / "tmp/uid")
    assert (rootfs / "tmp/uid").read_text() == "65534\n" and (uid.st_uid, uid.st_gid) == (123, 456)
    assert (rootfs / "etc/app/conf").read_text() == "x\n"
    # nothing of the outer container (its /etc/hosts, its own files) reached a layer
    assert (rootfs / "etc/passwd").read_text().startswith("root:x:0:0:root:/root:/bin/sh\nnobody")
    assert not (rootfs / "etc/subuid").exists() and not (rootfs / "pybuild").exists()


@pytest.mark.slow
def test_a_failed_step_leaves_nothing_and_the_next_build_starts_clean(container: Container) -> None:
    proc = build(container, "fails", "fails")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "the command exited with status 3" in one_error(proc)
    assert not (container.out / "fails").exists()
    proc = build(container, "after", "after")  # / held /half: the next build puts the base back first
    assert proc.returncode == 0, proc.stdout + proc.stderr
    validate_layout(container.out / "after", "r")


@pytest.mark.slow
def test_two_builds_in_place_at_once_take_turns(container: Container) -> None:
    """Two pybuilds in place in one container: the second waits for the first (it would reset / under
    the first one's step), says so, and each image holds only its own step's file."""
    proc = container.run("/pybuild/bin/python3", "-c", TWO_AT_ONCE)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [code for code, _, _ in results] == [0, 0], results
    waited = [err for _, _, err in results if "another pybuild is building in / here: waiting" in err]
    assert len(waited) == 1, results
    for name, other in (("a", "b"), ("b", "a")):
        rootfs = container.result(name)
        assert (rootfs / name).read_text() == f"{name}\n"
        assert not (rootfs / other).exists()


@pytest.mark.slow
def test_pybuild_run_in_place(container: Container) -> None:
    """`pybuild run --isolation inplace`: the image's command in / as the image's (or a given) user,
    with its exit status; without the flag, one line naming it."""
    proc = container.run(
        "pybuild", "run", "--isolation", "inplace", "--user", "nobody", "oci:/base:latest", "--", "id", "-u"
    )
    assert (proc.returncode, proc.stdout) == (0, "65534\n"), proc.stderr
    proc = container.run(
        "pybuild", "run", "--isolation", "inplace", "oci:/base:latest", "--", "sh", "-c", "exit 7"
    )
    assert proc.returncode == 7 and "Traceback" not in proc.stderr, proc.stderr
    proc = container.run("pybuild", "run", "oci:/base:latest", "--", "true")
    assert proc.returncode == 1 and one_error(proc).startswith("error: no mode can run a step here"), (
        proc.stderr
    )
    assert "hint: as root in a throwaway container, --isolation inplace" in proc.stderr
