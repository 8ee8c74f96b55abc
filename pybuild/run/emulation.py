"""Foreign platforms: running another architecture's binaries under qemu-user through binfmt_misc.

The kernel hands an ELF binary it cannot run itself to the interpreter of the binfmt_misc entry
whose magic and mask match the binary's first bytes. An entry matches here when it matches a
minimal ELF header of the platform (class, byte order, type, machine), whatever the entry is
called (Debian's ``qemu-aarch64``, tonistiigi/binfmt's, a hand-made one). A RUN step runs in the
image's own root, where the interpreter's path does not exist: only an entry with the F flag
(the kernel opens the interpreter when it is registered) works there, rootless or not.

Nothing here changes the machine; the fixes are named for the user (``apt-get install
qemu-user-static``, and where systemd is absent, the mount and the registration line from the
package's own /usr/lib/binfmt.d file, which carries the F flag).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
BINFMT_D = Path("/usr/lib/binfmt.d")
INSTALL = "apt-get install qemu-user-static"
MOUNT = "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"
#: the platforms `pybuild doctor` reports on
COMMON = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/riscv64")
PROBE_STATUS = 42


@dataclass(frozen=True)
class Machine:
    """What an architecture's ELF binaries look like, and a program that exits with PROBE_STATUS."""

    qemu: str  # qemu's name for it (qemu-aarch64, /usr/lib/binfmt.d/qemu-aarch64.conf)
    bits: int
    big_endian: bool
    machine: int  # e_machine
    code: bytes  # exit(PROBE_STATUS), as a first instruction sequence
    flags: int = 0  # e_flags


def _words(*words: int, big: bool = False) -> bytes:
    return b"".join(struct.pack(">I" if big else "<I", w) for w in words)


# exit(42) on each: the syscall number and the status in the registers of its Linux ABI
MACHINES = {
    "amd64": Machine("x86_64", 64, False, 62, bytes.fromhex("b83c000000bf2a0000000f05")),
    "386": Machine("i386", 32, False, 3, bytes.fromhex("b801000000bb2a000000cd80")),
    "arm64": Machine("aarch64", 64, False, 183, _words(0xD2800540, 0xD2800BA8, 0xD4000001)),
    "arm": Machine("arm", 32, False, 40, _words(0xE3A0002A, 0xE3A07001, 0xEF000000), 0x05000000),
    "ppc64le": Machine("ppc64le", 64, False, 21, _words(0x3860002A, 0x38000001, 0x44000002), 2),
    "s390x": Machine("s390x", 64, True, 22, bytes.fromhex("a729002a0a01")),
    "riscv64": Machine("riscv64", 64, False, 243, _words(0x02A00513, 0x05D00893, 0x00000073), 5),
}
# what a host runs without emulation (a 64-bit x86 kernel runs i386 binaries)
NATIVE = {"amd64": ("amd64", "386"), "arm64": ("arm64",)}
_ELF_MACHINES = {m.machine: arch for arch, m in MACHINES.items()}


def _host_arch() -> str:
    from ..layout import host_platform

    return host_platform().architecture


def platform_text(os_name: str, architecture: str, variant: str | None = None) -> str:
    return f"{os_name}/{architecture}" + (f"/{variant}" if variant else "")


def elf_image(arch: str) -> bytes:
    """A complete static ELF executable for ``arch`` that exits with PROBE_STATUS."""
    m = MACHINES[arch]
    end = ">" if m.big_endian else "<"
    ident = b"\x7fELF" + bytes([1 if m.bits == 32 else 2, 2 if m.big_endian else 1, 1, 0]) + bytes(8)
    base = 0x400000 if m.bits == 64 else 0x10000
    if m.bits == 64:
        ehsize, phsize = 64, 56
        entry = base + ehsize + phsize
        size = ehsize + phsize + len(m.code)
        header = ident + struct.pack(
            end + "HHIQQQIHHHHHH", 2, m.machine, 1, entry, ehsize, 0, m.flags, ehsize, phsize, 1, 0, 0, 0
        )
        phdr = struct.pack(end + "IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    else:
        ehsize, phsize = 52, 32
        entry = base + ehsize + phsize
        size = ehsize + phsize + len(m.code)
        header = ident + struct.pack(
            end + "HHIIIIIHHHHHH", 2, m.machine, 1, entry, ehsize, 0, m.flags, ehsize, phsize, 1, 0, 0, 0
        )
        phdr = struct.pack(end + "IIIIIIII", 1, 0, base, base, size, size, 5, 0x1000)
    return header + phdr + m.code


def elf_arch(head: bytes) -> str | None:
    """The architecture of an ELF binary from its first 20 bytes (None: not ELF, or unknown)."""
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return None
    (machine,) = struct.unpack(">H" if head[5] == 2 else "<H", head[18:20])
    return _ELF_MACHINES.get(machine)


@dataclass(frozen=True)
class Entry:
    """One binfmt_misc registration (/proc/sys/fs/binfmt_misc/NAME)."""

    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes

    def matches(self, head: bytes) -> bool:
        part = head[self.offset : self.offset + len(self.magic)]
        if len(part) < len(self.magic):
            return False
        mask = self.mask or b"\xff" * len(self.magic)
        return all((b & k) == (m & k) for b, m, k in zip(part, self.magic, mask, strict=False))


def _entry(path: Path) -> Entry | None:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0] not in ("enabled", "disabled"):
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value.strip()
    if "magic" not in fields:
        return None  # an extension entry (E), never an ELF's
    try:
        return Entry(
            path.name,
            lines[0] == "enabled",
            fields.get("interpreter", ""),
            fields.get("flags", ""),
            int(fields.get("offset", "0")),
            bytes.fromhex(fields["magic"]),
            bytes.fromhex(fields.get("mask", "")),
        )
    except ValueError:
        return None


