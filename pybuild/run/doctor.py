"""`pybuild doctor`: which mode builds will use here, and for everything that fails, the smallest
change to this machine or the container it runs in that fixes it.

It probes the sequence a RUN needs, for real, in that order: a user namespace (where CAP_SYS_ADMIN
is missing: by capability, for root as for anyone) and its id map, a mount namespace, native overlay
and fuse-overlayfs next to the store, the copy fallback, /proc and /sys in a new pid namespace, and
in-place mode; then, for each common platform, whether its RUN steps run here (natively, or under
the qemu-user emulator binfmt_misc has for it: see ``emulation``). A check that fails and leaves no
mode to build with is a problem (exit status 1); one that only rules out a faster mode, takes a
fallback, or leaves a platform without emulation, is a warning.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import PybuildError
from .cleanup import force_remove
from .emulation import COMMON, platform_support
from .inplace import problem as inplace_problem
from .kernelfs import mount_proc, mount_sys
from .modes import ENV, try_mode
from .privilege import (
    CAP_SETFCAP,
    CAP_SETGID,
    CAP_SETUID,
    CAP_SYS_ADMIN,
    FILE_CAPS,
    SECCOMP_FIX,
    can_mount,
    has_caps,
    helper_problem,
    in_container,
    missing_caps,
    namespace_fix,
    seccomp_filtered,
)
from .rootfs import CLONE_NEWNS, MS_PRIVATE, MS_REC, checked, mount
from .userns import call_in_child, libc, map_kind, result_payload, userns_problem

CLONE_NEWPID = 0x20000000
PROC_FIX = (
    "unmask /proc for a fresh one: Docker/podman --security-opt systempaths=unconfined "
    "(podman: unmask=ALL), Kubernetes securityContext.procMount: Unmasked"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _map_fix(why: str) -> str:
    """The smallest change that gives a full id map, for ``map_kind``'s reason ``why``."""
    if "CAP_SETFCAP" in why:
        return (
            "add CAP_SETFCAP to the container's capabilities (with CAP_SETUID and CAP_SETGID: a full id map)"
        )
    if "not installed" in why:
        return "apt-get install uidmap, with file capabilities on newuidmap/newgidmap"
    if "neither setuid" in why or "is setuid" in why:
        uidmap = shutil.which("newuidmap") or "/usr/bin/newuidmap"
        gidmap = shutil.which("newgidmap") or "/usr/bin/newgidmap"
        return f"setcap cap_setuid+ep {uidmap}; setcap cap_setgid+ep {gidmap}"
    if "nosuid" in why:
        return "install newuidmap/newgidmap on a filesystem mounted without nosuid"
    if "no_new_privs" in why:
        return (
            "allow privilege escalation: Kubernetes allowPrivilegeEscalation: true, "
            "no --security-opt no-new-privileges"
        )
    if "bounding set" in why:
        return "add CAP_SETUID and CAP_SETGID to the container's capabilities (Docker has them by default)"
    if "CAP_SETFCAP" in why:
        return (
            "add CAP_SETFCAP (with CAP_SETUID and CAP_SETGID: a full id map) to the container's capabilities"
        )
    user = why.rpartition(" for ")[2] if "ranges for" in why else "$USER"
    return f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"


