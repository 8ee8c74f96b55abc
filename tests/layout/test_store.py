from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pybuild.errors import BlobNotFound, DigestMismatch
from pybuild.layout import Digest, Layout
from pybuild.layout import store as store_module
from pybuild.layout.store import WRITEBACK


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    digest, size = layout.blobs.put(b"hello")
    assert str(digest) == "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert size == 5
    path = tmp_path / "l" / "blobs" / "sha256" / digest.encoded
    assert path.read_bytes() == b"hello"
    assert layout.blobs.put(io.BytesIO(b"hello")) == (digest, 5)
    assert not any((tmp_path / "l" / ".pybuild" / "tmp").iterdir()), "no temp file left behind"
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
