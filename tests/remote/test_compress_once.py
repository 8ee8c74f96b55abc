"""Compress once: the blob-info cache keeps a push of an unchanged image, or a copy or rebuild into an
OCI layout, from compressing or uploading a layer again; a stale entry costs only a recompression."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest
from fixtures.cli import base_store
from fixtures.images import make_config, put_layer
from fixtures.tools import validate_layout

import pybuild.remote.recompress as recompress_module
from pybuild.layout import BlobInfoCache, ImageStore, Layout, commit_image, load_image
from pybuild.remote import copy_image

from .conftest import RegistryServer, check, skopeo
from .proxy import Proxy

pytestmark = pytest.mark.slow
# (the package's `push` function hides the module of the same name from attribute access)
push_module = importlib.import_module("pybuild.remote.registry.push")


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (pybuild's private area aside): (inode, mtime_ns)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and ".pybuild" not in path.parts:
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns)
    return out


@pytest.fixture
def compressions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the layers pybuild compresses (its own function, wrapped: it still runs)."""
    calls: list[str] = []
    real = recompress_module.compress

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[1].digest))
        return real(*args, **kwargs)

    monkeypatch.setattr(recompress_module, "compress", counting)
    monkeypatch.setattr(push_module, "compress", counting)
    return calls


@pytest.fixture
def plain_store(tmp_path: Path, busybox_tar: bytes) -> ImageStore:
    """A store holding localhost/plain: one uncompressed layer, as a build leaves it."""
    store = ImageStore.at(tmp_path / "store")
    with store.writing():
        layer, diff_id = put_layer(store, busybox_tar, compression="none")
        desc = commit_image(store, make_config([diff_id]), [layer])
        store.set_tag("localhost/plain:latest", desc)
    return store


def test_layouts_reuse_what_was_compressed(
    plain_store: ImageStore, compressions: list[str], tmp_path: Path
) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    first = copy_image("localhost/plain", f"oci:{a}:t", store=plain_store)
    assert len(compressions) == 1
    validate_layout(a, "t")
    before = files(a)
    # again into the same layout: nothing compressed, nothing written
    assert copy_image("localhost/plain", f"oci:{a}:t", store=plain_store) == first
    assert len(compressions) == 1 and files(a) == before
    # into another layout: the gzip blob is copied from the first, verified, not compressed again
    assert copy_image("localhost/plain", f"oci:{b}:t", store=plain_store).digest == first.digest
    assert len(compressions) == 1
    validate_layout(b, "t")
    # damaged where the cache points (same size, other bytes): detected, compressed anew
    layer = load_image(Layout.open(a), first).layers[0]
    for layout in (a, b):
        path = layout / "blobs" / "sha256" / layer.digest.encoded
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    assert copy_image("localhost/plain", f"oci:{c}:t", store=plain_store).digest == first.digest
    assert len(compressions) == 2
    validate_layout(c, "t")


def test_a_stale_entry_costs_a_recompression(
    plain_store: ImageStore, compressions: list[str], tmp_path: Path
) -> None:
    image = load_image(plain_store, plain_store.resolve("localhost/plain:latest"))
    cache = BlobInfoCache(plain_store.root)
    bogus = image.config.diff_ids[0].of_bytes(b"no such blob")
    cache.record_compressed(image.config.diff_ids[0], "gzip-6", bogus, 1234)
    out = copy_image("localhost/plain", f"oci:{tmp_path}/x:t", store=plain_store)
    assert len(compressions) == 1
    validate_layout(tmp_path / "x", "t")
    assert load_image(Layout.open(tmp_path / "x"), out).layers[0].digest != bogus
    assert cache.compressed(image.config.diff_ids[0], "gzip-6").digest != bogus  # type: ignore[union-attr]


def test_second_push_compresses_and_uploads_nothing(
    plain_store: ImageStore, compressions: list[str], registry: RegistryServer, tmp_path: Path
) -> None:
    with Proxy(registry.host) as proxy:
        first = copy_image("localhost/plain", f"docker://{proxy.host}/plain:v1", store=plain_store)
        assert len(compressions) == 1
        proxy.requests.clear()
        again = copy_image("localhost/plain", f"docker://{proxy.host}/plain:v1", store=plain_store)
        assert again == first and len(compressions) == 1
        methods = {(m, p.split("?")[0].rsplit("/", 1)[0]) for m, p in proxy.requests}
        assert methods == {("HEAD", "/v2/plain/blobs"), ("PUT", "/v2/plain/manifests")}, proxy.requests
        # another repository of the same registry: mounted, neither compressed nor uploaded
        proxy.requests.clear()
        other = copy_image("localhost/plain", f"docker://{proxy.host}/other:v1", store=plain_store)
        assert other == first and len(compressions) == 1
        assert any(m == "POST" and "mount=" in p for m, p in proxy.requests)
        assert not [p for m, p in proxy.requests if m in ("PUT", "PATCH") and "/uploads/" in p]
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/other:v1", f"oci:{tmp_path}/sk:t")
    check(tmp_path / "sk", "t")
    # the registry lost the blob (a stale entry): pushed again, after compressing it again
    layer = load_image(Layout.open(tmp_path / "sk"), Layout.open(tmp_path / "sk").resolve("t")).layers[0]
    blob_dir = registry.storage / "docker/registry/v2/blobs/sha256" / layer.digest.encoded[:2]
    for path in sorted(blob_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    copy_image("localhost/plain", f"docker://{registry.host}/third:v1", store=plain_store)
    assert len(compressions) == 2
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/third:v1", f"oci:{tmp_path}/sk3:t")
    check(tmp_path / "sk3", "t")


def test_no_change_rebuild_into_a_layout_writes_nothing(tmp_path: Path) -> None:
    tool = base_store(tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text('FROM busybox\nRUN echo built > /built\nCMD ["/bin/sh"]\n')
    out = tmp_path / "out"
    tool.build(ctx, None, f"oci:{out}:t")
    validate_layout(out, "t")
    before = files(out)
    tool.build(ctx, None, f"oci:{out}:t")
    assert files(out) == before
    assert not os.listdir(out / ".pybuild" / "tmp") if (out / ".pybuild" / "tmp").exists() else True
