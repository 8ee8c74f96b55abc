"""An OCI image layout directory: ``oci-layout``, ``index.json`` and ``blobs/``.

index.json is replaced atomically (temp file, fsync, rename) under an exclusive file lock, so
concurrent writers never lose a tag. Writers hold a shared "gc" lock while they put blobs and
reference them; ``gc`` takes it exclusively, so it never sweeps a blob a commit is about to reference.
pybuild's own files live in the layout's private area (``private.PrivateArea``), which other tools ignore.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ImageNotFound, InvalidDocument, LayoutError, LockTimeout
from . import mediatype
from .descriptor import REF_NAME, Descriptor
from .document import Index, OciLayoutFile, dump_json
from .private import PrivateArea
from .store import BlobStore, fsync_dir, temp_file

LOCK_TIMEOUT = 120.0
INDEX_JSON_LIMIT = 64 << 20


def _acquire(fd: int, mode: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"{what} is busy: another pybuild held its lock for {timeout:.0f}s",
                    hints=["wait for the other pybuild process to finish, then try again"],
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class Layout:
    """An OCI image layout on disk."""

    def __init__(self, root: Path | str, label: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.label = label or f"oci:{self.root}"
        self.blobs = BlobStore(self.root, self.label)
        self.private = PrivateArea(self.root)
        self._gc_lock_depth = 0
        self._gc_lock_fd: int | None = None

    # --- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | str, label: str | None = None) -> Layout:
        layout = cls(root, label)
        marker = layout.root / "oci-layout"
        try:
            raw = marker.read_bytes()
        except FileNotFoundError:
            if not layout.root.exists():
                raise LayoutError(f"{layout.label} does not exist") from None
            raise LayoutError(f"{layout.label} is not an OCI image layout: oci-layout is missing") from None
        except OSError as exc:
            raise LayoutError(f"cannot read {layout.label}: {exc.strerror or exc}") from None
        OciLayoutFile.parse(raw, f"{layout.label}: oci-layout")
        return layout

    @classmethod
    def create(cls, root: Path | str, label: str | None = None) -> Layout:
        """Open the layout at ``root``, making an empty one first where there is none."""
        layout = cls(root, label)
        if (layout.root / "oci-layout").exists():
            return cls.open(root, label)
        try:
            layout.root.mkdir(parents=True, exist_ok=True)
            (layout.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            # under the index lock: another process making the same layout may already have tagged
            # an image in it (an empty index.json written after that would drop its tag)
            with layout._locked("index.lock", fcntl.LOCK_EX, LOCK_TIMEOUT):
                if not (layout.root / "index.json").exists():
                    layout._write_atomic("index.json", dump_json(Index.build([]).to_dict()))
            layout._write_atomic(
                "oci-layout", dump_json({"imageLayoutVersion": mediatype.OCI_LAYOUT_VERSION})
            )
        except OSError as exc:
            raise LayoutError(f"cannot create {layout.label}: {exc.strerror or exc}") from None
        return layout

    def _write_atomic(self, name: str, data: bytes) -> None:
        path, f = temp_file(self.root, name)
        try:
            with f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(path, 0o644)
            os.rename(path, self.root / name)
            fsync_dir(self.root)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            raise LayoutError(f"cannot write {name} in {self.label}: {exc.strerror or exc}") from None

    # --- locks ---------------------------------------------------------------------------------
    def _lock_fd(self, name: str) -> int:
        try:
            self.private.root.mkdir(exist_ok=True)
            return os.open(self.private.lock(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LayoutError(f"cannot lock {self.label}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def _locked(self, name: str, mode: int, timeout: float) -> Iterator[None]:
        fd = self._lock_fd(name)
        try:
            _acquire(fd, mode, timeout, self.label)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextlib.contextmanager
    def writing(self, timeout: float = LOCK_TIMEOUT) -> Iterator[Layout]:
        """Hold while putting blobs and referencing them: gc waits until every writer is done."""
        if self._gc_lock_depth == 0:
            fd = self._lock_fd("gc.lock")
            try:
                _acquire(fd, fcntl.LOCK_SH, timeout, self.label)
            except BaseException:
                os.close(fd)
                raise
            self._gc_lock_fd = fd
        self._gc_lock_depth += 1
        try:
            yield self
        finally:
            self._gc_lock_depth -= 1
            if self._gc_lock_depth == 0 and self._gc_lock_fd is not None:
                os.close(self._gc_lock_fd)
                self._gc_lock_fd = None

    def exclusive(self, timeout: float = LOCK_TIMEOUT) -> contextlib.AbstractContextManager[None]:
        """No writer at all while held (gc)."""
        return self._locked("gc.lock", fcntl.LOCK_EX, timeout)

    # --- index.json ----------------------------------------------------------------------------
    def read_index(self) -> Index:
        try:
            raw = (self.root / "index.json").read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.label} is not an OCI image layout: index.json is missing") from None
        except OSError as exc:
            raise LayoutError(f"cannot read index.json of {self.label}: {exc.strerror or exc}") from None
        try:
            # index.json lists every tag of a store: allowed to grow past a manifest's limit
            return Index.parse(raw, f"index.json of {self.label}", limit=INDEX_JSON_LIMIT)
        except InvalidDocument as exc:
            raise InvalidDocument(str(exc)) from None

    def update_index(self, change: Callable[[list[Descriptor]], list[Descriptor]]) -> Index:
        """Read index.json, pass its manifests through ``change``, write it back: atomic and serialised."""
        with self._locked("index.lock", fcntl.LOCK_EX, LOCK_TIMEOUT):
            index = self.read_index()
            manifests = change(list(index.manifests))
            if manifests == index.manifests and [m.annotations for m in manifests] == [
                m.annotations for m in index.manifests
            ]:
                return index
            new = index.with_manifests(manifests)
            self._write_atomic("index.json", new.to_bytes())
            return new

    # --- tags ----------------------------------------------------------------------------------
    def tags(self) -> list[tuple[str, Descriptor]]:
        return [
            (d.annotations[REF_NAME], d) for d in self.read_index().manifests if REF_NAME in d.annotations
        ]

    def resolve(self, tag: str) -> Descriptor:
        """The descriptor tagged ``tag`` (the org.opencontainers.image.ref.name annotation)."""
        found = [d for name, d in self.tags() if name == tag]
        if not found:
            raise ImageNotFound(f"no image tagged {tag!r} in {self.label}")
        return found[-1]

    def set_tag(self, tag: str, descriptor: Descriptor, annotations: dict[str, Any] | None = None) -> None:
        """Point ``tag`` at ``descriptor``, replacing whatever it named before."""
        tagged = descriptor.with_annotations({**descriptor.annotations, **(annotations or {}), REF_NAME: tag})

        def change(manifests: list[Descriptor]) -> list[Descriptor]:
            return [m for m in manifests if m.ref_name != tag] + [tagged]

        self.update_index(change)

    def remove_tag(self, tag: str) -> Descriptor:
        removed: list[Descriptor] = []

        def change(manifests: list[Descriptor]) -> list[Descriptor]:
            removed.extend(m for m in manifests if m.ref_name == tag)
            return [m for m in manifests if m.ref_name != tag]

        self.update_index(change)
        if not removed:
            raise ImageNotFound(f"no image tagged {tag!r} in {self.label}")
        return removed[-1]

    def __repr__(self) -> str:
        return f"Layout({str(self.root)!r})"
