"""In-place mode: the container pybuild runs in *is* the step's root, as kaniko does it.

For root in a CI job container that can make no namespace at all (Docker's default seccomp profile,
Kubernetes pods without CAP_SYS_ADMIN), a step runs in ``/`` itself:

- ``/`` is brought to the step's stacked layer directories (rootsync.py: what is not in the view is
  removed, what differs from what ``/`` is known to hold is copied again). What ``/`` holds is
  remembered, so the next step over the same stack (the layer the step before just made on top)
  costs nothing, and a switch to another stage costs the files that differ;
- a record of ``/`` is taken (diff/trees.py: mode, owner, size, mtime, ctime, inode, link target,
  xattrs), the step runs, and the difference is written as an upperdir in overlay format, through
  the copy mode's ``write_difference``: the commit path is the one every mode uses.

Never touched, never recorded: /proc, /sys, /dev, every mount point in /proc/self/mountinfo (a
file mounted there, like Docker's /etc/hosts, keeps the container's), pybuild's own installation
(its Python, its libraries, every file it runs code from), the store and the build context
(``keep_out``), and the generated /etc files. One pybuild at a time holds ``/`` (a lock in
/dev/shm). An image whose files would land on pybuild's own installation is refused: pybuild must
be installed on a tree of its own (/pybuild in the pybuild image). Since it changes the machine it
runs on, the mode is only used when asked for, and only in a container.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from ..diff.overlay import LowerStack
from ..diff.trees import TreeRecord, compare
from ..errors import RunError, warn
from .privilege import in_container
from .rootsync import Held, Ident, identity, origins_of, sync_root
from .treecopy import CopiedRoot, hold_directories, write_difference

KERNEL = ("proc", "sys", "dev")
GENERATED = ("etc/hosts", "etc/resolv.conf", "etc/hostname")
_kept: set[str] = set()  # paths given to keep_out (store, context)
_warned: set[str] = set()


def keep_out(*paths: Path | str) -> None:
    """Paths an in-place step must never change or record (the store, the build context)."""
    for path in paths:
        _kept.add(os.path.realpath(path))


def _rel(path: str) -> str:
    return os.path.normpath(path).strip("/")


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, relative to ``/`` (not ``/`` itself)."""
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[4] != "/":  # (space, tab, \\ in octal)
                points.append(_rel(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])))
    return points


def installation() -> list[str]:
    """pybuild's own installation, relative to ``/``: the interpreter's prefixes, the package, and
    every file this process runs code from (the interpreter and its shared libraries)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    paths.add(os.path.realpath(sys.executable))
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/maps").read_text().splitlines():
            fields = line.split(maxsplit=5)  # code only: data such as a locale archive may be replaced
            if (
                len(fields) == 6
                and "x" in fields[1]
                and fields[5].startswith("/")
                and not fields[5].endswith(")")
            ):
                paths.add(fields[5])
    return sorted({_rel(os.path.realpath(p)) for p in paths if p and os.path.exists(p)})


# where images have files: pybuild installed there would be overwritten, or keep the image out
SYSTEM_DIRS = {"usr", "lib", "lib32", "lib64", "bin", "sbin", "etc", "var", "root"}


def problem() -> str | None:
    """Why in-place mode cannot be used here, or None: it needs root, a container, and pybuild on a
    tree of its own (never in /usr, /lib, /etc...: the reset between stages would remove what
    pybuild still needs, or keep the image's files out)."""
    if os.geteuid() != 0:
        return "in-place mode needs root in the container (it writes the image into /)"
    if in_container() is None:
        return "in-place mode replaces / of the machine it runs on, and this is not a container"
    tops = sorted({p.split("/")[0] for p in installation()} & SYSTEM_DIRS)
    if tops:
        return (
            f"in-place mode needs pybuild on a tree of its own, and it runs from /{', /'.join(tops)}, "
            "where images have files"
        )
    return None


def _covers(paths: list[str], rel: str) -> str | None:
    for p in paths:
        if rel == p or rel.startswith(p + "/") or not p:
            return p
    return None


@dataclass
class Skips:
    """The paths in ``/`` that in-place mode leaves alone, relative to ``/``."""

    own: list[str]  # pybuild's installation, store, context: an image may not put files there
    mounts: list[str]  # mount points and the kernel's trees: the image's files there are left out
    files: list[str]  # the generated /etc files

    @classmethod
    def here(cls) -> Skips:
        own = sorted(set(installation()) | {_rel(p) for p in _kept})
        return cls(own, sorted(set(mount_points()) | set(KERNEL)), list(GENERATED))

    def all(self) -> set[str]:
        return {*self.own, *self.mounts, *self.files}

    def keeps(self, rel: str) -> bool:
        """Whether ``rel`` must stay: skipped itself, or a directory on the way to a skipped path."""
        return any(s == rel or s.startswith(rel + "/") for s in self.all())


_held: list[Held] = []  # none, or what / holds now
_lock: list[int] = []  # the descriptor holding LOCK_FILE, once taken


def _forget() -> None:
    """Forget what / holds (the next step compares nothing and copies everything)."""
    for held in _held:
        held.close()
    _held.clear()


LOCK_FILE = "pybuild-inplace.lock"  # in /dev/shm or /dev: the container's own, never in an image


def _take_root() -> None:
    """Hold ``/`` for this process until it exits: a second pybuild in place in the same container
    waits (it would reset ``/`` under the first one's step)."""
    if _lock:
        return
    for folder in ("/dev/shm", "/dev"):
        try:
            fd = os.open(f"{folder}/{LOCK_FILE}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            break
        except OSError:
            continue
    else:
        raise RunError(f"in-place mode: cannot make its lock file {LOCK_FILE} in /dev/shm or /dev")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        warn("in-place mode: another pybuild is building in / here: waiting for it to end")
        fcntl.flock(fd, fcntl.LOCK_EX)
    _lock.append(fd)


class InPlaceRoot:
    """One step's root in ``/``: ``enter()`` before the step, ``finish()`` after it."""

    def __init__(self, lowerdirs: list[Path], upperdir: Path) -> None:
        self.lowerdirs = lowerdirs
        self.upperdir = upperdir
        self.copied: CopiedRoot | None = None

    @staticmethod
    def _holds(stack: list[Ident], upper: Ident) -> tuple[bool, bool]:
        """Whether ``/`` holds ``stack`` already, and whether with this step's ``upper`` on top (a
        step in two parts: the directories WORKDIR asks for, then the command)."""
        if not _held:
            return False, False
        held = _held[0]
        if held.upper is None:
            return held.stack == stack, False
        if stack == held.stack and upper == held.upper:
            return True, True
        return stack[1:] == held.stack and stack[:1] == [held.upper], False

    def enter(self) -> Path:
        why = problem()
        if why is not None:
            raise RunError(why, hints=["run `pybuild doctor` to see which mode works here"])
        _take_root()
        stack = [identity(p) for p in self.lowerdirs]
        view = LowerStack(self.lowerdirs).view()
        skips = Skips.here()
        for rel in view:
            own = _covers(skips.own, rel)
            if own is not None:
                raise RunError(
                    f"in-place mode: the image's /{rel} would land on pybuild's own /{own}",
                    hints=[
                        (
                            "install pybuild on a tree of its own, outside the image's paths "
                            "(the pybuild image has it in /pybuild: see the README, 'In a CI container')"
                        )
                    ],
                )
        upper = identity(self.upperdir)
        holds, on_top = self._holds(stack, upper)
        skip = skips.all()
        if holds:
            held = _held[0]
            if not on_top:
                held.stack, held.upper = stack, None
        else:
            origins = origins_of(self.lowerdirs, view)
            try:
                sync_root("/", view, origins, skip, skips.keeps, _held[0] if _held else None)
            except OSError as exc:
                _forget()
                raise RunError(
                    f"in-place mode: cannot put the image into /: {exc.filename or ''}: {exc.strerror or exc}"
                ) from None
            except BaseException:
                _forget()
                raise
            _forget()
            held = Held(stack, None, origins, {})
            held.hold(self.lowerdirs)
            _held.append(held)
            hidden = sorted({m for rel in view if (m := _covers(skips.mounts, rel)) is not None and m != rel})
            for m in hidden:
                if m not in KERNEL and m not in _warned:
                    _warned.add(m)
                    warn(f"in-place mode: the image's files under /{m} are left out (a mount point)")
        sources = {rel: e.source for rel, e in view.items()}
        record = TreeRecord.of("/", xattrs=True, sources=sources, skip=skip)
        dirs = [rel for rel, m in record.entries.items() if stat.S_ISDIR(m.mode)]
        self.copied = CopiedRoot(Path("/"), record, hold_directories(Path("/"), dirs), skip)
        return Path("/")

    def finish(self, keep_changes: bool = True) -> None:
        """Write what the step changed in ``/`` into the upperdir, in overlay format. Idempotent."""
        copied, self.copied = self.copied, None
        if copied is None:
            return
        try:
            if not keep_changes:
                _forget()  # / has changes no layer will hold: the next step copies everything again
                return
            differences = list(compare(copied.record, "/", skip=copied.skip))
            write_difference(copied, self.upperdir, False, differences)
            _held[0].after_step(copied.record, differences, self.upperdir)
        except BaseException:
            _forget()
            raise
        finally:
            copied.close()
