"""Bearer tokens and dropped connections: a small proxy in front of the real registry, and the real
registry's own ``auth: token:`` mode trusting a test token server (tokenserver.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.images import make_busybox_image

from pybuild.errors import AuthError, DigestMismatch, RegistryError
from pybuild.layout import Layout, load_image
from pybuild.remote import parse_registry_reference, pull, push
from pybuild.remote.registry import Registry

from .conftest import RegistryServer, check
from .proxy import Proxy
from .tokenserver import SERVICE, TokenServer

pytestmark = pytest.mark.slow


def test_bearer_token_flow(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    with Proxy(registry.host, bearer=True) as proxy:
        target = parse_registry_reference(f"{proxy.host}/team/app:v1")
        with pytest.raises(AuthError, match=f"registry {proxy.host}: pushing team/app:v1: .*refused"):
            push(src, desc, target, creds="alice:wrong")
        assert push(src, desc, target, creds="alice:s3cret") == desc.digest
        scopes = {q.get("scope") for q in proxy.token_requests}
        assert "repository:team/app:pull,push" in scopes
        assert all(q.get("service") == "fake-registry" for q in proxy.token_requests)
        out = Layout.create(tmp_path / "out")
        assert pull(target, out, "v1", creds="alice:s3cret").digest == desc.digest
        assert "repository:team/app:pull" in {q.get("scope") for q in proxy.token_requests}
        check(out.root, "v1")


def test_dropped_connection_is_retried(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    push(src, desc, parse_registry_reference(f"{registry.host}/app:v1"))
    with Proxy(registry.host, drop_blobs=1) as proxy:
        out = Layout.create(tmp_path / "out")
        got = pull(parse_registry_reference(f"{proxy.host}/app:v1"), out, "v1")
        assert got.digest == desc.digest
        assert proxy.dropped == 1
        check(out.root, "v1")


def test_drops_beyond_the_retry_limit_leave_the_store_consistent(
    registry: RegistryServer, tmp_path: Path
) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    push(src, desc, parse_registry_reference(f"{registry.host}/app:v1"))
    layer = load_image(src, desc).layers[0]
    with Proxy(registry.host, drop_blobs=100) as proxy:
        out = Layout.create(tmp_path / "out")
        before = (out.root / "index.json").read_bytes()
        target = parse_registry_reference(f"{proxy.host}/app:v1")
        with pytest.raises(RegistryError, match=f"registry {proxy.host}: pulling app:v1: blob .* dropped"):
            pull(target, out, "v1", registry=Registry(proxy.host, attempts=2))
        assert (out.root / "index.json").read_bytes() == before
        assert not out.blobs.exists(layer.digest)
        assert not any((out.root / ".pybuild" / "tmp").iterdir())
        proxy.drop_blobs = 0
        assert pull(target, out, "v1").digest == desc.digest
        check(out.root, "v1")


def test_tampered_manifest_is_rejected(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    push(src, desc, parse_registry_reference(f"{registry.host}/app:v1"))
    with Proxy(registry.host, tamper_manifests=True) as proxy:
        out = Layout.create(tmp_path / "out")
        before = (out.root / "index.json").read_bytes()
        with pytest.raises(
            DigestMismatch, match=f"registry {proxy.host}: pulling app:v1: manifest has digest"
        ):
            pull(parse_registry_reference(f"{proxy.host}/app:v1"), out, "v1")
        with pytest.raises(DigestMismatch, match=f"expected {desc.digest}"):
            pull(parse_registry_reference(f"{proxy.host}/app@{desc.digest}"), out, "v1")
        assert (out.root / "index.json").read_bytes() == before
        assert not any(out.blobs.digests())


def test_chunked_upload_uses_patch_and_pull_skips_present_blobs(
    registry: RegistryServer, tmp_path: Path
) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    layer = load_image(src, desc).layers[0]
    with Proxy(registry.host) as proxy:
        target = parse_registry_reference(f"{proxy.host}/app:v1")
        push(src, desc, target, chunked_threshold=layer.size, chunk_size=256 << 10)
        patches = [p for m, p in proxy.requests if m == "PATCH"]
        assert len(patches) == -(-layer.size // (256 << 10))  # the layer only, in 256 KiB chunks
        puts = [p for m, p in proxy.requests if m == "PUT" and "/blobs/uploads/" in p]
        assert len(puts) == 2  # config monolithic, layer closing the chunked upload
        out = Layout.create(tmp_path / "out")
        pull(target, out, "v1")
        proxy.requests.clear()
        events: list[str] = []
        assert pull(target, out, "v2", progress=lambda e, d, n: events.append(e)).digest == desc.digest
        assert set(events) == {"skip"}
        assert not [p for m, p in proxy.requests if "/blobs/" in p]
        check(out.root, "v2")


def test_blob_redirects_are_followed_without_credentials(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    with Proxy(registry.host, bearer=True) as proxy:
        target = parse_registry_reference(f"{proxy.host}/app:v1")
        push(src, desc, target, creds="alice:s3cret")
        proxy.redirect_blobs = True
        out = Layout.create(tmp_path / "out")
        assert pull(target, out, "v1", creds="alice:s3cret").digest == desc.digest
        check(out.root, "v1")


def test_dropped_upload_starts_a_new_session(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    with Proxy(registry.host) as proxy:
        proxy.drop_uploads = 1
        events: list[str] = []
        target = parse_registry_reference(f"{proxy.host}/app:v1")
        assert push(src, desc, target, progress=lambda e, d, n: events.append(e), workers=1) == desc.digest
        assert proxy.drop_uploads == 0
        assert "restart" in events
        proxy.drop_uploads = 100
        with pytest.raises(RegistryError, match="connection dropped"):
            push(src, desc, parse_registry_reference(f"{proxy.host}/other:v1"), mount_from=None)
    out = tmp_path / "out"
    from .conftest import skopeo

    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/app:v1", f"oci:{out}:t")
    check(out, "t")


def test_token_auth_with_the_real_registry(
    token_registry: tuple[RegistryServer, TokenServer], tmp_path: Path
) -> None:
    server, tokens = token_registry
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    target = parse_registry_reference(f"{server.host}/team/app:v1")
    with pytest.raises(AuthError, match="token server refused"):
        push(src, desc, target, creds="alice:wrong")
    assert push(src, desc, target, creds="alice:s3cret") == desc.digest
    assert ["repository:team/app:pull,push"] in [q.get("scope") for q in tokens.requests]
    assert all(q.get("service") == [SERVICE] for q in tokens.requests)
    out = Layout.create(tmp_path / "out")
    assert pull(target, out, "v1", creds="alice:s3cret").digest == desc.digest
    check(out.root, "v1")
    # a cross-repository mount asks for both scopes
    push(
        src,
        desc,
        parse_registry_reference(f"{server.host}/team/copy:v1"),
        creds="alice:s3cret",
        mount_from="team/app",
    )
    assert ["repository:team/copy:pull,push", "repository:team/app:pull"] in [
        q.get("scope") for q in tokens.requests
    ]
