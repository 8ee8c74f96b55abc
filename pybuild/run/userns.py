"""User namespaces: the id maps pybuild uses, and running Python code inside one.

As an unprivileged user, container root is the user and ids 1..N are the user's subordinate range
from /etc/subuid and /etc/subgid, mapped with newuidmap/newgidmap. Without subordinate ranges,
a single-id map is used (only root in the container exists) and a warning says so once.
Real root needs no user namespace: code runs as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import pwd
import shutil
import signal
import subprocess
import traceback
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from .. import errors
from ..errors import PybuildError, RunError, warn

T = TypeVar("T")
CLONE_NEWUSER = 0x10000000
Range = tuple[int, int, int]  # (container start, host start, length)

SUBID_HINTS = [
    "add a range for your user to /etc/subuid and /etc/subgid, e.g. `usermod --add-subuids 100000-165535 "
    "--add-subgids 100000-165535 $USER`",
    "check that user namespaces are enabled: sysctl user.max_user_namespaces must be > 0",
]


@cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def unshare(flags: int) -> None:
    if libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise RunError(f"unshare failed: {os.strerror(err)}", hints=SUBID_HINTS)


def subordinate_range(path: Path, user: str, uid: int) -> tuple[int, int] | None:
    """The first ``start:count`` range of /etc/subuid (or subgid) for ``user`` or ``uid``."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[1].isdigit() and parts[2].isdigit():
            return int(parts[1]), int(parts[2])
    return None


_warned = False


def current_id_map() -> tuple[list[Range], list[Range]]:
    """The (uid, gid) maps pybuild uses for this user: container id -> host id ranges."""
    global _warned
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        return [(0, 0, 65536)], [(0, 0, 65536)]
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    subuid = subordinate_range(Path("/etc/subuid"), user, uid)
    subgid = subordinate_range(Path("/etc/subgid"), user, uid)
    if subuid is None or subgid is None or not shutil.which("newuidmap") or not shutil.which("newgidmap"):
        if not _warned:
            _warned = True
            warn(
                f"no subordinate ids for {user} (or no newuidmap/newgidmap): using a single-id map, "
                "so files can only be owned by root in containers"
            )
        return [(0, uid, 1)], [(0, gid, 1)]
    return [(0, uid, 1), (1, subuid[0], subuid[1])], [(0, gid, 1), (1, subgid[0], subgid[1])]


def write_id_maps(pid: int, uids: list[Range], gids: list[Range]) -> None:
    """Map the child ``pid``'s user namespace, with newuidmap/newgidmap when more than one id."""
    if len(uids) == 1 and len(gids) == 1:
        Path(f"/proc/{pid}/setgroups").write_text("deny")
        Path(f"/proc/{pid}/uid_map").write_text(" ".join(map(str, uids[0])) + "\n")
        Path(f"/proc/{pid}/gid_map").write_text(" ".join(map(str, gids[0])) + "\n")
        return
    for tool, ranges in (("newuidmap", uids), ("newgidmap", gids)):
        args = [tool, str(pid)] + [str(n) for r in ranges for n in r]
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RunError(f"{tool} failed: {proc.stderr.strip() or proc.returncode}", hints=SUBID_HINTS)


def result_payload(fn: Callable[[], object]) -> bytes:
    """``fn``'s result as the bytes a helper process sends back: ``R`` + pickle, or ``E`` + the class
    name and message of a PybuildError (anything else becomes a RunError with the traceback)."""
    try:
        return b"R" + pickle.dumps(fn())
    except PybuildError as exc:
        return f"E{type(exc).__name__}\t{exc}".encode()
    except BaseException:
        return f"ERunError\t{traceback.format_exc()}".encode()


def _decode(message: bytes, status: int) -> Any:
    """The result (or the error, raised again) a helper process sent as ``result_payload`` bytes."""
    if message.startswith(b"R"):
        return pickle.loads(message[1:])
    if message.startswith(b"E"):
        name, _, text = message[1:].decode(errors="replace").partition("\t")
        cls = getattr(errors, name, RunError)
        if not (isinstance(cls, type) and issubclass(cls, PybuildError)):
            cls = RunError
        raise cls(text)
    raise RunError(f"the user-namespace helper process failed (status {os.waitstatus_to_exitcode(status)})")


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def call_in_child(body: Callable[[], bytes], *, new_userns: bool) -> Any:
    """Run ``body`` in a forked child (root in a new user namespace mapped with ``current_id_map``
    when ``new_userns``), send the ``result_payload`` bytes it returns back, and decode them here.

    ``body`` should not raise (wrap it with ``result_payload``). A signal or exception in the waiting
    parent kills the child before it propagates.
    """
    uids, gids = current_id_map() if new_userns else ([], [])
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        payload = b"ERunError\tthe helper process failed before it ran"
        try:
            os.close(ready_r)
            os.close(go_w)
            os.close(out_r)
            if new_userns:
                unshare(CLONE_NEWUSER)
                os.write(ready_w, b"1")
                if os.read(go_r, 1) != b"1":
                    os._exit(3)
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            else:
                os.write(ready_w, b"1")
            payload = body()
        except PybuildError as exc:
            payload = f"E{type(exc).__name__}\t{exc}".encode()
        except BaseException:
            payload = f"ERunError\t{traceback.format_exc()}".encode()
        try:
            _write_all(out_w, payload)
        finally:
            os._exit(0 if payload.startswith(b"R") else 1)
    os.close(ready_w)
    os.close(go_r)
    os.close(out_w)
    done = False
    try:
        if os.read(ready_r, 1) != b"1":
            os.waitpid(pid, 0)
            done = True
            raise RunError("could not create a user namespace", hints=SUBID_HINTS)
        if new_userns:  # only then does the child wait for the maps (otherwise it may be gone already)
            write_id_maps(pid, uids, gids)
            os.write(go_w, b"1")
        chunks = []
        while chunk := os.read(out_r, 1 << 20):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        done = True
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        for fd in (ready_r, go_w, out_r):
            os.close(fd)
    return _decode(b"".join(chunks), status)


def run_in_userns(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a child process that is root in a new user namespace with ``current_id_map``,
    and return what it returns (it must pickle).

    As real root, ``fn`` simply runs here. A PybuildError raised by ``fn`` is raised again here,
    with its class and message; anything else becomes a RunError carrying the child's traceback.
    """
    if os.geteuid() == 0:
        return fn()
    result: T = call_in_child(lambda: result_payload(fn), new_userns=True)
    return result
