from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.errors import BlobNotFound, DigestMismatch, ImageNotFound, LayoutError
from pybuild.layout import Descriptor, Digest, Layout, gc
from pybuild.layout import store as store_module
from pybuild.layout.store import TMP_DIR, WRITEBACK
from tests.fixtures.images import make_image
from tests.fixtures.tools import validate_documents, validate_layout


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    digest, size = layout.blobs.put(b"hello")
    assert str(digest) == "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert size == 5
    path = tmp_path / "l" / "blobs" / "sha256" / digest.encoded
    assert path.read_bytes() == b"hello"
    assert layout.blobs.put(io.BytesIO(b"hello")) == (digest, 5)
    assert not any((tmp_path / "l" / TMP_DIR).iterdir()), "no temp file left behind"
    assert layout.blobs.read(digest) == b"hello"


def test_reads_are_verified(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    digest, _ = layout.blobs.put(b"hello world")
    path = tmp_path / "l" / "blobs" / "sha256" / digest.encoded
    path.write_bytes(b"hellO world")
    with pytest.raises(DigestMismatch, match=rf"^blob {digest} in oci:.* is corrupt: content has digest"):
        layout.blobs.read(digest)
    with pytest.raises(DigestMismatch, match="size 11, expected 12"):
        layout.blobs.read(digest, 12)
    with pytest.raises(DigestMismatch), layout.blobs.open(digest) as f:
        f.read()


def test_missing_blob(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    with pytest.raises(BlobNotFound, match="is missing"):
        layout.blobs.read(Digest("sha256", "0" * 64))


def test_writer_with_expected_digest_refuses_other_content(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    expected = Digest.of_bytes(b"right")
    with pytest.raises(DigestMismatch), layout.blobs.writer(expected=expected) as w:
        w.write(b"wrong")
    assert not layout.blobs.exists(expected)
    assert list(layout.blobs.digests()) == []


@pytest.mark.parametrize("available", [True, False])
def test_large_blob_starts_writeback_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, available: bool
) -> None:
    calls: list[tuple[int, int]] = []
    real = store_module._start_writeback

    def record(fd: int, offset: int, length: int) -> None:
        assert os.fstat(fd).st_size >= offset + length  # flushed to the file before the hint
        calls.append((offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(store_module, "_start_writeback", record)
    if not available:  # no sync_file_range in the C library: only the fsync at commit
        monkeypatch.setattr(store_module, "_sync_file_range", lambda: None)
    layout = Layout.create(tmp_path / "l")
    data = os.urandom(WRITEBACK // 3) * 8
    with layout.blobs.writer() as w:
        for pos in range(0, len(data), 100_000):
            w.write(data[pos : pos + 100_000])
    assert w.digest == Digest.of_bytes(data)
    assert layout.blobs.read(w.digest, limit=len(data)) == data
    assert len(calls) == 2 and calls[0][0] == 0 and calls[1][0] == sum(calls[0])
    assert all(length >= WRITEBACK for _, length in calls)


def test_sha256_hasher_is_shared_only_while_the_writer_is_fresh(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    with layout.blobs.writer() as w:
        hasher = w.sha256_hasher()
        assert hasher is not None
        w.write(b"abc")
        assert hasher.hexdigest() == Digest.of_bytes(b"abc").encoded  # reading leaves it usable
        assert w.sha256_hasher() is None
    assert w.digest == Digest.of_bytes(b"abc")
    with layout.blobs.writer("sha512") as w512:
        assert w512.sha256_hasher() is None


def test_layout_errors_name_the_layout(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"^oci:.*/nope does not exist$"):
        Layout.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(LayoutError, match="oci-layout is missing"):
        Layout.open(tmp_path / "plain")
    bad = Layout.create(tmp_path / "bad")
    (tmp_path / "bad" / "index.json").write_text(
        '{"schemaVersion": 2, "manifests": [{"digest": "sha256:../x"}]}'
    )
    with pytest.raises(LayoutError, match=r"index.json of oci:.*manifests\[0\]"):
        bad.read_index()


def test_tags(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    desc = make_image(layout, [busybox_tar], "v1")
    assert layout.resolve("v1") == desc
    layout.set_tag("v2", desc)
    layout.set_tag("v1", desc)  # re-tagging replaces, never duplicates
    assert sorted(t for t, _ in layout.tags()) == ["v1", "v2"]
    layout.remove_tag("v1")
    with pytest.raises(ImageNotFound):
        layout.resolve("v1")
    validate_layout(tmp_path / "l", "v2")
    validate_documents(tmp_path / "l")


def test_gc_sweeps_unreferenced_blobs_and_stale_temp_files(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    desc = make_image(layout, [busybox_tar], "keep")
    stray, _ = layout.blobs.put(b"nobody references me")
    stale = tmp_path / "l" / TMP_DIR / "blob-999999999-abcdef"
    stale.write_bytes(b"half")
    live = tmp_path / "l" / TMP_DIR / f"blob-{os.getpid()}-abcdef"
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


_tags = st.sampled_from(["a", "b", "c", "d"])
_ops = st.lists(st.tuples(st.sampled_from(["set", "rm"]), _tags, st.integers(0, 2)), max_size=15)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_index_updates_match_a_model(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:  # type: ignore[type-arg]
    layout = Layout.create(tmp_path_factory.mktemp("idx"))
    targets = [
        Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of_bytes(bytes([i])), i + 1)
        for i in range(3)
    ]
    model: dict[str, Descriptor] = {}
    for op, tag, n in ops:
        if op == "set":
            layout.set_tag(tag, targets[n])
            model[tag] = targets[n]
        elif tag in model:
            layout.remove_tag(tag)
            del model[tag]
        else:
            with pytest.raises(ImageNotFound):
                layout.remove_tag(tag)
    assert dict(layout.tags()) == model
    names = [t for t, _ in layout.tags()]
    assert len(names) == len(set(names))