def _probe_namespaces(scratch: str) -> dict[str, str | None]:
    """In a child (root in a new user namespace where pybuild cannot mount): a private mount
    namespace, then /proc and /sys in a new pid namespace. Each key: None (worked), a note (a
    fallback was taken: "note: ..."), or the error."""

    def body() -> dict[str, str | None]:
        out: dict[str, str | None] = {"mount namespace": None, "/proc": "not tried", "/sys": "not tried"}
        try:
            checked(libc().unshare(CLONE_NEWNS), "unshare mount namespace")
            mount("none", "/", None, MS_REC | MS_PRIVATE)
        except OSError as exc:
            out["mount namespace"] = os.strerror(exc.errno) if exc.errno else str(exc)
            return out
        try:
            checked(libc().unshare(CLONE_NEWPID), "unshare pid namespace")
        except OSError as exc:
            out["/proc"] = f"cannot make a pid namespace: {os.strerror(exc.errno or 1)}"
            return out
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pid 1 of the new namespace
            os.close(r)
            results = []
            for name, fn in (("proc", mount_proc), ("sys", mount_sys)):
                target = os.path.join(scratch, name)
                try:
                    note = fn(target)
                    results.append("ok" if note is None else f"note: {note}")
                except OSError as exc:
                    results.append(str(exc.strerror or exc))
            os.write(w, "\n".join(results).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            lines = f.read().split("\n")
        os.waitpid(pid, 0)
        for key, line in zip(("/proc", "/sys"), lines, strict=False):
            out[key] = None if line == "ok" else line
        return out

    result: dict[str, str | None] = call_in_child(lambda: result_payload(body), new_userns=not can_mount())
    return result


def _userns_checks() -> tuple[list[Check], bool]:
    """The user-namespace checks, and whether pybuild can go on to mount (a namespace or none needed)."""
    if can_mount():
        return [Check("user namespace", True, "not needed: CAP_SYS_ADMIN here", required=False)], True
    checks = []
    kind, why = map_kind()
    if kind == "none":
        checks.append(Check("user namespace id map", False, why, _map_fix(why)))
        return checks, False
    problem = userns_problem()
    if problem is not None:
        checks.append(Check("user namespace", False, problem, namespace_fix()))
        return checks, False
    if kind == "single":
        checks.append(
            Check(
                "user namespace id map",
                False,
                f"single id (only root exists in containers: files owned by others cannot be made): {why}",
                _map_fix(why),
                required=False,
            )
        )
    else:
        checks.append(Check("user namespace id map", True, why))
    return checks, True


def _inplace_check() -> Check:
    why = inplace_problem()
    if why is not None:
        fix = "use the pybuild image (pybuild on its own tree in /pybuild: contrib/bundle.py)"
        return Check("in-place mode", False, why, fix if "tree of its own" in why else "", required=False)
    missing = missing_caps(*FILE_CAPS)
    detail = f"available with --isolation inplace: root in a container ({in_container()})"
    if missing:
        detail += f"; without {', '.join(missing)} files owned by others cannot be made"
    return Check("in-place mode", True, detail, required=False)


def doctor(near: Path | None = None, isolation: str | None = None) -> list[Check]:
    """The checks, in the order a RUN needs them; the last one names the mode builds will use
    (``isolation``: the one asked for, else $PYBUILD_RUN_MODE, else the first that works)."""
    where = Path(near) if near is not None else Path(tempfile.gettempdir())
    while not where.is_dir() and where != where.parent:  # the store may not exist yet
        where = where.parent
    if not os.access(where, os.W_OK | os.X_OK):
        where = Path(tempfile.gettempdir())
    uid = os.geteuid()
    admin = "CAP_SYS_ADMIN" if has_caps(CAP_SYS_ADMIN) else "no CAP_SYS_ADMIN"
    mapping = "CAP_SETUID/SETGID/SETFCAP" if has_caps(CAP_SETUID, CAP_SETGID, CAP_SETFCAP) else "no full set"
    checks = [Check("privilege", True, f"uid {uid}, {admin}, {mapping} to map ids", required=False)]
    full = has_caps(CAP_SETUID, CAP_SETGID, CAP_SETFCAP)
    for tool in ("newuidmap", "newgidmap"):
        problem = helper_problem(tool)
        if full or can_mount():
            checks.append(Check(tool, True, f"not needed here ({problem or 'usable'})", required=False))
        else:
            checks.append(Check(tool, problem is None, problem or "usable", _map_fix(problem or ""), False))
    ns_checks, can_go_on = _userns_checks()
    checks += ns_checks
    works: dict[str, str | None] = {}
    if can_go_on:
        scratch = ""
        try:
            scratch = tempfile.mkdtemp(prefix="pybuild-doctor-", dir=where)
            for d in ("proc", "sys"):
                os.mkdir(os.path.join(scratch, d))
            probed = _probe_namespaces(scratch)
        except (PybuildError, OSError) as exc:
            probed = {"mount namespace": str(exc)}
        finally:
            if scratch:
                with contextlib.suppress(OSError):
                    force_remove(Path(scratch))
        mount_ns = probed.get("mount namespace")
        ns_fix = SECCOMP_FIX if seccomp_filtered() else "give the container CAP_SYS_ADMIN"
        checks.append(
            Check("mount namespace", mount_ns is None, mount_ns or "ok", "" if mount_ns is None else ns_fix)
        )
        if mount_ns is None:
            for mode in ("native", "fuse", "copy"):
                works[mode] = try_mode(mode, where)
                checks.append(_mode_check(mode, works[mode], where))
            for key in ("/proc", "/sys"):
                note = probed.get(key)
                if note is None:
                    checks.append(Check(key, True, "mounted fresh", required=False))
                elif note.startswith("note: "):
                    fix = PROC_FIX if key == "/proc" else "none needed (a network namespace of pybuild's own)"
                    checks.append(Check(key, True, note[6:], fix, required=False))
                else:
                    checks.append(Check(key, False, note, PROC_FIX if key == "/proc" else ""))
                    if key == "/proc":
                        works = dict.fromkeys(works, f"/proc: {note}")
    inplace = _inplace_check()
    checks.append(inplace)
    checks += emulation_checks(where)
    verdict = _mode_line(works, inplace, isolation)
    if verdict.ok:  # what failed only ruled out other modes: warnings
        checks = [Check(c.name, c.ok, c.detail, c.fix, required=False) for c in checks]
    return [*checks, verdict]


def emulation_checks(where: Path) -> list[Check]:
    """Per common platform: whether its RUN steps run here (natively, or emulated through a
    binfmt_misc entry with the F flag, probed with a tiny program of that platform)."""
    out = []
    for platform in COMMON:
        found = platform_support(platform, where)
        out.append(Check(f"emulation {platform}", found.ok, found.detail, ", then ".join(found.fix), False))
    return out


def _mode_check(mode: str, why: str | None, where: Path) -> Check:
    name = {"native": "native overlay", "fuse": "fuse-overlayfs", "copy": "copy mode"}[mode]
    if why is None:
        return Check(name, True, f"works next to {where}", required=False)
    if mode == "native":
        fstype = _fstype(where)
        fix = (
            f"put the store on a volume ({where} is on {fstype}, and overlay cannot use that as upperdir)"
            if fstype in ("overlay", "fuse.fuse-overlayfs", "tmpfs")
            else "use Linux >= 5.11 (rootless overlay)"
        )
    elif mode == "fuse":
        fix = (
            "give the container /dev/fuse (docker run --device /dev/fuse; Kubernetes: a device plugin "
            "or a privileged fuse device)"
            if "/dev/fuse" in why
            else "apt-get install fuse-overlayfs"
        )
    else:
        fix = ""
    return Check(name, False, why, fix, required=False)


def _fstype(path: Path) -> str:
    best, fstype = "", "?"
    real = os.path.realpath(path)
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        fields = line.split()
        point = fields[4]
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype = point, fields[fields.index("-") + 1]
    return fstype


def _mode_line(works: dict[str, str | None], inplace: Check, isolation: str | None) -> Check:
    chosen = isolation or os.environ.get(ENV) or None
    chosen = None if chosen == "auto" else chosen
    ruled_out = "; ".join(f"{m}: {why}" for m, why in works.items() if why is not None)
    if chosen is not None:
        ok = inplace.ok if chosen == "inplace" else works.get(chosen, "not probed") is None
        why = inplace.detail if chosen == "inplace" else works.get(chosen) or "works"
        return Check(
            "build and run mode", ok, f"{chosen} (asked for{' by ' + ENV if not isolation else ''}): {why}"
        )
    for mode in ("native", "fuse", "copy"):
        if works.get(mode, "no") is None:
            slow = " (a copied rootfs: every step copies the image; slow)" if mode == "copy" else ""
            return Check(
                "build and run mode",
                True,
                f"{mode}{slow}" + (f"; ruled out: {ruled_out}" if ruled_out else ""),
            )
    if inplace.ok:
        return Check(
            "build and run mode",
            False,
            "none of native, fuse, copy works here" + (f" ({ruled_out})" if ruled_out else ""),
            "as root in a throwaway container: pybuild build --isolation inplace (the image replaces its /)",
        )
    return Check("build and run mode", False, "no mode works here" + (f" ({ruled_out})" if ruled_out else ""))
