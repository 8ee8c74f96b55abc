"""The store's private area: what pybuild keeps under ``.pybuild/`` in a layout (other tools ignore it).

Every path below ``.pybuild/`` is named here, and nowhere else:

- ``tmp/``            temp files of blob and index.json writes, named ``<prefix>-<pid>-<random>``;
- ``gc.lock``, ``index.lock``  the layout's locks (see ``Layout.writing`` and ``update_index``);
- ``layers/<diff_id>`` each layer extracted once, in overlay format, as a lowerdir for RUN steps and
  ``pybuild run`` (the extraction itself is run/layers.py's: it needs a user namespace);
- ``build-cache/<key>`` the builder's step records (the keys are builder/cache.py's);
- ``build/``          workspaces of running builds (one per step: upperdir, staging, secrets);
- ``cache-mounts/<id>`` the folders of ``RUN --mount=type=cache`` (``<id>-<n>``: more instances of
  one, made for ``sharing=private`` RUNs while it is in use);
- ``cache-locks/<id>`` their lock files (``cache_mount_held``: the sharing modes);
- ``run/``            workspaces of ``pybuild run`` containers, each flocked by its run (``run_workspace``);
- ``blob-info/``      the blob-info cache (diff_id -> compressed digests).

And the gc of that area: stale temp files (``sweep_temp_files``, for any layout), and for the store
(``sweep``): cache records whose layer blob is gone, layer directories no image and no surviving
record uses, and workspaces of builds and ``pybuild run`` containers that ended. Removing a layer
directory or a workspace can need a user namespace (their files belong to subordinate ids), so the
caller passes the remover.

Knows nothing of tar or processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PybuildError
from . import mediatype
from .descriptor import Descriptor
from .digest import Digest
from .document import ImageConfig, Index, Manifest

if TYPE_CHECKING:
    from .imagelayout import Layout

PRIVATE_DIR = ".pybuild"
SHARING = ("shared", "private", "locked")  # RUN --mount=type=cache,sharing=
MAX_PRIVATE_INSTANCES = 256

# cache mount locks this process holds: a forked child (a RUN's keeper, any helper) closes its copies,
# so a lock is released when its holder lets go of it, whatever children are still running. The
# guard is held across fork(), so a child never sees a descriptor half opened or half closed.
_held: set[int] = set()
_held_guard = threading.Lock()


def _before_fork() -> None:
    _held_guard.acquire()


def _after_fork_in_parent() -> None:
    _held_guard.release()


def _after_fork_in_child() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()
    _held_guard.release()  # taken by the forking thread, the one thread of the child


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


@dataclass
class SweepResult:
    records: int = 0
    layer_dirs: int = 0
    workspaces: int = 0
    run_workspaces: int = 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateArea:
    """The paths under ``<layout>/.pybuild``. Nothing is created until a caller needs it."""

    def __init__(self, layout_root: Path | str) -> None:
        self.root = Path(layout_root) / PRIVATE_DIR

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def lock(self, name: str) -> Path:
        """A lock file (``gc.lock``, ``index.lock``)."""
        return self.root / name

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    def layer_dir(self, diff_id: Digest) -> Path:
        """Where the layer with ``diff_id`` is (or will be) extracted."""
        return self.layers / diff_id.encoded

    @property
    def build_cache(self) -> Path:
        return self.root / "build-cache"

    @property
    def workspaces(self) -> Path:
        return self.root / "build"

    @property
    def cache_mounts(self) -> Path:
        return self.root / "cache-mounts"

    def cache_mount(self, name: str) -> Path:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"bad cache mount name {name!r}")
        return self.cache_mounts / name

    def cache_mount_lock(self, name: str) -> Path:
        """The lock file of the cache mount instance ``name``."""
        self.cache_mount(name)  # the same rules for the name
        return self.root / "cache-locks" / name

    @contextlib.contextmanager
    def cache_mount_held(self, name: str, sharing: str) -> Iterator[str]:
        """Hold the cache mount ``name`` for one RUN, as BuildKit's ``sharing`` says; yields the
        instance to mount (its name for ``cache_mount``). ``shared``: one folder for all, used at
        the same time (a shared flock, which only a ``locked`` holder makes wait); ``locked``: an
        exclusive flock, so every other user of the folder waits until this RUN is over;
        ``private``: the folder when no one else uses it, else another instance (``<id>-<n>``,
        kept for later private RUNs), never waiting. The flocks are on open file descriptions, so
        two RUNs of one process follow the same rules as two processes."""
        if sharing not in SHARING:
            raise ValueError(f"bad cache sharing {sharing!r}")
        folder = self.root / "cache-locks"
        folder.mkdir(parents=True, exist_ok=True)
        if sharing != "private":
            fd = self._lock_open(name)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if sharing == "shared" else fcntl.LOCK_EX)
            except BaseException:
                self._lock_close(fd)
                raise
            try:
                yield name
            finally:
                self._lock_close(fd)
            return
        for n in range(MAX_PRIVATE_INSTANCES):
            instance = name if n == 0 else f"{name}-{n}"
            fd = self._lock_open(instance)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock_close(fd)
                continue
            except BaseException:
                self._lock_close(fd)
                raise
            try:
                yield instance
            finally:
                self._lock_close(fd)
            return
        raise PybuildError(f"cache mount {name}: {MAX_PRIVATE_INSTANCES} private instances in use at once")

    def _lock_open(self, name: str) -> int:
        path = self.cache_mount_lock(name)
        with _held_guard:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            _held.add(fd)
        return fd

    @staticmethod
    def _lock_close(fd: int) -> None:
        with _held_guard:
            _held.discard(fd)
            os.close(fd)

    @property
    def run_workspaces(self) -> Path:
        return self.root / "run"

    @contextlib.contextmanager
    def run_workspace(self, layout: Layout) -> Iterator[Path]:
        """A new workspace for one ``pybuild run`` container, locked (an exclusive flock on the
        directory) for as long as the run lasts, so ``sweep`` never takes a live one and takes
        those of runs that ended, killed ones too (the kernel drops a dead process's flocks). It
        is made under the layout's writers' lock, so a sweep never sees it before it is locked.
        The caller removes it afterwards (its files may need a user namespace)."""
        import tempfile

        with layout.writing():
            self.run_workspaces.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(prefix="ctr-", dir=self.run_workspaces))
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX)  # new: nobody else holds it
        try:
            yield path
        finally:
            os.close(fd)

    @property
    def blob_info(self) -> Path:
        return self.root / "blob-info"

    # --- gc ------------------------------------------------------------------------------------
    def sweep_temp_files(self, temp_age: float) -> int:
        """Remove temp files of dead processes (or older than ``temp_age`` seconds); how many."""
        removed = 0
        if not self.tmp.is_dir():
            return 0
        now = time.time()
        for entry in os.scandir(self.tmp):
            parts = entry.name.rsplit("-", 2)
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            try:
                old = now - entry.stat(follow_symlinks=False).st_mtime > temp_age
            except FileNotFoundError:
                continue
            if pid is None or not _pid_alive(pid) or old:
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
        return removed

    def sweep(self, layout: Layout, remove_tree: Callable[[Path], None]) -> SweepResult:
        """What blob gc leaves: cache records whose layer blob is gone, layer directories that no
        image in the index and no surviving record uses, and workspaces of builds that ended.

        Takes the layout's exclusive lock, so no build is running (builds hold the writers' lock)."""
        result = SweepResult()
        with layout.exclusive():
            keep = _diff_ids_in_use(layout)
            if self.build_cache.is_dir():
                for path in self.build_cache.iterdir():
                    diff_id = _record_layer(layout, path)
                    if diff_id is not None:
                        keep.add(diff_id)
                        continue
                    with contextlib.suppress(OSError):
                        path.unlink()
                        result.records += 1
            if self.layers.is_dir():
                for path in self.layers.iterdir():
                    if path.name not in keep:
                        remove_tree(path)
                        result.layer_dirs += 1
            if self.workspaces.is_dir():
                for path in self.workspaces.iterdir():
                    remove_tree(path)
                    result.workspaces += 1
            if self.run_workspaces.is_dir():
                for path in self.run_workspaces.iterdir():
                    with _unless_in_use(path) as free:
                        if free:
                            remove_tree(path)
                            result.run_workspaces += 1
        return result


@contextlib.contextmanager
def _unless_in_use(path: Path) -> Iterator[bool]:
    """Whether no running ``pybuild run`` holds the workspace ``path`` (its flock), holding it while
    the caller removes it. Anything else than a directory there is left alone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _record_layer(layout: Layout, path: Path) -> str | None:
    """The diff_id (encoded) of the layer a build cache record names, when its blob is still there;
    None for a record to remove (unreadable, or its blob is gone). A record of a step that made no
    layer is kept, and keeps nothing (returns "")."""
    try:
        record = json.loads(path.read_bytes())
        layer = record.get("layer") if isinstance(record, dict) else None
        if layer is None:
            return ""
        if layout.blobs.exists(Digest.parse(str(layer.get("digest")))):
            return Digest.parse(str(record.get("diff_id"))).encoded
    except (OSError, ValueError, AttributeError, PybuildError):
        pass
    return None


def _diff_ids_in_use(layout: Layout) -> set[str]:
    """The diff_ids (encoded) of every image index.json reaches, every platform of an index included.
    A document that cannot be read keeps nothing (its image's layer directories are extracted
    again when needed)."""
    keep: set[str] = set()
    seen: set[Digest] = set()
    stack: list[Descriptor] = list(layout.read_index().manifests)
    while stack:
        desc = stack.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        try:
            if desc.media_type in mediatype.INDEXES:
                stack.extend(Index.parse(layout.blobs.read(desc.digest, desc.size)).manifests)
            elif desc.media_type in mediatype.MANIFESTS:
                manifest = Manifest.parse(layout.blobs.read(desc.digest, desc.size), lenient=True)
                if manifest.config.media_type in mediatype.CONFIGS:
                    raw = layout.blobs.read(manifest.config.digest, manifest.config.size)
                    keep.update(d.encoded for d in ImageConfig.parse(raw, lenient=True).diff_ids)
        except PybuildError:
            continue
    return keep
