"""Running one process in a rootless container over an overlay of layer directories.

The process tree: pybuild forks a *keeper* that enters a new user namespace (unprivileged; pybuild
maps it with newuidmap/newgidmap) and a private mount namespace, and mounts the rootfs (a
``rootfs.Rootfs``: kernel overlay, fuse-overlayfs or a copied tree). It then enters new pid, uts and
ipc namespaces (and net for ``network="none"``) and forks the container's pid 1. Pid 1 takes a
mount namespace of its own, mounts /proc and /sys (kernelfs.py: fresh, or bound from outside where
refused, each fallback reported once), a minimal /dev, bind-mounts generated /etc/hosts,
/etc/resolv.conf and /etc/hostname, pivots into the merged tree, drops to the user and execs.
The user namespace is made when pybuild lacks CAP_SYS_ADMIN where it runs (privilege.py), for root
as for anyone. ``mode="inplace"`` runs without any namespace, in ``/`` itself (inplace.py).
When pid 1 exits, the kernel kills whatever it left behind in the pid namespace, and the keeper
unmounts the rootfs and leaves the upperdir in overlay format (``Rootfs.finish``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import shutil
import signal
import socket
import stat
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..diff.overlay import LowerStack
from ..errors import RunError, warn
from .cleanup import force_remove
from .emulation import elf_arch, exec_format_error
from .kernelfs import mount_proc, mount_sys
from .modes import overlay_mode
from .mounts import FileMount, MountedViews, TmpfsMount, ViewMount, mount_files
from .paths import resolve_in_root
from .privilege import can_mount
from .rootfs import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    Rootfs,
    checked,
    mount,
)
from .userns import current_id_map, libc, namespace_hints, run_in_userns, write_id_maps
from .users import become, lookup_user

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine(), 155)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
CREATED = "created"  # in the run's temp dir: mount points made where a symlink pointed
NOTES = "notes"  # in the run's temp dir: the fallbacks pid 1 took, one a line
_noted: set[str] = set()
ENOEXEC_TAG = "ENOEXEC\t"  # pid 1's report of an exec the kernel refused as a format it cannot run


GENERATED = ("etc/hosts", "etc/resolv.conf", "etc/hostname")


@dataclass
class RunSpec:
    lowerdirs: list[Path]
    upperdir: Path
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = ""
    network: str = "host"
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    views: list[ViewMount] = field(default_factory=list)  # other stages or images (mounts.py)
    files: list[FileMount] = field(default_factory=list)  # secrets, held in memory (mounts.py)
    tmpfs: list[TmpfsMount] = field(default_factory=list)  # RUN --mount=type=tmpfs (mounts.py)
    hostname: str = "pybuild"
    mode: str | None = None  # overlay mode: native, fuse, copy; None: $PYBUILD_RUN_MODE or probed


@dataclass
class RunResult:
    exit_status: int
    mode: str = "native"


@contextlib.contextmanager
def _times_kept(merged: str, rel: str) -> Iterator[None]:
    """Around making ``rel`` (and any missing parents) in the merged root, as a mount point: the
    nearest directory that exists gets its times back afterwards, so the plumbing leaves no mtime
    in the upperdir (the cleanup removes what was made, and keeps the times a command gave)."""
    parent = os.path.dirname(rel.strip("/"))
    while parent and not os.path.lexists(f"{merged}/{parent}"):
        parent = os.path.dirname(parent)
    path = f"{merged}/{parent}" if parent else merged
    st = os.lstat(path)
    yield
    if stat.S_ISDIR(st.st_mode):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _pid1(
    spec: RunSpec,
    merged: str,
    generated: str,
    err_fd: int,
    views: list[tuple[str, str, bool]],
) -> None:
    """The container's pid 1: /proc, /dev, /etc and volume mounts over the mounted rootfs (``views``:
    the binds of the views the keeper mounted), pivot_root, user, exec. Never returns."""
    try:
        # a mount namespace of its own, so that pivot_root moves only the container's root, not
        # the keeper's (which writes the upperdir afterwards)
        checked(libc().unshare(CLONE_NEWNS), "unshare mount namespace")
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        for d in ("proc", "dev", "etc", "sys"):
            if not os.path.lexists(f"{merged}/{d}"):
                with _times_kept(merged, d):
                    os.makedirs(f"{merged}/{d}")
        notes = [mount_proc(f"{merged}/proc")]
        mount("tmpfs", f"{merged}/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k")
        for dev in DEVICES:
            target = f"{merged}/dev/{dev}"
            open(target, "w").close()
            mount(f"/dev/{dev}", target, None, MS_BIND)
        os.makedirs(f"{merged}/dev/shm")
        mount("shm", f"{merged}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
        os.makedirs(f"{merged}/dev/pts")
        try:
            mount(
                "devpts",
                f"{merged}/dev/pts",
                "devpts",
                MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=620",
            )
            os.symlink("pts/ptmx", f"{merged}/dev/ptmx")
        except OSError:
            pass
        for name in ("fd", "stdin", "stdout", "stderr"):
            target = {
                "fd": "/proc/self/fd",
                "stdin": "/proc/self/fd/0",
                "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2",
            }[name]
            os.symlink(target, f"{merged}/dev/{name}")
        created: list[str] = []
        for rel in GENERATED:
            # a symlink (/etc/resolv.conf -> ../run/...) stays: the file goes where it points
            inside = resolve_in_root(merged, rel)
            if inside is None or inside.split("/")[0] in ("proc", "sys", "dev"):
                continue  # a loop, or a link into the kernel's files: the image keeps what it has
            target = f"{merged}/{inside}"
            if not os.path.lexists(target):
                with _times_kept(merged, inside):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    open(target, "w").close()
                if inside != rel:  # (the cleanup always looks at GENERATED itself)
                    created.append(inside)
            elif not stat.S_ISREG(os.lstat(target).st_mode):
                continue
            mount(f"{generated}/{os.path.basename(rel)}", target, None, MS_BIND)
        files = mount_files(spec.files, os.path.join(os.path.dirname(generated), "files"))
        planned: list[tuple[str | TmpfsMount, str, bool]] = [*spec.mounts, *views, *files]
        planned += [(t, t.target, False) for t in spec.tmpfs]
        # parents before what is mounted inside them (as Docker orders mounts), else in given order
        planned.sort(key=lambda m: len([p for p in m[1].split("/") if p]))
        for src, dst, readonly in planned:
            # resolved inside the root: a symlink in the image (/foo -> /etc) must not lead the
            # mount point, or the directories made for it, out onto the host
            inside = resolve_in_root(merged, dst)
            if inside is None:
                raise RunError(f"mount target {dst}: too many levels of symbolic links")
            target = f"{merged}/{inside}"
            if not os.path.exists(target):
                with _times_kept(merged, inside):
                    if isinstance(src, TmpfsMount) or os.path.isdir(src):
                        os.makedirs(target, exist_ok=True)
                    else:
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        open(target, "w").close()
            if inside != dst.strip("/"):
                created.append(inside)
            if isinstance(src, TmpfsMount):
                mount("tmpfs", target, "tmpfs", MS_NOSUID, src.options)  # as BuildKit mounts it
                continue
            mount(src, target, None, MS_BIND | MS_REC)
            if readonly:
                mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        if created:  # for the cleanup afterwards, beside the generated files' directory
            with open(os.path.join(os.path.dirname(generated), CREATED), "w") as out:
                out.write("\n".join(created))
        notes.append(mount_sys(f"{merged}/sys"))
        try:
            socket.sethostname(spec.hostname)
        except OSError as exc:  # a seccomp profile allowing it only with CAP_SYS_ADMIN (podman's)
            notes.append(f"the hostname cannot be set ({exc.strerror}): the container's own is kept")
        if any(notes):  # for the parent to report, once each
            with open(os.path.join(os.path.dirname(generated), NOTES), "w") as out:
                out.write("\n".join(n for n in notes if n))
        os.chdir(merged)
        checked(libc().syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
        checked(libc().umount2(b".", MNT_DETACH), "umount old root")
        os.chdir("/")
        # no descriptor from outside may reach the process, nor serve as its cwd (CVE-2024-21626)
        os.closerange(3, err_fd)
        os.closerange(err_fd + 1, 65536)
        os.set_inheritable(err_fd, False)
        user = lookup_user("/", spec.user)  # after pivot_root: the container's files
        cwd = spec.cwd or "/"
        if not cwd.startswith("/"):
            cwd = "/" + cwd
        os.makedirs(cwd, exist_ok=True)
        become(user)
        libc().prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        os.chdir(cwd)
        if not os.getcwd().startswith("/"):
            raise RunError(f"working directory {spec.cwd!r} is outside the container")
        os.umask(0o022)
        env = dict(e.split("=", 1) for e in spec.env if "=" in e)
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.setdefault("HOSTNAME", spec.hostname)
        argv0 = spec.args[0]
        path = shutil.which(argv0, path=env["PATH"]) if "/" not in argv0 else argv0
        if path is None:
            raise RunError(f"{argv0}: command not found in the container")
        # pid 1 stays a minimal init: the command is its child (so signals work on it as usual),
        # orphans are reaped, and pid 1 exits with the command's status
        command = os.fork()
        if command == 0:
            # Python starts with SIGPIPE and SIGXFSZ ignored, and ignored signals survive exec:
            # a command must get the defaults, or `yes | head` spins on EPIPE forever
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            try:
                os.execve(path, spec.args, env)
            except OSError as exc:
                if exc.errno == errno.ENOEXEC:  # the parent names the platform and the fix
                    os.write(err_fd, f"{ENOEXEC_TAG}{argv0}\t{_elf_arch(path) or ''}".encode())
                else:
                    os.write(err_fd, f"{argv0}: {exc.strerror or exc}".encode())
            os._exit(127)
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == command:
                code = os.waitstatus_to_exitcode(status)
                os._exit(128 - code if code < 0 else code)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, (RunError, OSError)) else traceback.format_exc()
        try:
            os.write(err_fd, message.encode()[:4000])
        finally:
            os._exit(127)


def _elf_arch(path: str) -> str | None:
    """The architecture of the ELF binary at ``path`` (None: not ELF, unknown, unreadable)."""
    try:
        with open(path, "rb") as f:
            return elf_arch(f.read(64))
    except OSError:
        return None


def _keeper(
    spec: RunSpec,
    tmp: Path,
    mode: str,
    rootless: bool,
    sync: tuple[int, int, int, int],
    err_w: int,
) -> None:
    """Enters the namespaces, mounts the rootfs, forks pid 1, waits, writes the upperdir in overlay
    format and exits with pid 1's status. Never returns."""
    ready_w, go_r, pid_w, _ = sync
    code = 126
    rootfs: Rootfs | None = None
    views: MountedViews | None = None
    try:
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if rootless:
            checked(libc().unshare(CLONE_NEWUSER), "unshare user namespace")
            os.write(ready_w, b"1")
            if os.read(go_r, 1) != b"1":
                os._exit(126)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        checked(libc().unshare(CLONE_NEWNS), "unshare mount namespace")
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        rootfs = Rootfs(spec.lowerdirs, spec.upperdir, tmp, rootless, mode)
        merged = str(rootfs.mount())
        views = MountedViews(spec.views, tmp, rootless, mode)
        binds = views.mount()
        flags = CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC
        if spec.network == "none":
            flags |= CLONE_NEWNET
        checked(libc().unshare(flags), "unshare namespaces")
        pid = os.fork()
        if pid == 0:
            libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if spec.network == "none":
                os.system("ip link set lo up >/dev/null 2>&1")
            _pid1(spec, merged, str(tmp / "etc"), err_w, binds)
        os.write(pid_w, str(pid).encode())
        os.close(pid_w)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        views.finish()
        rootfs.finish()
        for child in tmp.iterdir():  # a copied rootfs may be owned by subordinate ids
            if child.name not in ("merged", CREATED, NOTES):  # never walk a mount point (the parent does)
                force_remove(child)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, (RunError, OSError)) else traceback.format_exc()
        with contextlib.suppress(OSError):
            os.write(err_w, message.encode()[:4000])
        code = 126
        if views is not None:
            with contextlib.suppress(BaseException):
                views.finish()
        if rootfs is not None:
            with contextlib.suppress(BaseException):
                rootfs.finish()
    os._exit(code)


