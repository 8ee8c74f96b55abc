"""What this process may do where it runs: its capabilities in its own user namespace, whether the
uid-map helpers can work, and whether it runs inside a container.

pybuild decides by capability, never by uid: root in a CI job container without CAP_SYS_ADMIN
cannot mount, so it needs a user namespace as much as an unprivileged user does.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_FOWNER = 3
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SYS_CHROOT = 18
CAP_SYS_ADMIN = 21
CAP_MKNOD = 27
CAP_SETFCAP = 31
CAP_NAMES = {
    CAP_CHOWN: "CAP_CHOWN",
    CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE",
    CAP_FOWNER: "CAP_FOWNER",
    CAP_SETGID: "CAP_SETGID",
    CAP_SETUID: "CAP_SETUID",
    CAP_SYS_CHROOT: "CAP_SYS_CHROOT",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
    CAP_MKNOD: "CAP_MKNOD",
    CAP_SETFCAP: "CAP_SETFCAP",
}
# what root needs to act on files of any owner without a user namespace (extracting layers, in-place)
FILE_CAPS = (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER)
# what writing a full id map for a child user namespace takes (mapping id 0 needs CAP_SETFCAP)
MAP_CAPS = (CAP_SETUID, CAP_SETGID, CAP_SETFCAP)
ST_NOSUID = 2
SECCOMP_FIX = (
    "a seccomp profile refuses it: run the container with podman's profile (containers-common's "
    "seccomp.json, which allows unshare and mount), or seccomp=unconfined"
)


@dataclass(frozen=True)
class Status:
    """The lines of /proc/self/status that matter here."""

    effective: int
    bounding: int
    no_new_privs: bool


def status() -> Status:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    except OSError:
        pass
    return Status(
        int(fields.get("CapEff", "0"), 16),
        int(fields.get("CapBnd", "0"), 16),
        fields.get("NoNewPrivs", "0") == "1",
    )


def has_caps(*caps: int, mask: int | None = None) -> bool:
    """Whether every one of ``caps`` is in ``mask`` (default: the effective set, in this user namespace)."""
    have = status().effective if mask is None else mask
    return all(have >> cap & 1 for cap in caps)


def missing_caps(*caps: int, mask: int | None = None) -> list[str]:
    have = status().effective if mask is None else mask
    return [CAP_NAMES.get(cap, f"capability {cap}") for cap in caps if not have >> cap & 1]


def can_mount() -> bool:
    """CAP_SYS_ADMIN in this user namespace: mount namespaces and mounts without a new user namespace."""
    return has_caps(CAP_SYS_ADMIN)


def acts_on_any_owner() -> bool:
    """Root with the capabilities to create, chown and change files of any owner here: file work
    (layer extraction, the changeset) runs in this process, as the container's root would."""
    return os.geteuid() == 0 and has_caps(*FILE_CAPS)


def namespace_ids(kind: str) -> list[tuple[int, int]]:
    """The (start, count) ranges of ids that exist in this user namespace (/proc/self/uid_map)."""
    out = []
    try:
        for line in Path(f"/proc/self/{kind}_map").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append((int(parts[0]), int(parts[2])))
    except (OSError, ValueError):
        pass
    return out or [(os.geteuid() if kind == "uid" else os.getegid(), 1)]


def helper_problem(tool: str) -> str | None:
    """Why ``tool`` (newuidmap or newgidmap) cannot write an id map here, or None when it can: it must
    exist, be setuid root or carry file capabilities, on a filesystem without nosuid, and the
    capability it needs must be in the bounding set with no_new_privs unset."""
    path = shutil.which(tool)
    if path is None:
        return f"{tool} is not installed"
    try:
        st = os.stat(path)
        caps = b""
        if "security.capability" in os.listxattr(path):
            caps = os.getxattr(path, "security.capability")
        nosuid = bool(os.statvfs(path).f_flag & ST_NOSUID)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    setuid = bool(st.st_mode & stat.S_ISUID) and st.st_uid == 0
    if not setuid and not caps:
        return f"{path} is neither setuid root nor has file capabilities"
    if nosuid:
        return f"{path} is on a filesystem mounted nosuid"
    info = status()
    if info.no_new_privs:
        return f"no_new_privs is set, so {path} gains no privilege"
    needed = CAP_SETUID if tool == "newuidmap" else CAP_SETGID
    if not has_caps(needed, mask=info.bounding):
        return f"{CAP_NAMES[needed]} is not in this process's bounding set, so {path} cannot use it"
    if not caps and not has_caps(CAP_SYS_ADMIN, mask=info.bounding):
        # shadow's setuid helpers drop to the caller's uid before writing the map, and the kernel
        # then refuses the write without CAP_SYS_ADMIN in the bounding set (tests/ci: Docker's set)
        return f"{path} is setuid, which writes no map without CAP_SYS_ADMIN in the bounding set"
    return None


@cache
def in_container() -> str | None:
    """What shows that this process runs in a container (a marker file, an environment variable, or a
    root filesystem that is not a whole device), or None where nothing does."""
    for marker in ("/.dockerenv", "/run/.containerenv"):
        if os.path.exists(marker):
            return marker
    for name in ("container", "KUBERNETES_SERVICE_HOST"):
        if os.environ.get(name):
            return f"${name}"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    root = [line.split() for line in lines if line.split()[4:5] == ["/"]]
    if root:  # the last mount on / is the one this process sees
        fields = root[-1]
        fstype = fields[fields.index("-") + 1] if "-" in fields[:-1] else ""
        if fstype in ("overlay", "fuse.fuse-overlayfs", "tmpfs"):
            return f"/ is {fstype}"
        if fields[3] != "/":
            return f"/ is a bind mount of {fields[3]}"
    if namespace_ids("uid") != [(0, 4294967295)]:
        return "a user namespace"
    return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def seccomp_filtered() -> bool:
    """Whether a seccomp filter applies to this process (a container's profile)."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1] == "2"
    return False


def namespace_fix() -> str:
    """The smallest change that lets pybuild make a user namespace here, where unshare is refused."""
    max_ns = _read("/proc/sys/user/max_user_namespaces")
    clone = _read("/proc/sys/kernel/unprivileged_userns_clone")
    if max_ns == "0" or clone == "0":
        return "sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1 (on the host)"
    if seccomp_filtered():
        return SECCOMP_FIX + ", or give the container CAP_SYS_ADMIN"
    return "give the container CAP_SYS_ADMIN, or allow unprivileged user namespaces on the host"
