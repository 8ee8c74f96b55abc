"""The rootless executor: `pybuild run` and run_container, as root and as the unprivileged test user."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pybuild.run import RunSpec, run_container
from tests.fixtures.locks import holders, wait_for
from tests.fixtures.rootless import PYBUILD, TEST_USER, as_test_user, subordinate_start, user_uid
from tests.fixtures.trees import many_layers

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lower(tmp_path: Path, busybox_rootfs: Path) -> Path:
    path = tmp_path / "lower"
    shutil.copytree(busybox_rootfs, path, symlinks=True)
    return path


@pytest.mark.parametrize(
    "script, status", [("exit 0", 0), ("exit 1", 1), ("exit 42", 42), ("kill -9 $$", 137)]
)
def test_exit_status_as_root(lower: Path, tmp_path: Path, script: str, status: int) -> None:
    (tmp_path / "upper").mkdir()
    result = run_container(RunSpec([lower], tmp_path / "upper", ["/bin/sh", "-c", script]))
    assert result.exit_status == status


def test_commands_start_with_default_signal_dispositions(lower: Path, tmp_path: Path) -> None:
    # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: a command that inherited
    # that would spin on EPIPE (`yes | head`) instead of dying of SIGPIPE
    (tmp_path / "upper").mkdir()
    script = "yes | head -c 10 >/dev/null && grep SigIgn /proc/self/status > /tmp/sigign"
    result = run_container(RunSpec([lower], tmp_path / "upper", ["/bin/sh", "-c", script]))
    assert result.exit_status == 0
    ignored = int((tmp_path / "upper" / "tmp" / "sigign").read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))


def test_chown_and_cwd_land_in_the_upperdir(lower: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    script = 'echo hi > /tmp/f && chown 123:456 /tmp/f && [ "$(pwd)" = /work/dir ] && [ "$(id -u)" = 0 ]'
    result = run_container(RunSpec([lower], upper, ["/bin/sh", "-c", script], cwd="/work/dir"))
    assert result.exit_status == 0
    st = os.lstat(upper / "tmp" / "f")
    assert (st.st_uid, st.st_gid) == (123, 456)
    assert (upper / "work" / "dir").is_dir()
    # the plumbing leaves nothing behind: no hosts/resolv.conf/hostname, no /proc or /dev
    assert (
        not (upper / "etc" / "hosts").exists()
        and not (upper / "proc").exists()
        and not (upper / "dev").exists()
    )
    assert not list(tmp_path.glob("pybuild-run-*"))


def test_only_the_standard_fds_reach_the_process(lower: Path, tmp_path: Path) -> None:
    (tmp_path / "upper").mkdir()
    leaked = os.open("/", os.O_RDONLY)  # no O_CLOEXEC: inheritable, like a leaked fd
    os.set_inheritable(leaked, True)
    try:
        out = tmp_path / "out"
        out.mkdir()
        spec = RunSpec(
            [lower],
            tmp_path / "upper",
            ["/bin/sh", "-c", "ls /proc/self/fd > /out/fds"],
            mounts=[(str(out), "/out", False)],
        )
        assert run_container(spec).exit_status == 0
        assert sorted((out / "fds").read_text().split()) == ["0", "1", "2", "3"]  # 3: ls's own directory fd
        # CVE-2024-21626: a working directory through a leaked fd must not reach the host
        spec = RunSpec(
            [lower],
            tmp_path / "upper",
            ["/bin/sh", "-c", "ls /out >/dev/null; pwd"],
            cwd=f"/proc/self/fd/{leaked}",
            mounts=[(str(out), "/out", False)],
        )
        try:
            result = run_container(spec)
        except Exception as exc:  # refusing is fine; escaping is not
            assert (
                "outside the container" in str(exc) or "No such file" in str(exc) or "File exists" in str(exc)
            )
        else:
            assert result.exit_status != 0 or not (Path("/") / "out").exists()
    finally:
        os.close(leaked)


def test_network_none_has_only_loopback(lower: Path, tmp_path: Path) -> None:
    (tmp_path / "upper").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    spec = RunSpec(
        [lower],
        tmp_path / "upper",
        ["/bin/sh", "-c", "cat /proc/net/dev > /out/dev"],
        network="none",
        mounts=[(str(out), "/out", False)],
    )
    assert run_container(spec).exit_status == 0
    names = [line.split(":")[0].strip() for line in (out / "dev").read_text().splitlines()[2:]]
    assert names == ["lo"]


@pytest.mark.rootless
def test_rootless_ids_and_statuses(tmp_path: Path, user_home: Path, busybox_rootfs: Path) -> None:
    lower = user_home / "lower"
    shutil.copytree(busybox_rootfs, lower, symlinks=True)
    subprocess.run(["chown", "-R", f"{TEST_USER}:{TEST_USER}", str(lower)], check=True)
    script = f"""
