"""User namespaces: the id maps pybuild uses, and running Python code inside one.

pybuild decides by capability (privilege.py), for root as for anyone. The map of a new user
namespace is, in this order:

- the identity over every id of the current namespace, written directly, when pybuild has
  CAP_SETUID, CAP_SETGID and CAP_SETFCAP itself (root in Docker's default capability set);
- the user as container root and its /etc/subuid and /etc/subgid range as ids 1..N, written by
  newuidmap/newgidmap, when they can work here (setuid or file capabilities, see
  ``privilege.helper_problem``);
- otherwise a single-id map (only root exists in the container), with a warning, once.

File work as the container's root (``run_in_userns``) runs in this process where pybuild is root
with the capabilities to act on files of any owner, and in a new user namespace otherwise; where
no user namespace can be made (a seccomp profile refusing unshare), root does it in this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import pwd
import signal
import subprocess
import traceback
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from .. import errors
from ..errors import PybuildError, RunError, warn
from .privilege import (
    CAP_SETFCAP,
    MAP_CAPS,
    acts_on_any_owner,
    has_caps,
    helper_problem,
    namespace_fix,
    namespace_ids,
)

T = TypeVar("T")
CLONE_NEWUSER = 0x10000000
Range = tuple[int, int, int]  # (container start, host start, length)

SUBID_HINTS = [
    "add a range for your user to /etc/subuid and /etc/subgid, e.g. `usermod --add-subuids 100000-165535 "
    "--add-subgids 100000-165535 $USER`",
    "check that user namespaces are enabled: sysctl user.max_user_namespaces must be > 0",
    "`pybuild doctor` names what this machine or container lacks",
]


def namespace_hints() -> list[str]:
    """The hints for a refused unshare(CLONE_NEWUSER): what to change, and the doctor."""
    return [namespace_fix(), "`pybuild doctor` names what this machine or container lacks"]


MAP_HINTS = [
    "give the container CAP_SETUID, CAP_SETGID and CAP_SETFCAP, or newuidmap/newgidmap with file "
    "capabilities (setcap cap_setuid+ep /usr/bin/newuidmap; cap_setgid+ep newgidmap)",
    "`pybuild doctor` names what this container lacks",
]


@cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(signum: int, parent: int) -> None:
    """In a forked child: get ``signum`` when ``parent`` (the process that forked it) ends, and
    end now when it has already (prctl PR_SET_PDEATHSIG, then a look at the parent's pid)."""
    libc().prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def unshare(flags: int) -> None:
    if libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise RunError(f"unshare failed: {os.strerror(err)}", hints=namespace_hints())


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


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warn(message)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def map_kind() -> tuple[str, str]:
    """How a new user namespace is mapped here: ("full", how), ("subids", how), ("single", why not
    more) or ("none", why no map can be written)."""
    if has_caps(*MAP_CAPS):
        return "full", "CAP_SETUID, CAP_SETGID and CAP_SETFCAP: the identity map of this namespace's ids"
    uid = os.geteuid()
    user = _user_name(uid)
    problem = helper_problem("newuidmap") or helper_problem("newgidmap")
    subuid = subordinate_range(Path("/etc/subuid"), user, uid)
    subgid = subordinate_range(Path("/etc/subgid"), user, uid)
    if problem is None and subuid is not None and subgid is not None:
        return "subids", f"newuidmap/newgidmap with {user}'s /etc/subuid and /etc/subgid ranges"
    if problem is None:
        problem = f"no /etc/subuid and /etc/subgid ranges for {user}"
    if uid == 0 and not has_caps(CAP_SETFCAP):
        return "none", f"root without CAP_SETFCAP cannot map uid 0 into a user namespace ({problem})"
    return "single", problem


def current_id_map() -> tuple[list[Range], list[Range]]:
    """The (uid, gid) maps of the user namespaces pybuild makes: container id -> id here ranges."""
    kind, why = map_kind()
    uid, gid = os.geteuid(), os.getegid()
    if kind == "full":
        return (
            [(start, start, count) for start, count in namespace_ids("uid")],
            [(start, start, count) for start, count in namespace_ids("gid")],
        )
    if kind == "none":
        raise RunError(f"cannot map a user namespace: {why}", hints=MAP_HINTS)
    if kind == "subids":
        user = _user_name(uid)
        subuid = subordinate_range(Path("/etc/subuid"), user, uid)
        subgid = subordinate_range(Path("/etc/subgid"), user, uid)
        assert subuid is not None and subgid is not None
        return [(0, uid, 1), (1, subuid[0], subuid[1])], [(0, gid, 1), (1, subgid[0], subgid[1])]
    _warn_once(f"a single-id user namespace map ({why}): files in containers can only be owned by root")
    return [(0, uid, 1)], [(0, gid, 1)]


def write_id_maps(pid: int, uids: list[Range], gids: list[Range]) -> None:
    """Map the child ``pid``'s user namespace: directly with the capabilities for it or for a
    single id, else with newuidmap/newgidmap."""
    direct = has_caps(*MAP_CAPS)
    if direct or (len(uids) == 1 and len(gids) == 1 and uids[0][1:] == (os.geteuid(), 1)):
        try:
            if not direct:
                Path(f"/proc/{pid}/setgroups").write_text("deny")
            Path(f"/proc/{pid}/uid_map").write_text("".join(" ".join(map(str, r)) + "\n" for r in uids))
            Path(f"/proc/{pid}/gid_map").write_text("".join(" ".join(map(str, r)) + "\n" for r in gids))
        except OSError as exc:
            raise RunError(
                f"cannot write the user namespace's id map: {exc.strerror or exc}", hints=SUBID_HINTS
            ) from None
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


def decode_payload(message: bytes, status: int) -> Any:
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
            said = os.read(out_r, 4000)
            os.waitpid(pid, 0)
            done = True
            reason = said[1:].decode(errors="replace").partition("\t")[2].strip() if said else ""
            suffix = f": {reason}" if reason else ""
            raise RunError(f"could not create a user namespace{suffix}", hints=namespace_hints())
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
    return decode_payload(b"".join(chunks), status)


_userns_problem: list[str | None] = []


def userns_problem() -> str | None:
    """Why no user namespace can be made here (tried once per process), or None when one can."""
    if not _userns_problem:
        try:
            call_in_child(lambda: result_payload(lambda: None), new_userns=True)
            _userns_problem.append(None)
        except PybuildError as exc:
            _userns_problem.append(str(exc))
    return _userns_problem[0]


def run_in_userns(fn: Callable[[], T]) -> T:
    """Run ``fn`` as the containers' root and return what it returns (it must pickle): here, where
    pybuild is root with the capabilities to act on files of any owner (or root where no user
    namespace can be made), otherwise in a child process that is root in a new user namespace with
    ``current_id_map``. A PybuildError raised by ``fn`` in a child is raised again here, with its
    class and message; anything else becomes a RunError carrying the child's traceback.
    """
    if acts_on_any_owner() or (os.geteuid() == 0 and userns_problem() is not None):
        return fn()
    result: T = call_in_child(lambda: result_payload(fn), new_userns=True)
    return result
