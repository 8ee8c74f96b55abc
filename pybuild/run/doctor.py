"""`pybuild doctor`: can this user build rootless here? Each check says what is missing and the fix."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import PybuildError
from .userns import libc, run_in_userns, subordinate_range

CLONE_NEWNS = 0x00020000


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


def _user() -> tuple[str, int]:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        return str(uid), uid


def _probe_overlay() -> None:
    """Mount overlay (with userxattr when unprivileged) in a private mount namespace, then unmount."""
    import ctypes

    lib = libc()
    rootless = os.geteuid() != 0
    with tempfile.TemporaryDirectory(prefix="pybuild-probe-") as tmp:
        for d in ("l", "u", "w", "m"):
            os.mkdir(os.path.join(tmp, d))
        opts = f"lowerdir={tmp}/l,upperdir={tmp}/u,workdir={tmp}/w" + (",userxattr" if rootless else "")

        def mount() -> None:
            if lib.unshare(CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare mount namespace")
            lib.mount(b"none", b"/", None, ctypes.c_ulong((1 << 14) | (1 << 18)), None)
            if lib.mount(b"overlay", f"{tmp}/m".encode(), b"overlay", ctypes.c_ulong(0), opts.encode()) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            lib.umount2(f"{tmp}/m".encode(), 2)

        if rootless:
            run_in_userns(mount)
        else:
            pid = os.fork()
            if pid == 0:
                try:
                    mount()
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise OSError("overlay mount failed")


def doctor() -> list[Check]:
    checks: list[Check] = []
    name, uid = _user()
    rootless = uid != 0
    max_ns = _read("/proc/sys/user/max_user_namespaces")
    clone = _read("/proc/sys/kernel/unprivileged_userns_clone")
    ns_ok = (max_ns is None or max_ns != "0") and (clone is None or clone == "1")
    checks.append(
        Check(
            "user namespaces",
            ns_ok,
            f"user.max_user_namespaces={max_ns}"
            + (f", kernel.unprivileged_userns_clone={clone}" if clone else ""),
            "sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1",
        )
    )
    if rootless:
        for kind in ("uid", "gid"):
            found = subordinate_range(Path(f"/etc/sub{kind}"), name, uid)
            checks.append(
                Check(
                    f"/etc/sub{kind} range for {name}",
                    found is not None and found[1] >= 65536,
                    f"{found[0]}:{found[1]}" if found else "none",
                    f"usermod --add-sub{kind}s 100000-165535 {name}",
                )
            )
    for tool in ("newuidmap", "newgidmap"):
        path = shutil.which(tool)
        ok = path is not None
        detail = path or "missing"
        if path is not None:
            st = os.stat(path)
            caps = (
                os.getxattr(path, "security.capability")
                if "security.capability" in os.listxattr(path)
                else b""
            )
            ok = bool(st.st_mode & stat.S_ISUID) or bool(caps)
            detail += (
                " (setuid)"
                if st.st_mode & stat.S_ISUID
                else " (file capabilities)"
                if caps
                else " (no setuid bit)"
            )
        checks.append(Check(tool, ok, detail, "apt-get install uidmap", required=rootless))
    if rootless and ns_ok:
        try:
            run_in_userns(lambda: None)
            checks.append(Check("entering a user namespace", True, "ok"))
        except PybuildError as exc:
            checks.append(Check("entering a user namespace", False, str(exc), "; ".join(exc.hints)))
    try:
        _probe_overlay()
        checks.append(Check("native overlay" + (" (rootless, userxattr)" if rootless else ""), True, "ok"))
    except (OSError, PybuildError) as exc:
        checks.append(
            Check(
                "native overlay" + (" (rootless, userxattr)" if rootless else ""),
                False,
                str(exc),
                "use Linux >= 5.11 for rootless overlay, or install fuse-overlayfs",
                required=False,
            )
        )
    fuse = shutil.which("fuse-overlayfs")
    checks.append(
        Check(
            "fuse-overlayfs",
            fuse is not None,
            fuse or "missing",
            "apt-get install fuse-overlayfs",
            required=False,
        )
    )
    from .modes import ENV, overlay_mode

    try:
        mode = overlay_mode()
        forced = f" (forced by {ENV})" if os.environ.get(ENV) else ""
        slow = " (a copied rootfs: every step copies the image; slow)" if mode == "copy" else ""
        checks.append(Check("build and run mode", True, f"{mode}{forced}{slow}", required=False))
    except PybuildError as exc:
        checks.append(Check("build and run mode", False, str(exc), f"unset {ENV}", required=False))
    return checks