def _generated_files(folder: Path, hostname: str) -> None:
    folder.mkdir()
    (folder / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{hostname}\n"
    )
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    (folder / "resolv.conf").write_text(resolv)
    (folder / "hostname").write_text(hostname + "\n")


def _clean_upperdir(upper: Path, lowers: list[Path], targets: Sequence[str] = ()) -> None:
    """Remove what only the container's plumbing put in the upperdir: mount points for /proc, /dev,
    /sys, the generated /etc files and the bind mounts (``targets``), with the empty directories
    made to hold them, where the image did not have them. What the image has is what overlay shows
    of the layers below (``LowerStack``): a name a whiteout deleted, or below an opaque directory, is
    not there, even where a lower layer still holds it."""
    below = LowerStack(lowers)

    # the directories they are removed from keep the times they had: the lower's (pid 1 put them
    # back after making the mount points) unless the command itself changed the directory
    times: dict[str, os.stat_result] = {}
    for start in (*GENERATED, "proc", "dev", "sys", "etc", *(t.strip("/") for t in targets)):
        rel = start
        while rel and below.entry(rel) is None:
            path = upper / rel
            parent = os.path.dirname(rel)
            try:
                st = os.lstat(path)
                empty_dir = stat.S_ISDIR(st.st_mode) and not any(path.iterdir())
                if not empty_dir and not (stat.S_ISREG(st.st_mode) and st.st_size == 0 and rel == start):
                    break
                if parent and parent not in times:
                    times[parent] = os.lstat(upper / parent)
                if empty_dir:
                    path.rmdir()
                else:
                    path.unlink()
            except OSError:
                break
            rel = parent
    for rel, st in times.items():
        if os.path.isdir(upper / rel):
            os.utime(upper / rel, ns=(st.st_atime_ns, st.st_mtime_ns))


