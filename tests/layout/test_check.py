"""``check_layout`` (every problem under index.json) and ``gc`` (unreferenced blobs, stale temp files)."""

from __future__ import annotations

import os
from pathlib import Path

from pybuild.layout import Layout, check_layout, gc, load_image
from tests.fixtures.images import make_image
from tests.fixtures.tools import validate_layout


def test_a_clean_layout_has_no_problems(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    make_image(layout, [busybox_tar], "v1")
    assert check_layout(layout) == []
    validate_layout(tmp_path / "l", "v1")


def test_every_problem_is_named(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    desc = make_image(layout, [busybox_tar, b"\0" * 1024], "v1")
    image = load_image(layout, desc)
    blobs = tmp_path / "l" / "blobs" / "sha256"
    (blobs / image.layers[0].digest.encoded).unlink()  # missing
    flipped = bytearray((blobs / image.layers[1].digest.encoded).read_bytes())
    flipped[-1] ^= 1
    (blobs / image.layers[1].digest.encoded).write_bytes(bytes(flipped))  # corrupt
    problems = check_layout(layout)
    assert len(problems) == 2, problems
    assert any(str(image.layers[0].digest) in p for p in problems)
    assert any(str(image.layers[1].digest) in p for p in problems)


def test_gc_sweeps_unreferenced_blobs_and_stale_temp_files(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    desc = make_image(layout, [busybox_tar], "keep")
    stray, _ = layout.blobs.put(b"nobody references me")
    stale = tmp_path / "l" / ".pybuild" / "tmp" / "blob-999999999-abcdef"
    stale.write_bytes(b"half")
    live = tmp_path / "l" / ".pybuild" / "tmp" / f"blob-{os.getpid()}-abcdef"
    live.write_bytes(b"in progress")
    result = gc(layout)
    assert result.removed == [stray]
    assert result.temp_files == 1
    assert not stale.exists() and live.exists()
    assert layout.resolve("keep") == desc
    validate_layout(tmp_path / "l", "keep")
    layout.remove_tag("keep")
    assert len(gc(layout).removed) == 3  # manifest, config, layer
    assert list(layout.blobs.digests()) == []


def test_gc_keeps_what_a_broken_manifest_names_and_sweeps_the_rest(
    tmp_path: Path, busybox_tar: bytes
) -> None:
    """One damaged image does not stop gc: it keeps the broken document and every digest its bytes
    spell out, reports it, and collects everything else."""
    layout = Layout.create(tmp_path / "l")
    desc = make_image(layout, [busybox_tar], "x")
    raw = layout.blobs.read(desc.digest)
    named = {d for d in layout.blobs.digests() if str(d).encode() in raw}
    assert len(named) == 2  # config and layer
    path = tmp_path / "l" / "blobs" / "sha256" / desc.digest.encoded
    path.write_bytes(raw[:-1])  # truncated: not JSON, not its digest, but still names its blobs
    stray, _ = layout.blobs.put(b"nobody references me")
    result = gc(layout)
    assert result.removed == [stray]
    assert len(result.problems) == 1 and str(desc.digest) in result.problems[0]
    assert set(layout.blobs.digests()) == named | {desc.digest}
    path.write_bytes(b"{}")  # names nothing: its config and layer go, the manifest stays
    result = gc(layout)
    assert set(result.removed) == named
    assert set(layout.blobs.digests()) == {desc.digest}
