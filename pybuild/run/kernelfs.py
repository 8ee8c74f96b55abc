"""/proc and /sys in a container, with the fallbacks buildah's chroot isolation has.

A fresh proc needs a pid namespace owned by pybuild's user namespace and an outer /proc with nothing
mounted over parts of it (runc and Docker mask /proc/kcore, /proc/sys... by default, and the kernel
then refuses a new proc as "too revealing"): where it is refused, the outer /proc is bound,
recursively and read-only. sysfs needs a network namespace owned by pybuild's user namespace:
where it is refused, the outer /sys is bound the same way, or, where even that fails, left out.

Each function returns a note saying which fallback it took (None when the first choice worked):
the caller reports each once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform

from .rootfs import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    checked,
    mount,
)
from .userns import libc

AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 1
SYS_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442}.get(platform.machine(), 442)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def make_readonly(target: str) -> None:
    """Make the mount at ``target`` and every mount below it read-only (mount_setattr, Linux 5.12;
    before that, the top mount only)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    ret = libc().syscall(
        SYS_MOUNT_SETATTR,
        ctypes.c_int(AT_FDCWD),
        target.encode(),
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if ret != 0:
        mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


def bind_readonly(source: str, target: str) -> None:
    """Bind ``source`` with everything mounted below it at ``target``, read-only."""
    mount(source, target, None, MS_BIND | MS_REC)
    try:
        make_readonly(target)
    except OSError:
        with contextlib.suppress(OSError):
            checked(libc().umount2(target.encode(), MNT_DETACH), f"umount {target}")
        raise


def mount_proc(target: str) -> str | None:
    """A fresh proc at ``target`` (the caller's pid namespace), else the outer /proc bound read-only."""
    try:
        mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        return None
    except OSError as exc:
        first = os.strerror(exc.errno) if exc.errno else str(exc)
    try:
        bind_readonly("/proc", target)
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot mount /proc ({first}) nor bind the outer /proc ({exc.strerror or exc})"
        ) from None
    return f"a fresh /proc was refused ({first}): the outer /proc is bound read-only instead"


def mount_sys(target: str) -> str | None:
    """A read-only sysfs at ``target``, else the outer /sys bound read-only, else nothing."""
    try:
        mount("sysfs", target, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
        return None
    except OSError as exc:
        first = os.strerror(exc.errno) if exc.errno else str(exc)
    try:
        bind_readonly("/sys", target)
        return f"sysfs was refused ({first}): the outer /sys is bound read-only instead"
    except OSError as exc:
        return f"sysfs was refused ({first}) and the outer /sys cannot be bound ({exc.strerror}): no /sys"
