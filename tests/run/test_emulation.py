"""Foreign platforms through binfmt_misc (pybuild/run/emulation.py): the probe programs, the match
of qemu-user-static's own registration lines, and what the doctor and a build say where emulation is
switched off, or where binfmt_misc is not mounted (a private mount namespace, as in a container)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pybuild.run.emulation import BINFMT_D, MACHINES, Entry, elf_arch, elf_image, register_line
from tests.fixtures.cli import PYBUILD, assert_fails, context
from tests.fixtures.emulation import arm64_emulation_disabled, require_arm64_emulation
from tests.fixtures.tools import run

EMULATED = ("arm64", "arm", "ppc64le", "s390x", "riscv64")


def _entry_of(line: str) -> Entry:
    """An Entry from a registration line (``:name:M:offset:magic:mask:interpreter:flags``)."""
    _, name, kind, offset, magic, mask, interpreter, flags = line.split(":")
    assert kind == "M"

    def unescape(text: str) -> bytes:
        return bytes(text, "ascii").decode("unicode_escape").encode("latin-1")

    return Entry(name, True, interpreter, flags, int(offset or 0), unescape(magic), unescape(mask))


def test_probe_programs_are_the_platforms_elf() -> None:
    for arch in MACHINES:
        image = elf_image(arch)
        assert elf_arch(image[:20]) == arch
    # `file` (libmagic) reads the same machine from each header
    described = {}
    for arch in ("amd64", "arm64", "s390x", "riscv64"):
        path = Path(f"/tmp/pybuild-elf-{os.getpid()}-{arch}")
        path.write_bytes(elf_image(arch))
        try:
            described[arch] = run(["file", "-b", str(path)]).stdout
        finally:
            path.unlink()
    assert "x86-64" in described["amd64"] and "ARM aarch64" in described["arm64"]
    assert "IBM S/390" in described["s390x"] and "RISC-V" in described["riscv64"]


def test_qemu_registration_lines_match_their_platform_only() -> None:
    for arch in EMULATED:
        line = register_line(arch)
        assert line is not None, (
            f"{BINFMT_D}/qemu-{MACHINES[arch].qemu}.conf is missing: run scripts/setup.sh"
        )
        entry = _entry_of(line)
        assert "F" in entry.flags
        matching = [other for other in MACHINES if entry.matches(elf_image(other)[:64])]
        assert matching == [arch], (arch, matching)


def _doctor(env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    proc = subprocess.run(
        [*prefix, PYBUILD, "doctor", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return {c["name"]: c for c in json.loads(proc.stdout)}


def test_doctor_names_the_fix_for_a_disabled_emulator(tmp_path: Path) -> None:
    env = {"PYBUILD_STORE": str(tmp_path / "store")}
    with arm64_emulation_disabled():
        checks = _doctor(env)
    arm = checks["emulation linux/arm64"]
    assert not arm["ok"] and not arm["required"]
    assert arm["detail"] == "the binfmt_misc entry qemu-aarch64 for arm64 is disabled"
    assert arm["fix"] == "as root: echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64"
    assert checks["emulation linux/s390x"]["ok"]  # the others are left as they are
    assert _doctor(env)["emulation linux/arm64"]["detail"].startswith("emulated: qemu-aarch64 (")


# binfmt_misc unmounted in a mount namespace of its own, as in a container without the mount
UNMOUNTED = ("unshare", "--mount", "--", "sh", "-c", 'umount /proc/sys/fs/binfmt_misc && exec "$@"', "sh")


def test_without_the_mount_a_probe_decides(tmp_path: Path, multiarch_layout: Path) -> None:
    require_arm64_emulation()
    env = {**os.environ, "PYBUILD_STORE": str(tmp_path / "store")}
    subprocess.run([PYBUILD, "copy", "-q", f"oci:{multiarch_layout}:latest", "busybox"], env=env, check=True)
    ctx = context(tmp_path / "ctx", "FROM busybox\nRUN uname -m > /arch\n")
    build = [
        *UNMOUNTED,
        PYBUILD,
        "build",
        "--no-cache",
        "--platform",
        "linux/arm64",
        "-t",
        "localhost/a",
        str(ctx),
    ]
    # the emulator is registered outside: the build runs, and the doctor says how it knows
    proc = subprocess.run(build, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    arm = _doctor(env, UNMOUNTED)["emulation linux/arm64"]
    assert arm["ok"] and arm["detail"].startswith("emulated (binfmt_misc is not mounted")
    # and when it is off too, the error says to install, mount and register
    with arm64_emulation_disabled():
        proc = subprocess.run(build, capture_output=True, text=True, env=env)
        arm = _doctor(env, UNMOUNTED)["emulation linux/arm64"]
    line = assert_fails(proc, 1, "binfmt_misc is not mounted on /proc/sys/fs/binfmt_misc")
    expected = register_line("arm64")
    assert "fix: apt-get install qemu-user-static, then as root: mount -t binfmt_misc binfmt_misc " in line
    assert f"without systemd, as root: echo '{expected}' > /proc/sys/fs/binfmt_misc/register" in line
    assert not arm["ok"] and "apt-get install qemu-user-static" in arm["fix"]
    store = tmp_path / "store"
    assert subprocess.run([PYBUILD, "--store", str(store), "check"], capture_output=True).returncode == 0


@pytest.mark.rootless
def test_doctor_as_the_test_user_sees_the_emulators(user_home: Path) -> None:
    from tests.fixtures.rootless import as_test_user

    proc = as_test_user([PYBUILD, "doctor", "--json"], user_home)
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    for platform in ("linux/arm64", "linux/arm/v7", "linux/s390x"):
        assert checks[f"emulation {platform}"]["ok"], checks[f"emulation {platform}"]
