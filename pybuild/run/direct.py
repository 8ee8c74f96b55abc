"""A RUN's command in in-place mode: a plain fork/exec in ``/`` (inplace.py holds the root), with no
namespace of any kind.

What needs a namespace is refused with one line naming the limitation: ``--network=none`` (a network
namespace), ``RUN --mount`` of other stages, caches, secrets and context directories (a mount
namespace). A file bound where the container's own kernel trees are (the script of a heredoc at
/dev/pipes/script) is copied there for the run instead: nothing there is ever part of a layer.

The command's process is the child of a small keeper that is a child subreaper: whatever the command
leaves running in the background is killed when it exits, as the end of a pid namespace would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import traceback
from pathlib import Path

from ..errors import RunError
from .container import RunSpec
from .inplace import KERNEL
from .rootfs import Rootfs
from .userns import libc
from .users import become, lookup_user

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NO_NAMESPACE = "in-place mode runs without namespaces"


def _refuse(spec: RunSpec) -> list[tuple[str, str]]:
    """The files to copy in for the run ((source, target)); raises where the spec needs a namespace."""
    if spec.network == "none":
        raise RunError(f"RUN --network=none needs a network namespace: {NO_NAMESPACE}")
    for view in spec.views:
        raise RunError(f"RUN --mount at {view.target} needs a mount namespace: {NO_NAMESPACE}")
    for file in spec.files:
        raise RunError(f"RUN --mount=type=secret at {file.target} needs a mount namespace: {NO_NAMESPACE}")
    for tmpfs in spec.tmpfs:
        raise RunError(f"RUN --mount=type=tmpfs at {tmpfs.target} needs a mount namespace: {NO_NAMESPACE}")
    copies = []
    for source, target, _readonly in spec.mounts:
        top = target.strip("/").split("/")[0]
        if top not in KERNEL or not os.path.isfile(source) or os.path.lexists(target):
            raise RunError(f"RUN --mount at {target} needs a mount namespace: {NO_NAMESPACE}")
        copies.append((source, target))
    return copies


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
    return out


def _command(spec: RunSpec, err_fd: int) -> None:
    """The command's process: user, working directory, environment, exec. Never returns."""
    try:
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, err_fd)
        os.closerange(err_fd + 1, 65536)
        user = lookup_user("/", spec.user)
        cwd = spec.cwd if spec.cwd.startswith("/") else "/" + spec.cwd
        os.makedirs(cwd, exist_ok=True)
        become(user)
        libc().prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        os.chdir(cwd)
        os.umask(0o022)
        env = dict(e.split("=", 1) for e in spec.env if "=" in e)
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOSTNAME", spec.hostname)
        argv0 = spec.args[0]
        path = shutil.which(argv0, path=env["PATH"]) if "/" not in argv0 else argv0
        if path is None:
            raise RunError(f"{argv0}: command not found in the container")
        os.execve(path, spec.args, env)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, (RunError, OSError)) else traceback.format_exc()
        with contextlib.suppress(OSError):
            os.write(err_fd, message.encode()[:4000])
    os._exit(127)


def _keeper(spec: RunSpec, err_fd: int) -> None:
    """Forks the command, waits for it, kills what it left behind, exits with its status."""
    code = 126
    try:
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        command = os.fork()
        if command == 0:
            _command(spec, err_fd)
        _, status = os.waitpid(command, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        while True:  # orphans of the command are ours now: end them, as a pid namespace would
            left = _children(os.getpid())
            if not left:
                break
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
    except BaseException:
        with contextlib.suppress(OSError):
            os.write(err_fd, traceback.format_exc().encode()[:4000])
    os._exit(code)


def run_inplace(spec: RunSpec) -> int:
    """Run ``spec.args`` in ``/`` over ``spec.lowerdirs``; the changes land in ``spec.upperdir``.
    Returns the command's exit status."""
    copies = _refuse(spec)
    rootfs = Rootfs(spec.lowerdirs, spec.upperdir, spec.upperdir.parent, False, "inplace")
    rootfs.mount()
    made: list[str] = []
    try:
        for source, target in copies:
            folder = os.path.dirname(target)
            while not os.path.lexists(folder):
                made.insert(0, folder)
                folder = os.path.dirname(folder)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(source, target)
            os.chmod(target, stat.S_IMODE(os.stat(source).st_mode))
            made.append(target)
        err_r, err_w = os.pipe()
        keeper = os.fork()
        if keeper == 0:
            os.close(err_r)
            _keeper(spec, err_w)
        os.close(err_w)

        def on_signal(signum: int, frame: object) -> None:
            with contextlib.suppress(OSError):
                os.kill(keeper, signal.SIGKILL)
            raise KeyboardInterrupt

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            error = b""
            while chunk := os.read(err_r, 65536):
                error += chunk
            _, status = os.waitpid(keeper, 0)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            os.close(err_r)
    finally:
        for target in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(target) if os.path.isdir(target) else os.unlink(target)
        rootfs.finish()
    if error:
        raise RunError(
            f"cannot run {spec.args[0]!r}: {error.decode(errors='replace').strip().splitlines()[-1]}"
        )
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code
