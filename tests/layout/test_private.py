"""The store's private area (``.pybuild/``): its paths, which existing stores already use, and its gc."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path

import pytest

from pybuild.layout import Descriptor, Digest, Index, Layout, PrivateArea, mediatype
from pybuild.run import force_remove
from tests.fixtures.images import make_image, tar_tree
from tests.fixtures.locks import wait_for, waiters
from tests.fixtures.tools import validate_layout


def test_paths_are_the_ones_existing_stores_have(tmp_path: Path) -> None:
    area = PrivateArea(tmp_path)
    diff_id = Digest("sha256", "ab" * 32)
    top = tmp_path / ".pybuild"
    assert area.root == top
    assert area.tmp == top / "tmp"
    assert area.lock("gc.lock") == top / "gc.lock"
    assert area.layer_dir(diff_id) == top / "layers" / ("ab" * 32)
    assert area.build_cache == top / "build-cache"
    assert area.workspaces == top / "build"
    assert area.cache_mounts == top / "cache-mounts"
    assert area.cache_mount("0f" * 16) == top / "cache-mounts" / ("0f" * 16)
    assert area.run_workspaces == top / "run"
    assert area.blob_info == top / "blob-info"
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(ValueError, match="bad cache mount name"):
            area.cache_mount(bad)


def test_a_layout_keeps_its_temp_files_and_locks_there(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    assert layout.private.root == tmp_path / "l" / ".pybuild"
    make_image(layout, [busybox_tar], "v1")
    assert sorted(p.name for p in layout.private.root.iterdir()) == ["gc.lock", "index.lock", "tmp"]
    assert list(layout.private.tmp.iterdir()) == []  # every temp file was renamed into place
    validate_layout(tmp_path / "l", "v1")


def _record(area: PrivateArea, key: str, record: object) -> Path:
    area.build_cache.mkdir(parents=True, exist_ok=True)
    path = area.build_cache / key
    path.write_text(json.dumps(record))
    return path


def _layer_dir(area: PrivateArea, diff_id: Digest) -> Path:
    path = area.layer_dir(diff_id)
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "f").write_text("x")
    os.chmod(path / "etc", 0o000)  # as a hostile layer leaves it: the remover copes
    return path


def test_sweep_keeps_what_images_and_records_use(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    area = layout.private
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "a.txt").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "b.txt").write_text("b")
    image = make_image(layout, [tar_tree(tmp_path / "a")], "tagged")
    other = make_image(layout, [tar_tree(tmp_path / "b")])  # untagged, reached through an index below
    index = Index.build([image, other])
    digest, size = layout.blobs.put(index.to_bytes())
    layout.set_tag("multi", Descriptor(mediatype.OCI_INDEX, digest, size))
    layout.remove_tag("tagged")
    used = [Digest.parse(d) for d in _diff_ids(layout, image) + _diff_ids(layout, other)]
    # a record whose blob is here keeps its layer; one whose blob is gone goes, and so does its layer
    kept_blob, kept_size = layout.blobs.put(b"a layer blob a record names")
    by_record = Digest("sha256", "1" * 64)
    orphan = Digest("sha256", "2" * 64)
    unused = Digest("sha256", "3" * 64)
    record = _record(
        area, "a" * 64, {"layer": {"digest": str(kept_blob)}, "diff_id": str(by_record), "history": {}}
    )
    gone = _record(area, "b" * 64, {"layer": {"digest": "sha256:" + "9" * 64}, "diff_id": str(orphan)})
    no_layer = _record(area, "c" * 64, {"layer": None, "history": {}})
    broken = area.build_cache / ("d" * 64)
    broken.write_text("{not json")
    dirs = {d: _layer_dir(area, d) for d in [*used, by_record, orphan, unused]}
    (area.workspaces / "step-stale" / "upper").mkdir(parents=True)
    (area.run_workspaces / "ctr-ended").mkdir(parents=True)  # no run holds it: swept
    running = contextlib.ExitStack()
    live = running.enter_context(area.run_workspace(layout))  # a run still going: kept
    removed: list[Path] = []

    def remove(path: Path) -> None:
        removed.append(path)
        force_remove(path)

    with running:
        result = area.sweep(layout, remove)
        assert live.is_dir()
    assert (result.records, result.layer_dirs, result.workspaces, result.run_workspaces) == (2, 2, 1, 1)
    assert record.exists() and no_layer.exists() and not gone.exists() and not broken.exists()
    ended = area.run_workspaces / "ctr-ended"
    assert sorted(removed) == sorted([dirs[orphan], dirs[unused], area.workspaces / "step-stale", ended])
    assert {p.name for p in area.layers.iterdir()} == {d.encoded for d in [*used, by_record]}
    assert layout.blobs.exists(kept_blob) and kept_size > 0
    validate_layout(tmp_path / "l")
    # nothing left to sweep: a second pass removes nothing
    again = area.sweep(layout, remove)
    assert (again.records, again.layer_dirs, again.workspaces, again.run_workspaces) == (0, 0, 0, 1)
    assert removed[-1] == live  # the run is over (its lock gone): its workspace is swept


def _diff_ids(layout: Layout, desc: Descriptor) -> list[str]:
    from pybuild.layout import load_image

    return [str(d) for d in load_image(layout, desc).config.diff_ids]


def test_sweep_temp_files_removes_those_of_dead_processes(tmp_path: Path) -> None:
    area = PrivateArea(tmp_path)
    area.tmp.mkdir(parents=True)
    dead = area.tmp / "blob-999999999-abcdef"
    mine = area.tmp / f"index.json-{os.getpid()}-abcdef"
    nameless = area.tmp / "stray"
    old = area.tmp / f"blob-{os.getpid()}-000000"
    for path in (dead, mine, nameless, old):
        path.write_bytes(b"x")
    os.utime(old, (0, 0))
    assert area.sweep_temp_files(3600.0) == 3
    assert sorted(area.tmp.iterdir()) == [mine]
    assert PrivateArea(tmp_path / "none").sweep_temp_files(3600.0) == 0


# --- cache mount sharing: flocks in .pybuild/cache-locks/ -----------------------------------------
def test_cache_mount_locked_makes_another_holder_wait_in_one_process(tmp_path: Path) -> None:
    """Two RUNs of one build (threads: --jobs) using one cache id follow the rules two processes
    do: a locked holder makes the next one wait until it lets go, whatever its sharing."""
    area = PrivateArea(tmp_path)
    events: list[str] = []
    first_in = threading.Event()
    release = threading.Event()

    def first() -> None:
        with area.cache_mount_held("c", "locked") as instance:
            events.append(f"first in {instance}")
            first_in.set()
            release.wait()
            events.append("first out")

    def second(sharing: str) -> None:
        with area.cache_mount_held("c", sharing) as instance:
            events.append(f"second in {instance}")

    for sharing in ("locked", "shared"):
        events.clear()
        first_in.clear()
        release.clear()
        one = threading.Thread(target=first, daemon=True)
        one.start()
        wait_for(first_in.is_set, "the first holder")
        two = threading.Thread(target=second, args=(sharing,), daemon=True)
        two.start()
        wait_for(lambda: waiters(area.cache_mount_lock("c")) == 1, "the second holder to wait")
        assert events == ["first in c"]
        release.set()
        one.join()
        two.join()
        assert events == ["first in c", "first out", "second in c"]


def test_cache_mount_private_takes_another_instance_when_in_use(tmp_path: Path) -> None:
    area = PrivateArea(tmp_path)
    with area.cache_mount_held("c", "private") as instance:
        assert instance == "c"  # free: the cache itself
    with area.cache_mount_held("c", "shared") as shared, area.cache_mount_held("c", "shared") as again:
        assert shared == again == "c"  # shared: one folder for all, at the same time
        with area.cache_mount_held("c", "private") as one, area.cache_mount_held("c", "private") as two:
            assert (one, two) == ("c-1", "c-2")  # never waits: a fresh instance each
    with area.cache_mount_held("c", "private") as instance:
        assert instance == "c"
    assert sorted(p.name for p in (tmp_path / ".pybuild" / "cache-locks").iterdir()) == ["c", "c-1", "c-2"]
    with pytest.raises(ValueError, match="bad cache sharing"), area.cache_mount_held("c", "exclusive"):
        pass


def test_a_forked_child_does_not_keep_a_cache_mount_locked(tmp_path: Path) -> None:
    """A RUN's keeper is forked while its cache is held: the lock goes when the holder lets go,
    even while the child still runs."""
    area = PrivateArea(tmp_path)
    read, write = os.pipe()
    ready_r, ready_w = os.pipe()
    with area.cache_mount_held("c", "locked"):
        child = os.fork()
        if child == 0:
            os.close(write)
            os.write(ready_w, b"x")  # the child runs: its fork handlers are done
            os.read(read, 1)  # until the parent says
            os._exit(0)
        os.read(ready_r, 1)
    for fd in (read, ready_r, ready_w):
        os.close(fd)
    try:
        fd = os.open(area.cache_mount_lock("c"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if the child held it
        finally:
            os.close(fd)
        assert os.waitpid(child, os.WNOHANG) == (0, 0)  # the child is still there
    finally:
        os.write(write, b"x")
        os.close(write)
        os.waitpid(child, 0)
