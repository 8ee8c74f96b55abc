"""Auth files, challenges and credentials (no network)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pybuild.errors import AuthError, UsageError
from pybuild.remote import Credentials, auth_files, find_credentials, remove_credentials, store_credentials
from pybuild.remote.auth import parse_challenge


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="basic-realm"') == ("basic", {"realm": "basic-realm"})


def test_credentials() -> None:
    assert Credentials.parse("u:p:with:colons") == Credentials("u", "p:with:colons")
    with pytest.raises(UsageError):
        Credentials.parse("nocolon")
    assert "secret" not in repr(Credentials("u", "secret"))


def test_store_find_remove(isolated_auth: Path, tmp_path: Path) -> None:
    path = store_credentials("reg.example:5000", Credentials("alice", "pw"))
    assert path == tmp_path / "run" / "containers" / "auth.json"
    doc = json.loads(path.read_text())
    assert doc == {"auths": {"reg.example:5000": {"auth": base64.b64encode(b"alice:pw").decode()}}}
    assert path.stat().st_mode & 0o077 == 0
    assert find_credentials("reg.example:5000") == Credentials("alice", "pw")
    assert remove_credentials("reg.example:5000") is True
    assert find_credentials("reg.example:5000") is None


def test_search_order_and_bad_files(
    isolated_auth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = auth_files()
    assert files[0] == tmp_path / "run" / "containers" / "auth.json"
    assert files[-1] == isolated_auth / ".docker" / "config.json"
    config = isolated_auth / ".config" / "containers" / "auth.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"auths": {"r.example": {"auth": "!!!"}}}')
    with pytest.raises(AuthError, match=f"auth file {config}: entry 'r.example' is not base64"):
        find_credentials("r.example")
    explicit = tmp_path / "explicit.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    store_credentials("r.example", Credentials("x", "y"))
    assert find_credentials("r.example") == Credentials("x", "y")  # the explicit file comes first
    config.write_text("not json")
    assert find_credentials("r.example") == Credentials("x", "y")
    with pytest.raises(AuthError, match="is not valid JSON"):
        find_credentials("other.example")
