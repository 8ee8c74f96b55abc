"""The three overlay modes (native, fuse, copy) leave the same overlay-format upperdir: forcing each
gives the same changeset and byte-identical layers, as root and as the unprivileged user."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pybuild.diff import scan_upperdir, write_layer
from pybuild.errors import RunError
from pybuild.run import RunSpec, overlay_mode, run_container, run_function
from tests.fixtures.rootless import TEST_USER, as_test_user

PROJECT = Path(__file__).resolve().parents[2]
MODES = ["native", "fuse", "copy"]

SCRIPT = (
    "echo new > /created && mkdir -p /newdir/sub && echo n > /newdir/sub/f"
    " && echo more >> /data/modify-me && rm /data/delete-me && rm -rf /data/gone"
    " && rm -rf /replace-dir && echo f > /replace-dir"
    " && rm -rf /opaque && mkdir /opaque && echo n > /opaque/fresh"
    " && chmod 600 /data/chmod-me && chown 123:456 /data/chown-me"
    " && echo deep > /deep/a/b/c/file"
)


def make_layers(base: Path, busybox: Path) -> list[Path]:
    """Two overlay-format layer directories over busybox, top first."""
    bottom = base / "l0"
    shutil.copytree(busybox, bottom, symlinks=True)
    top = base / "l1"
    for d in ("data/gone/x", "replace-dir/x", "opaque/a/b", "deep/a/b/c"):
        (top / d).mkdir(parents=True)
    for f in ("modify-me", "delete-me", "chmod-me", "chown-me", "gone/x/y"):
        (top / "data" / f).write_text(f)
    (top / "opaque" / "a" / "b" / "old").write_text("old")
    (top / "opaque" / "keep").write_text("k")
    (top / "replace-dir" / "x" / "y").write_text("y")
    (top / "deep" / "a" / "b" / "c" / "old").write_text("o")
    # a whiteout in the top layer hides a busybox file
    victim = next(p for p in sorted((bottom / "bin").iterdir()) if p.name != "sh")
    (top / "bin").mkdir()
    os.mknod(top / "bin" / victim.name, stat.S_IFCHR, 0)
    shutil.copystat(bottom / "bin", top / "bin")
    for p in (top, bottom):
        os.utime(p, (1_600_000_000, 1_600_000_000))
    return [top, bottom]


def in_python() -> None:
    """The same changes as SCRIPT, from run_function."""
    with open("/created", "w") as f:
        f.write("new\n")
    os.makedirs("/newdir/sub")
    with open("/newdir/sub/f", "w") as f:
        f.write("n\n")
    with open("/data/modify-me", "a") as f:
        f.write("more\n")
    os.unlink("/data/delete-me")
    shutil.rmtree("/data/gone")
    shutil.rmtree("/replace-dir")
    with open("/replace-dir", "w") as f:
        f.write("f\n")
    shutil.rmtree("/opaque")
    os.mkdir("/opaque")
    with open("/opaque/fresh", "w") as f:
        f.write("n\n")
    os.chmod("/data/chmod-me", 0o600)
    os.chown("/data/chown-me", 123, 456)
    with open("/deep/a/b/c/file", "w") as f:
        f.write("deep\n")


def layer_of(upper: Path, lowers: list[Path]) -> tuple[list[tuple[str, str]], bytes]:
    changes = scan_upperdir(upper, lowers)
    out = io.BytesIO()
    write_layer(changes, upper, out, compression="none", source_date_epoch=0)
    return sorted((c.path, c.kind) for c in changes), out.getvalue()


def run_modes(base: Path, lowers: list[Path], modes: list[str]) -> dict[str, dict[str, object]]:
    """For each mode, the changeset and layer bytes of SCRIPT (run_container) and in_python
    (run_function), each in a fresh upperdir."""
    results: dict[str, dict[str, object]] = {}
    for mode in modes:
        upper = base / f"upper-{mode}"
        upper.mkdir()
        result = run_container(RunSpec(lowers, upper, ["/bin/sh", "-c", SCRIPT], mode=mode))
        changes, data = layer_of(upper, lowers)
        fn_upper = base / f"fn-upper-{mode}"
        fn_upper.mkdir()
        run_function(lowers, fn_upper, in_python, mode=mode)
        fn_changes, fn_data = layer_of(fn_upper, lowers)
        results[mode] = {
            "status": result.exit_status,
            "mode": result.mode,
            "changes": changes,
            "layer": data.hex(),
            "fn_changes": fn_changes,
            "fn_layer": fn_data.hex(),
        }
    return results


EXPECTED = {
    ("created", "add"),
    ("newdir", "add"),
    ("newdir/sub", "add"),
    ("newdir/sub/f", "add"),
    ("data", "add"),
    ("data/modify-me", "add"),
    ("data/delete-me", "delete"),
    ("data/gone", "delete"),
    ("replace-dir", "add"),
    ("opaque", "opaque"),
    ("opaque", "add"),
    ("opaque/fresh", "add"),
    ("data/chmod-me", "add"),
    ("data/chown-me", "add"),
    ("deep/a/b/c", "add"),
    ("deep/a/b/c/file", "add"),
}


def check_same(results: dict[str, dict[str, object]]) -> None:
    native = results["native"]
    assert native["status"] == 0
    assert set(native["changes"]) >= EXPECTED  # type: ignore[arg-type]
    assert set(native["fn_changes"]) >= EXPECTED  # type: ignore[arg-type]
    for mode, res in results.items():
        assert res["status"] == 0 and res["mode"] == mode
        assert res["changes"] == native["changes"], mode
        assert res["layer"] == native["layer"], mode
        assert res["fn_changes"] == native["fn_changes"], mode
        assert res["fn_layer"] == native["fn_layer"], mode


def fuse_usable() -> bool:
    return shutil.which("fuse-overlayfs") is not None and os.path.exists("/dev/fuse")


@pytest.mark.slow
def test_every_mode_gives_the_same_layer_as_root(tmp_path: Path, busybox_rootfs: Path) -> None:
    if not fuse_usable():
        pytest.fail("fuse-overlayfs or /dev/fuse is missing: run scripts/setup.sh")
    lowers = make_layers(tmp_path, busybox_rootfs)
    results = run_modes(tmp_path, lowers, MODES)
    check_same(results)
    assert not list(tmp_path.glob("pybuild-*"))


@pytest.mark.parametrize("mode", ["fuse", "copy"])
def test_fallback_mode_matches_native(tmp_path: Path, busybox_rootfs: Path, mode: str) -> None:
    lowers = make_layers(tmp_path, busybox_rootfs)
    check_same(run_modes(tmp_path, lowers, ["native", mode]))


def test_mode_is_chosen_by_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYBUILD_RUN_MODE", "copy")
    assert overlay_mode() == "copy"
    assert overlay_mode("fuse") == "fuse"
    monkeypatch.setenv("PYBUILD_RUN_MODE", "bogus")
    with pytest.raises(RunError, match="unknown isolation mode"):
        overlay_mode()
    monkeypatch.delenv("PYBUILD_RUN_MODE")
    assert overlay_mode() in MODES


ROOTLESS_SCRIPT = """
import json, sys
from pathlib import Path
from typing import Any
from tests.run.test_modes import make_layers, run_modes
base, busybox, modes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
lowers = make_layers(base, busybox)
print(json.dumps(run_modes(base, lowers, modes)))
"""


@pytest.mark.slow
@pytest.mark.rootless
def test_every_mode_gives_the_same_layer_rootless(user_home: Path, busybox_rootfs: Path) -> None:
    modes = ["native", "copy"]
    if fuse_usable():
        os.chmod("/dev/fuse", 0o666)  # as Debian desktops have it; rootless fuse needs it
        modes.insert(1, "fuse")
    busybox = user_home / "busybox"
    shutil.copytree(busybox_rootfs, busybox, symlinks=True)
    subprocess.run(["chown", "-R", f"{TEST_USER}:{TEST_USER}", str(busybox)], check=True)
    proc = as_test_user(
        [sys.executable, "-c", ROOTLESS_SCRIPT, str(user_home), str(busybox), ",".join(modes)],
        user_home,
        env={"PYTHONPATH": str(PROJECT)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for res in results.values():
        res["changes"] = [tuple(c) for c in res["changes"]]
        res["fn_changes"] = [tuple(c) for c in res["fn_changes"]]
    check_same(results)
    assert modes == list(results)


def test_isolation_flag_values(pybuild_cli: Any, tmp_path: Path) -> None:
    """--isolation (and $PYBUILD_RUN_MODE, which it reads) takes auto, native, fuse, copy or inplace;
    anything else is a bad command line: exit 2, one line, on build, run and doctor."""
    (tmp_path / "Containerfile").write_text("FROM scratch\nENV A=1\n")
    for args in (
        ["build", "--isolation", "bogus", str(tmp_path)],
        ["run", "--isolation", "bogus", "x"],
        ["doctor", "--isolation", "bogus"],
    ):
        proc = pybuild_cli(*args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == ("error: --isolation 'bogus': expected auto, native, fuse, copy, inplace\n"), (
            proc.stderr
        )
    proc = pybuild_cli("build", str(tmp_path), check=False, env={"PYBUILD_RUN_MODE": "bogus"})
    assert proc.returncode == 2 and "--isolation 'bogus'" in proc.stderr
    assert pybuild_cli("build", "--isolation", "copy", "-q", str(tmp_path)).returncode == 0


def test_inplace_is_refused_here() -> None:
    """In-place mode is judged, never run, on this machine: pybuild runs from /usr here, so the
    reset between stages would remove what it needs (tests/ci runs in-place mode in containers)."""
    from pybuild.run.inplace import problem
    from pybuild.run.modes import check_mode

    assert problem() == (
        "in-place mode needs pybuild on a tree of its own, and it runs from /usr, where images have files"
    )
    with pytest.raises(RunError, match="in-place mode needs pybuild on a tree of its own"):
        check_mode("inplace")