import sys
from pathlib import Path
from pybuild.run import RunSpec, run_container
statuses = []
first = "id -u > /tmp/id; cat /proc/self/uid_map > /tmp/map; echo x > /tmp/f; chown 123:456 /tmp/f"
for i, cmd in enumerate([first, "exit 1", "exit 42", "kill -9 $$"]):
    upper = Path("{user_home}") / f"upper{{i}}"
    upper.mkdir()
    statuses.append(run_container(RunSpec([Path("{lower}")], upper, ["/bin/sh", "-c", cmd])).exit_status)
print(statuses)
"""
    proc = as_test_user([sys.executable, "-c", script], user_home, env={"PYTHONPATH": str(PROJECT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1, 42, 137]"
    upper = user_home / "upper0"
    assert (upper / "tmp" / "id").read_text().strip() == "0"
    maps = [line.split() for line in (upper / "tmp" / "map").read_text().splitlines()]
    assert maps == [["0", str(user_uid()), "1"], ["1", str(subordinate_start("uid")), "65536"]]
    st = os.lstat(upper / "tmp" / "f")
    assert (st.st_uid, st.st_gid) == (subordinate_start("uid") + 122, subordinate_start("gid") + 455)


def _store_with_busybox(home: Path, busybox_layout: Path) -> Path:
    oci = home / "oci"
    shutil.copytree(busybox_layout, oci)
    subprocess.run(["chown", "-R", f"{TEST_USER}:{TEST_USER}", str(oci)], check=True)
    return oci


@pytest.mark.rootless
def test_pybuild_run_rootless(user_home: Path, busybox_layout: Path) -> None:
    oci = _store_with_busybox(user_home, busybox_layout)
    store = ["--store", str(user_home / "store")]
    assert as_test_user([PYBUILD, *store, "tag", f"oci:{oci}", "busybox"], user_home).returncode == 0
    proc = as_test_user([PYBUILD, *store, "run", "busybox", "--", "id", "-u"], user_home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
    for script, status in (("exit 1", 1), ("exit 42", 42), ("kill -9 $$", 137)):
        assert (
            as_test_user([PYBUILD, *store, "run", "busybox", "--", "sh", "-c", script], user_home).returncode
            == status
        )
    assert not any((user_home / "store" / ".pybuild" / "run").iterdir())


def test_pybuild_run_as_root(pybuild_cli: Any, busybox_layout: Path) -> None:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    assert pybuild_cli("run", "busybox", "--", "id", "-u").stdout.strip() == "0"
    proc = pybuild_cli(
        "run",
        "-e",
        "A=b",
        "--workdir",
        "/srv",
        "busybox",
        "--",
        "sh",
        "-c",
        "echo $A; pwd; exit 42",
        check=False,
    )
    assert proc.returncode == 42 and proc.stdout.split() == ["b", "/srv"]
    bad = pybuild_cli("run", "busybox", "--", "nosuchcommand", check=False)
    assert bad.returncode == 1 and "command not found" in bad.stderr and "Traceback" not in bad.stderr


def test_ctrl_c_cleans_up(pybuild_cli: Any, busybox_layout: Path) -> None:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    pybuild_cli("run", "busybox", "--", "true")  # layers extracted: the signal lands in the container
    env = {**os.environ, "PYBUILD_STORE": str(pybuild_cli.store)}
    proc = subprocess.Popen(
        [PYBUILD, "run", "busybox", "--", "sleep", "300"], env=env, stderr=subprocess.PIPE
    )
    time.sleep(1.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130
    time.sleep(0.3)
    assert subprocess.run(
        ["pgrep", "-x", "sleep", "-f"], capture_output=True, text=True
    ).stdout.strip() == "" or all(
        "300" not in line
        for line in subprocess.run(
            ["pgrep", "-a", "sleep"], capture_output=True, text=True
        ).stdout.splitlines()
    )
    assert str(pybuild_cli.store) not in Path("/proc/self/mountinfo").read_text()
    assert not any((pybuild_cli.store / ".pybuild" / "run").iterdir())
    assert not list((pybuild_cli.store / ".pybuild" / "layers").glob(".tmp-*"))


def test_many_layers_beyond_the_mount_option_page(tmp_path: Path, busybox_rootfs: Path) -> None:
    base = tmp_path / ("a-rather-long-directory-name-for-layers-" * 2)
    layers = many_layers(base)
    bottom = tmp_path / "bottom"
    shutil.copytree(busybox_rootfs, bottom, symlinks=True)
    lowers = [*reversed(layers), bottom]
    assert len(":".join(map(str, lowers))) > 4096
    (tmp_path / "upper").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    spec = RunSpec(
        lowers,
        tmp_path / "upper",
        ["/bin/sh", "-c", "ls / | grep -c '^file' > /out/n"],
        mounts=[(str(out), "/out", False)],
    )
    assert run_container(spec).exit_status == 0
    assert (out / "n").read_text().strip() == "150"


def _top_process(marker: str) -> int:
    """The pid of the `pybuild run` whose command line holds ``marker`` (not its forked keeper)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if any(a.endswith(b"/pybuild") for a in argv[:2]) and marker.encode() in b" ".join(argv):
            found[int(entry.name)] = ppid
    tops = [pid for pid, ppid in found.items() if ppid not in found]
    assert len(tops) == 1, found
    return tops[0]


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_gc_sweeps_workspaces_of_ended_runs_only(
    pybuild_cli: Any, busybox_layout: Path, user_home: Path, rootless: bool
) -> None:
    """A running `pybuild run` holds its workspace (a flock): `pybuild gc` removes the workspace of a
    run killed by SIGKILL (which had no chance to clean up) and never the one of a run still going,
    which then finishes as usual."""
    home = user_home if rootless else pybuild_cli.store.parent
    store = user_home / "store" if rootless else pybuild_cli.store
    oci = _store_with_busybox(user_home, busybox_layout) if rootless else busybox_layout
    out = home / "out"
    out.mkdir()
    if rootless:
        subprocess.run(["chown", f"{TEST_USER}:{TEST_USER}", str(out)], check=True)

    def pybuild(*args: str) -> list[str]:
        command = [PYBUILD, "--store", str(store), *args]
        if not rootless:
            return command
        env = [f"HOME={home}", f"XDG_RUNTIME_DIR={home / 'run'}", "PATH=/usr/bin:/bin:/usr/sbin:/sbin"]
        return ["runuser", "-u", TEST_USER, "--", "env", "-i", *env, *command]

    assert subprocess.run(pybuild("tag", f"oci:{oci}", "busybox"), cwd=home).returncode == 0
    runs = store / ".pybuild" / "run"

    def start(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        before = set(runs.iterdir()) if runs.is_dir() else set()
        script = f"touch /out/{name}-started && while [ ! -e /out/{name}-release ]; do sleep 0.1; done"
        proc = subprocess.Popen(
            pybuild("run", "-v", f"{out}:/out", "busybox", "--", "sh", "-c", script),
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: (out / f"{name}-started").exists() or proc.poll() is not None, f"{name} to start")
        assert proc.poll() is None, proc.communicate()
        (workspace,) = set(runs.iterdir()) - before
        return proc, workspace

    killed, killed_workspace = start("killed")
    os.kill(_top_process("/out/killed-release"), signal.SIGKILL)
    killed.wait()
    live, live_workspace = start("live")
    try:
        # the killed run's keeper and container die with it (PDEATHSIG): its flock goes with them
        wait_for(lambda: holders(killed_workspace) == 0, "the killed run's processes to end")
        assert killed_workspace.is_dir() and (killed_workspace / "upper").is_dir()  # left behind
        gc = subprocess.run(pybuild("gc"), cwd=home, capture_output=True, text=True)
        assert gc.returncode == 0, gc.stderr
        assert "stale build workspaces and 1 of ended runs" in gc.stdout, gc.stdout
        assert not killed_workspace.exists()
        assert live_workspace.is_dir() and holders(live_workspace) >= 1
        assert live.poll() is None  # untouched: still running
    finally:
        (out / "live-release").touch()
        _, stderr = live.communicate(timeout=120)
    assert live.returncode == 0, stderr
    assert not live_workspace.exists()  # removed by its own run, as always
    gc = subprocess.run(pybuild("gc"), cwd=home, capture_output=True, text=True)
    assert "stale build workspaces and 0 of ended runs" in gc.stdout, gc.stdout