def run_container(spec: RunSpec) -> RunResult:
    """Run ``spec.args`` in a container; the changes land in ``spec.upperdir``."""
    if spec.network not in ("host", "none"):
        raise RunError(f"unknown network mode {spec.network!r}: expected host or none")
    mode = overlay_mode(spec.mode, spec.upperdir.parent)
    if mode == "inplace":
        from .direct import run_inplace

        return RunResult(exit_status=run_inplace(spec), mode=mode)
    rootless = not can_mount()  # a user namespace: without CAP_SYS_ADMIN here, for root as for anyone
    maps = current_id_map() if rootless else None
    tmp = Path(tempfile.mkdtemp(prefix="pybuild-run-", dir=spec.upperdir.parent))
    _generated_files(tmp / "etc", spec.hostname)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid_r, pid_w = os.pipe()
    err_r, err_w = os.pipe()
    keeper = os.fork()
    if keeper == 0:
        for fd in (ready_r, go_w, pid_r, err_r):
            os.close(fd)
        _keeper(spec, tmp, mode, rootless, (ready_w, go_r, pid_w, 0), err_w)
    for fd in (ready_w, go_r, pid_w, err_w):
        os.close(fd)
    pid1 = 0
    interrupted: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        interrupted.append(signum)
        if pid1:
            os.kill(pid1, signal.SIGKILL)
        else:
            os.kill(keeper, signal.SIGKILL)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if maps is not None:
            if os.read(ready_r, 1) != b"1":
                os.waitpid(keeper, 0)
                why = os.read(err_r, 4000).decode(errors="replace").strip()
                raise RunError(
                    f"could not create a user namespace{': ' + why if why else ''}", hints=namespace_hints()
                )
            try:
                write_id_maps(keeper, *maps)
            except BaseException:
                os.kill(keeper, signal.SIGKILL)
                os.waitpid(keeper, 0)
                raise
            os.write(go_w, b"1")
        text = os.read(pid_r, 32)
        pid1 = int(text) if text.strip() else 0
        if interrupted and pid1:
            os.kill(pid1, signal.SIGKILL)
        while True:
            try:
                _, status = os.waitpid(keeper, 0)
                break
            except InterruptedError:
                continue
        error = b""
        while chunk := os.read(err_r, 65536):
            error += chunk
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for fd in (ready_r, go_w, pid_r, err_r):
            os.close(fd)
        created = notes = ""
        with contextlib.suppress(OSError):
            created = (tmp / CREATED).read_text()
        with contextlib.suppress(OSError):
            notes = (tmp / NOTES).read_text()
        force_remove(tmp)
    for note in notes.splitlines():
        if note not in _noted:
            _noted.add(note)
            warn(note)
    targets = [
        *(dst for _, dst, _ in spec.mounts),
        *(v.target for v in spec.views),
        *(f.target for f in spec.files),
        *(t.target for t in spec.tmpfs),
        *created.splitlines(),
    ]
    if targets:
        # mount points may sit in directories of subordinate ids: clean up as the container's root
        run_in_userns(lambda: _clean_upperdir(spec.upperdir, spec.lowerdirs, targets))
    else:
        _clean_upperdir(spec.upperdir, spec.lowerdirs, targets)
    code = os.waitstatus_to_exitcode(status)
    if interrupted:
        raise KeyboardInterrupt
    if error.startswith(ENOEXEC_TAG.encode()):
        program, _, arch = error.decode(errors="replace")[len(ENOEXEC_TAG) :].partition("\t")
        raise exec_format_error("cannot run", program, arch.strip() or None)
    if error:
        raise RunError(
            f"cannot run {spec.args[0]!r}: {error.decode(errors='replace').strip().splitlines()[-1]}"
        )
    return RunResult(exit_status=code if code >= 0 else 128 - code, mode=mode)
