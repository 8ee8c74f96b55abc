"""User namespaces: the id maps pybuild uses, and running Python code inside one.

As an unprivileged user, container root is the user and ids 1..N are the user's subordinate range
from /etc/subuid and /etc/subgid, mapped with newuidmap/newgidmap. Without subordinate ranges,
a single-id map is used (only root in the container exists) and a warning says so once.
Real root needs no user namespace: code runs as it is.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import pwd
import shutil
import subprocess
import traceback
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

from .. import errors
from ..errors import PybuildError, RunError

log = logging.getLogger("pybuild.run")

T = TypeVar("T")
CLONE_NEWUSER = 0x10000000
Range = tuple[int, int, int]  # (container start, host start, length)

SUBID_HINTS = [
    "add a range for your user to /etc/subuid and /etc/subgid, e.g. `usermod --add-subuids 100000-165535 "
    "--add-subgids 100000-165535 $USER`",
    "check that user namespaces are enabled: sysctl user.max_user_namespaces must be > 0",
]


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def unshare(flags: int) -> None:
    if _libc().unshare(flags) != 0:
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
            log.warning(
                "no subordinate ids for %s (or no newuidmap/newgidmap): using a single-id map, "
                "so files can only be owned by root in containers",
                user,
            )
        return [(0, uid, 1)], [(0, gid, 1)]
    return [(0, uid, 1), (1, subuid[0], subuid[1])], [(0, gid, 1), (1, subgid[0], subgid[1])]


def _write_maps(pid: int, uids: list[Range], gids: list[Range]) -> None:
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


def run_in_userns(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a child process that is root in a new user namespace with ``current_id_map``,
    and return what it returns (it must pickle).

    As real root, ``fn`` simply runs here. A PybuildError raised by ``fn`` is raised again here,
    with its class and message; anything else becomes a RunError carrying the child's traceback.
    """
    if os.geteuid() == 0:
        return fn()
    uids, gids = current_id_map()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(ready_r)
            os.close(go_w)
            os.close(out_r)
            unshare(CLONE_NEWUSER)
            os.write(ready_w, b"1")
            if os.read(go_r, 1) != b"1":
                os._exit(3)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            payload = b"R" + pickle.dumps(fn())
        except PybuildError as exc:
            payload = f"E{type(exc).__name__}\t{exc}".encode()
            code = 1
        except BaseException:
            payload = f"ERunError\t{traceback.format_exc()}".encode()
            code = 2
        try:
            with os.fdopen(out_w, "wb") as out:
                out.write(payload)
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    os.close(out_w)
    try:
        if os.read(ready_r, 1) != b"1":
            os.waitpid(pid, 0)
            raise RunError("could not create a user namespace", hints=SUBID_HINTS)
        try:
            _write_maps(pid, uids, gids)
        except BaseException:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise
        os.write(go_w, b"1")
        chunks = []
        while chunk := os.read(out_r, 1 << 20):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    finally:
        for fd in (ready_r, go_w, out_r):
            os.close(fd)
    message = b"".join(chunks)
    if message.startswith(b"R"):
        result: T = pickle.loads(message[1:])
        return result
    if message.startswith(b"E"):
        name, _, text = message[1:].decode(errors="replace").partition("\t")
        cls = getattr(errors, name, RunError)
        if not (isinstance(cls, type) and issubclass(cls, PybuildError)):
            cls = RunError
        raise cls(text)
    raise RunError(f"the user-namespace helper process failed (status {os.waitstatus_to_exitcode(status)})")
