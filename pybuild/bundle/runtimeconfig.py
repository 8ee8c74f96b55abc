"""Image config -> OCI runtime config.json (image-spec conversion.md, runtime-spec config.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import BundleError, RunError
from ..layout import ImageConfig
from ..run.users import ExecUser, lookup_user
from .process import image_process

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def resolve_user(rootfs: Path, spec: str) -> ExecUser:
    """``user``, ``uid``, ``user:group``, ``uid:gid`` (any mix), through the rootfs's passwd and group,
    with runc's rules (``run.users.lookup_user``)."""
    try:
        return lookup_user(rootfs, spec)
    except RunError as exc:
        raise BundleError(str(exc)) from None


def _annotations(config: ImageConfig) -> dict[str, str]:
    runtime = config.runtime
    out: dict[str, str] = dict(runtime.get("Labels") or {})
    out["org.opencontainers.image.os"] = config.os
    out["org.opencontainers.image.architecture"] = config.architecture
    variant = config.platform.variant
    if variant:
        out["org.opencontainers.image.variant"] = variant
    if config.author:
        out["org.opencontainers.image.author"] = config.author
    if config.created:
        out["org.opencontainers.image.created"] = config.created
    if runtime.get("StopSignal"):
        out["org.opencontainers.image.stopSignal"] = runtime["StopSignal"]
    if runtime.get("ExposedPorts"):
        out["org.opencontainers.image.exposedPorts"] = ",".join(sorted(runtime["ExposedPorts"]))
    return out


def make_runtime_config(
    config: ImageConfig,
    rootfs: Path,
    *,
    rootless: bool,
    host_uid: int | None = None,
    host_gid: int | None = None,
    extra_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The config.json for a bundle whose rootfs is ``rootfs``.

    Rootless bundles get a user namespace mapping container root to the calling user (as
    ``runc spec --rootless`` does), share the host network and bind /sys.
    """
    process = image_process(config.runtime)
    args = list(process.args) or ["/bin/sh"]
    user = resolve_user(rootfs, process.user)
    process_user: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        process_user["additionalGids"] = user.additional_gids
    caps = list(DEFAULT_CAPS)
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
            + ([] if rootless else ["gid=5"]),
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
    ]
    if rootless:
        mounts.append(
            {
                "destination": "/sys",
                "type": "none",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            }
        )
    else:
        mounts.append(
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            }
        )
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    }
    if rootless:
        namespaces.append({"type": "user"})
        uid = os.getuid() if host_uid is None else host_uid
        gid = os.getgid() if host_gid is None else host_gid
        linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
    else:
        namespaces.append({"type": "network"})
    annotations = _annotations(config)
    annotations.update(extra_annotations or {})
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": process_user,
            "args": args,
            "env": list(process.env),
            "cwd": process.cwd,
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "pybuild",
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }
