"""The container's root filesystem over layer directories, and running a Python function in it.

A ``Rootfs`` is made inside a user namespace (or as real root) and a private mount namespace. It
shows the stacked lowerdirs (top first, overlay format) with the upperdir on top, in one of three
modes:

- ``native``: kernel overlay, always with ``userxattr`` (opaque markers are ``user.overlay.opaque``);
- ``fuse``: fuse-overlayfs, its opaque-directory and whiteout markers translated afterwards;
- ``copy``: the stacked lowers copied into a private tree; afterwards the difference is written
  into the upperdir (see ``treecopy``);
- ``inplace``: no namespace and no mount at all: ``/`` itself is the root (see ``inplace``).

In every mode the upperdir ends up in overlay format, so the changeset does not depend on the mode.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..diff.overlay import (
    FUSE_OPAQUE_FILES,
    FUSE_OPAQUE_XATTR,
    FUSE_XATTR_PREFIX,
    OPAQUE_XATTRS,
    WHITEOUT_PREFIX,
    LowerStack,
    is_whiteout,
    make_whiteout,
    mark_opaque,
)
from ..errors import RunError
from .cleanup import force_remove
from .inplace import InPlaceRoot
from .privilege import can_mount
from .treecopy import CopiedRoot, copy_stack, write_difference
from .userns import call_in_child, decode_payload, libc, result_payload

T = TypeVar("T")
CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
MODES = ("native", "fuse", "copy", "inplace")
OPTIONS_PAGE = 2048  # beyond this, lowerdirs are named by short links (mount options fit in one page)


def checked(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    lib = libc()
    checked(
        lib.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    checked(libc().umount2(target.encode(), flags), f"umount {target}")


def _lowerdir_option(lowerdirs: list[Path], tmp: Path, short: bool) -> str:
    """The ``lowerdir=`` value: the layers top first, an empty directory for a scratch image, and
    (when ``short`` and the paths would overflow the option page) short links in ``tmp/l``,
    relative to the current directory, which this function changes to that folder."""
    if not lowerdirs:
        empty = tmp / "empty"
        empty.mkdir(exist_ok=True)
        return str(empty)
    lowers = ":".join(str(p) for p in lowerdirs)
    if short and len(lowers) > OPTIONS_PAGE:
        links = tmp / "l"
        links.mkdir(exist_ok=True)
        for i, layer in enumerate(lowerdirs):
            os.symlink(str(layer), links / f"{i:x}")
        os.chdir(links)
        lowers = ":".join(f"{i:x}" for i in range(len(lowerdirs)))
    return lowers


def unique_lowers(lowerdirs: list[Path]) -> list[Path]:
    """``lowerdirs`` (top first) with only the topmost occurrence of a repeated layer directory.

    Two steps can make the same diff_id (COPY --from of a file a stage already has, byte for byte),
    so one layer directory can appear twice in an image's stack, and kernel overlay refuses a
    lowerdir stack that names a directory twice (ELOOP). Dropping the lower occurrence shows the
    same tree: a path is looked up from the top and stops at the first layer with a file, a
    whiteout or an opaque directory there, so the lower copy is reached only through paths the
    upper copy has nothing at (then the lower copy has nothing either: same directory) or has a
    plain directory at (whose entries the upper copy already provided, above anything between).
    """
    seen: set[str] = set()
    out: list[Path] = []
    for layer in lowerdirs:
        key = os.path.realpath(layer)
        if key not in seen:
            seen.add(key)
            out.append(Path(layer))
    return out


def mount_overlay(lowerdirs: list[Path], upperdir: Path, tmp: Path, merged: Path, rootless: bool) -> None:
    """Mount kernel overlay on ``merged`` (work dir, links and empty lower under ``tmp``). Must run
    in a private mount namespace; changes the current directory when the layers need short links."""
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    # userxattr as root too: layer directories mark opaque directories with user.overlay.opaque
    # (what an unprivileged extraction can write), and without it root's overlay would ignore them
    opts = f"lowerdir={_lowerdir_option(lowerdirs, tmp, True)},upperdir={upperdir},workdir={work},userxattr"
    mount("overlay", str(merged), "overlay", 0, opts)


class Rootfs:
    """One run's root filesystem at ``tmp/merged``. ``mount()`` and ``finish()`` run in the same
    user and (private) mount namespace; ``finish()`` leaves ``upperdir`` in overlay format."""

    def __init__(self, lowerdirs: list[Path], upperdir: Path, tmp: Path, rootless: bool, mode: str) -> None:
        if mode not in MODES:
            raise RunError(f"unknown overlay mode {mode!r}: expected native, fuse, copy or inplace")
        self.lowerdirs = unique_lowers([Path(p) for p in lowerdirs])
        self.upperdir = Path(upperdir)
        self.tmp = Path(tmp)
        self.merged = self.tmp / "merged"
        self.rootless = rootless
        self.mode = mode
        self.fuse: subprocess.Popen[bytes] | None = None
        self.copied: CopiedRoot | None = None
        self.inplace: InPlaceRoot | None = None

    def mount(self) -> Path:
        if self.mode == "inplace":
            self.inplace = InPlaceRoot(self.lowerdirs, self.upperdir)
            return self.inplace.enter()
        self.merged.mkdir(exist_ok=True)
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            if self.mode == "native":
                mount_overlay(self.lowerdirs, self.upperdir, self.tmp, self.merged, self.rootless)
            elif self.mode == "fuse":
                self._mount_fuse()
            else:
                self.copied = copy_stack(self.lowerdirs, self.tmp / "rootfs")
                mount(str(self.tmp / "rootfs"), str(self.merged), None, MS_BIND)
        except OSError as exc:  # one line for the user, not the traceback of a helper process
            raise RunError(
                f"cannot mount the root filesystem ({self.mode} mode, {len(self.lowerdirs)} layers): "
                f"{exc.strerror or exc}"
            ) from None
        finally:
            os.fchdir(cwd)
            os.close(cwd)
        return self.merged

    def held(self) -> set[int]:
        """The descriptors a copied (or in-place) root holds open, which a child closes."""
        if self.copied is not None:
            return self.copied.held
        if self.inplace is not None and self.inplace.copied is not None:
            return self.inplace.copied.held
        return set()

    def _mount_fuse(self) -> None:
        work = self.tmp / "work"
        work.mkdir(exist_ok=True)
        lowers = _lowerdir_option(self.lowerdirs, self.tmp, False)
        opts = f"lowerdir={lowers},upperdir={self.upperdir},workdir={work}"
        before = os.stat(self.merged).st_dev

        def die_with_parent() -> None:
            libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

        try:
            self.fuse = subprocess.Popen(
                ["fuse-overlayfs", "-f", "-o", opts, str(self.merged)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise RunError(f"cannot start fuse-overlayfs: {exc.strerror or exc}") from None
        deadline = time.monotonic() + 20
        while os.stat(self.merged).st_dev == before:
            if self.fuse.poll() is not None or time.monotonic() > deadline:
                err = b""
                if self.fuse.poll() is None:
                    self.fuse.kill()
                    self.fuse.wait()
                elif self.fuse.stderr is not None:
                    err = self.fuse.stderr.read()
                raise RunError(
                    f"fuse-overlayfs could not mount {self.merged}: "
                    f"{err.decode(errors='replace').strip() or 'timed out'}",
                    hints=["/dev/fuse must be readable and writable (mode 0666) for rootless fuse"],
                )
            time.sleep(0.002)

    def finish(self, keep_changes: bool = True) -> None:
        """Unmount; for fuse and copy, write the upperdir in overlay format (unless the changes are
        to be thrown away: ``keep_changes=False``). Idempotent."""
        if self.inplace is not None:
            self.inplace.finish(keep_changes)
        elif self.mode == "native":
            with contextlib.suppress(OSError):
                umount(str(self.merged), MNT_DETACH)
        elif self.mode == "fuse":
            if self.fuse is not None:
                try:
                    umount(str(self.merged))
                except OSError:
                    with contextlib.suppress(OSError):
                        umount(str(self.merged), MNT_DETACH)
                try:
                    self.fuse.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.fuse.kill()
                    self.fuse.wait()
                self.fuse = None
                if keep_changes:
                    translate_fuse_upperdir(self.upperdir, self.lowerdirs, self.rootless)
        elif self.copied is not None:
            with contextlib.suppress(OSError):
                umount(str(self.merged), MNT_DETACH)
            copied, self.copied = self.copied, None
            try:
                if keep_changes:
                    write_difference(copied, self.upperdir, self.rootless)
            finally:
                copied.close()
                force_remove(copied.root)


def translate_fuse_upperdir(upper: Path, lowers: list[Path], rootless: bool) -> None:
    """Rewrite what fuse-overlayfs leaves in ``upper`` in the overlay format (diff/overlay.py), as
    kernel overlay writes it:

    - an opaque directory's ``.wh..wh..opq`` file (and ``.wh..opq`` device) or fuse-overlayfs
      xattr become ``user.overlay.opaque=y``, kept only where the lowers have something at that path;
    - ``.wh.NAME`` files become whiteouts; ``user.fuseoverlayfs.*`` xattrs go;
    - a directory copied up without a change of its own (no name added, removed or retyped) gets
      its lower times back (fuse-overlayfs does not keep them); others keep theirs.
    """
    stack = LowerStack(lowers)
    opaque_markers = (FUSE_OPAQUE_XATTR, *OPAQUE_XATTRS)
    for dirpath, _dirnames, filenames in os.walk(upper, topdown=False):
        rel = os.path.relpath(dirpath, upper)
        rel = "" if rel == "." else rel
        st = os.lstat(dirpath)
        opaque = False
        with contextlib.suppress(OSError):
            for attr in os.listxattr(dirpath, follow_symlinks=False):
                if attr in opaque_markers and os.getxattr(dirpath, attr, follow_symlinks=False) == b"y":
                    opaque = True
                if attr.startswith(FUSE_XATTR_PREFIX) or attr in opaque_markers:
                    os.removexattr(dirpath, attr, follow_symlinks=False)
        for entry in filenames:
            path = os.path.join(dirpath, entry)
            with contextlib.suppress(OSError):
                for attr in os.listxattr(path, follow_symlinks=False):
                    if attr.startswith(FUSE_XATTR_PREFIX):
                        os.removexattr(path, attr, follow_symlinks=False)
            if entry in FUSE_OPAQUE_FILES:
                opaque = True
                os.unlink(path)
            elif entry.startswith(WHITEOUT_PREFIX):
                target = os.path.join(dirpath, entry[len(WHITEOUT_PREFIX) :])
                os.unlink(path)
                if not os.path.lexists(target) and not make_whiteout(target):
                    raise OSError(f"cannot make a whiteout at {target}")
        if not rel:
            os.utime(dirpath, ns=(st.st_atime_ns, st.st_mtime_ns))
            continue
        below = stack.entry(rel)
        if opaque and below is not None:
            mark_opaque(dirpath)
        times = (st.st_atime_ns, st.st_mtime_ns)
        if below is not None and stat.S_ISDIR(below.st.st_mode) and not opaque:
            changed = False
            with os.scandir(dirpath) as it:
                for e in it:
                    old = stack.entry(f"{rel}/{e.name}")
                    est = e.stat(follow_symlinks=False)
                    if (
                        old is None
                        or is_whiteout(est)
                        or stat.S_IFMT(old.st.st_mode) != stat.S_IFMT(est.st_mode)
                    ):
                        changed = True
                        break
            if not changed:
                times = (below.st.st_atime_ns, below.st.st_mtime_ns)
        os.utime(dirpath, ns=times, follow_symlinks=False)


def _in_root(merged: Path, fn: Callable[[], object], keep: set[int]) -> bytes:
    """Run ``fn`` in a forked child chrooted into ``merged`` (``/`` itself: no chroot); its
    ``result_payload`` bytes."""
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_r)
            libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            for fd in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)

            def call() -> object:
                if str(merged) != "/":
                    os.chroot(merged)
                os.chdir("/")
                return fn()

            payload = result_payload(call)
            with os.fdopen(out_w, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)
    os.close(out_w)
    chunks = []
    try:
        while chunk := os.read(out_r, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(out_r)
        os.waitpid(pid, 0)
    return b"".join(chunks) or b"ERunError\tthe function's process died"


def run_in_rootfs(lowerdirs: list[Path], upperdir: Path, fn: Callable[[], T], mode: str) -> T:
    """``run_function`` in the overlay ``mode`` given (native, fuse or copy): no probing here, so
    ``modes`` can probe with it."""
    upperdir = Path(upperdir)
    lowers = [Path(p) for p in lowerdirs]
    if mode == "inplace":  # in this process: it remembers what / holds
        inplace = Rootfs(lowers, upperdir, upperdir.parent, False, mode)
        try:
            payload = _in_root(inplace.mount(), fn, inplace.held())
        finally:
            inplace.finish()
        result: T = decode_payload(payload, 0)
        return result
    rootless = not can_mount()
    tmp = Path(tempfile.mkdtemp(prefix="pybuild-fn-", dir=upperdir.parent))

    def body() -> bytes:
        checked(libc().unshare(CLONE_NEWNS), "unshare mount namespace")
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        rootfs = Rootfs(lowers, upperdir, tmp, rootless, mode)
        try:
            merged = rootfs.mount()
            payload = _in_root(merged, fn, rootfs.held())
        finally:
            rootfs.finish()
            # what only this namespace's root may remove (a copied rootfs owned by subordinate ids)
            for child in tmp.iterdir():
                if child.name != "merged":  # never walk a mount point: the parent removes it
                    force_remove(child)
        return payload

    try:
        result = call_in_child(body, new_userns=rootless)
    finally:
        force_remove(tmp)
    return result