def binfmt_state() -> tuple[str | None, list[Entry]]:
    """(why binfmt_misc is unusable, or None; its entries)."""
    status = BINFMT_MISC / "status"
    try:
        text = status.read_text().strip()
    except FileNotFoundError:
        return f"binfmt_misc is not mounted on {BINFMT_MISC}", []
    except OSError as exc:
        return f"cannot read {status}: {exc.strerror or exc}", []
    if text != "enabled":
        return "binfmt_misc is disabled (/proc/sys/fs/binfmt_misc/status)", []
    entries = []
    with contextlib.suppress(OSError):
        for path in sorted(BINFMT_MISC.iterdir()):
            if path.name not in ("status", "register"):
                found = _entry(path)
                if found is not None:
                    entries.append(found)
    return None, entries


def arch_of(architecture: str) -> str | None:
    """The key of MACHINES for an OCI architecture name (None: one pybuild knows no ELF of)."""
    return architecture if architecture in MACHINES else None


def native(architecture: str) -> bool:
    host = _host_arch()
    return architecture == host or architecture in NATIVE.get(host, ())


def register_line(architecture: str) -> str | None:
    """The binfmt_misc registration line qemu-user-static ships for ``architecture`` (with the F
    flag), or None when the package is not installed."""
    m = MACHINES.get(architecture)
    if m is None:
        return None
    try:
        text = (BINFMT_D / f"qemu-{m.qemu}.conf").read_text()
    except OSError:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(":")]
    return lines[0] if lines else None


def _systemd() -> bool:
    return Path("/run/systemd/system").is_dir()


def emulation_fix(architecture: str, entry: Entry | None = None, why: str = "") -> list[str]:
    """The steps that make ``architecture``'s binaries run here, in order."""
    m = MACHINES.get(architecture)
    qemu = m.qemu if m else architecture
    if entry is not None and not entry.enabled:
        return [f"as root: echo 1 > {BINFMT_MISC}/{entry.name}"]
    line = register_line(architecture)
    shown = line or f"the line of {BINFMT_D}/qemu-{qemu}.conf"
    register = f"as root: echo '{shown}' > {BINFMT_MISC}/register"
    if entry is not None:  # registered without the F flag: again, with it
        return [
            *([INSTALL] if line is None else []),
            f"as root: echo -1 > {BINFMT_MISC}/{entry.name}",
            register,
        ]
    steps = [INSTALL]
    if "not mounted" in why:
        steps.append(f"as root: {MOUNT}")
    if _systemd() and "not mounted" not in why:
        steps.append(f"as root: systemctl restart systemd-binfmt (it registers qemu-{qemu} from {BINFMT_D})")
    else:
        steps.append(f"without systemd, {register}")
    return steps


def emulation_problem(architecture: str) -> tuple[str, list[str]] | None:
    """Why ``architecture``'s binaries cannot run in a container here and the fix, or None when
    they can (natively, or through a binfmt_misc entry with the F flag)."""
    if native(architecture) or arch_of(architecture) is None:
        return None  # an architecture pybuild knows no ELF of is left to the kernel (ENOEXEC says)
    why, entries = binfmt_state()
    if why is not None:
        # the registrations cannot be read here (a container without the mount sees the host's
        # emulators all the same): whether a program of that platform runs decides
        ran = _probed(architecture)
        if ran is None or not ran.startswith(ENOEXEC_WHY):
            return None  # it ran, or nothing can be told from here: the exec will say
        return f"{why}, and a linux/{architecture} program does not run here", emulation_fix(
            architecture, why=why
        )
    head = elf_image(architecture)[:64]
    found = [e for e in entries if e.matches(head)]
    usable = [e for e in found if e.enabled and "F" in e.flags]
    if usable:
        return None
    m = MACHINES[architecture]
    if not found:
        return f"no emulator for {architecture} (qemu-{m.qemu}) is registered in binfmt_misc", emulation_fix(
            architecture
        )
    entry = found[0]
    if not entry.enabled:
        return f"the binfmt_misc entry {entry.name} for {architecture} is disabled", emulation_fix(
            architecture, entry
        )
    why = (
        f"the binfmt_misc entry {entry.name} for {architecture} lacks the F flag (the interpreter "
        f"{entry.interpreter} is not in the image's root)"
    )
    return why, emulation_fix(architecture, entry)


