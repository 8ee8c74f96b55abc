"""Bearer tokens and dropped connections, through a small proxy in front of the real registry.

The real registry's ``auth: token:`` mode needs a signing certificate bundle; the bearer flow is
tested against this proxy instead, which issues a 401 Bearer challenge and checks the token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.images import make_busybox_image

from pybuild.errors import AuthError, RegistryError
from pybuild.layout import Layout, load_image
from pybuild.remote import parse_registry_reference, pull, push
from pybuild.remote.registry import Registry

from .conftest import RegistryServer, check
from .proxy import Proxy

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