def foreign_error(what: str, platform: str, why: str, fix: list[str]) -> RunError:
    """One line naming what cannot run, why, and the fix (every step of it)."""
    steps = fix or [INSTALL]
    return RunError(
        f"{what}: {platform} binaries cannot run here: {why}; fix: {', then '.join(steps)}",
        hints=["`pybuild doctor` shows which platforms run here"],
    )


def require_emulation(os_name: str, architecture: str, variant: str | None, what: str) -> None:
    """Raise a RunError naming the fix when ``architecture``'s binaries cannot run in a container."""
    problem = emulation_problem(architecture)
    if problem is not None:
        why, fix = problem
        raise foreign_error(what, platform_text(os_name, architecture, variant), why, fix)


def exec_format_error(what: str, program: str, architecture: str | None) -> RunError:
    """An ENOEXEC from exec, said with its cause and fix: never "exec format error" alone."""
    if architecture is not None and not native(architecture):
        problem = emulation_problem(architecture)
        why, fix = problem or (
            "the kernel refused it (exec format error) though binfmt_misc has an emulator for it",
            [INSTALL],
        )
        return foreign_error(f"{what} {program}", f"linux/{architecture}", why, fix)
    if architecture is not None:
        return RunError(
            f"{what} {program}: exec format error: the kernel refused this linux/{architecture} binary"
        )
    return RunError(
        f"{what} {program}: exec format error: not a program this machine can run "
        f"(a script without a #! line, or a binary of a platform pybuild knows no emulator for)"
    )


ENOEXEC_WHY = "exec format error"


@functools.cache
def _probed(architecture: str) -> str | None:
    return probe(architecture)


def probe(architecture: str, near: Path | None = None) -> str | None:
    """Run a tiny ``architecture`` program here; None when it ran, else why not (starting with
    ENOEXEC_WHY when the kernel found nothing to run it with)."""
    where = near if near is not None and near.is_dir() and os.access(near, os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="pybuild-emulation-", dir=where)
    path = os.path.join(folder, f"probe-{architecture}")
    try:
        with open(path, "wb") as f:
            f.write(elf_image(architecture))
        os.chmod(path, 0o755)
        try:
            proc = subprocess.run([path], capture_output=True, timeout=30, check=False)
        except OSError as exc:
            if exc.errno == errno.ENOEXEC:
                return f"{ENOEXEC_WHY}: no emulator ran it"
            return f"exec failed: {exc.strerror or exc}"
        except subprocess.TimeoutExpired:
            return "the probe did not finish in 30 s"
        if proc.returncode != PROBE_STATUS:
            return f"the probe exited with {proc.returncode}, not {PROBE_STATUS}"
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


@dataclass(frozen=True)
class Support:
    """Whether a platform's RUN steps work here, and how, for the doctor."""

    platform: str
    ok: bool
    detail: str
    fix: list[str]


def platform_support(platform: str, near: Path | None = None) -> Support:
    architecture = platform.split("/")[1]
    if native(architecture):
        why = probe(architecture, near)
        return Support(platform, why is None, "native" if why is None else f"native, but {why}", [])
    problem = emulation_problem(architecture)
    if problem is not None:
        return Support(platform, False, problem[0], problem[1])
    why = probe(architecture, near)
    hidden, entries = binfmt_state()
    head = elf_image(architecture)[:64]
    entry = next((e for e in entries if e.enabled and "F" in e.flags and e.matches(head)), None)
    if entry is None:  # binfmt_misc is not readable here: the probe alone tells
        if why is not None:
            return Support(
                platform, False, f"{hidden}; the probe: {why}", emulation_fix(architecture, why=hidden or "")
            )
        return Support(
            platform, True, f"emulated ({hidden}: an emulator registered outside ran the probe)", []
        )
    if why is not None:
        return Support(platform, False, f"{entry.name} is registered, but {why}", [INSTALL])
    return Support(platform, True, f"emulated: {entry.name} ({entry.interpreter}, flags {entry.flags})", [])
