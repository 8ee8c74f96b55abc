"""Registries for the remote tests: Debian's docker-registry (CNCF distribution) on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pybuild.layout import Layout, check_layout

from .tokenserver import ISSUER, SERVICE, TokenServer


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run scripts/setup.sh (Debian package providing {tool})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RegistryServer:
    host: str  # 127.0.0.1:PORT
    storage: Path
    process: subprocess.Popen[bytes]
    log: Path

    def blob_path(self, digest: str) -> Path:
        algorithm, encoded = digest.split(":")
        return self.storage / "docker/registry/v2/blobs" / algorithm / encoded[:2] / encoded / "data"


def start_registry(
    tmp: Path, htpasswd: Path | None = None, tls: tuple[Path, Path] | None = None, auth: str = ""
) -> RegistryServer:
    binary = require("docker-registry")
    port = free_port()
    storage = tmp / "storage"
    storage.mkdir(parents=True)
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: basic-realm\n    path: {htpasswd}\n"
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + auth
    )
    log = tmp / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    context = ssl._create_unverified_context()
    scheme = "https" if tls else "http"
    while True:
        try:
            urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/v2/", timeout=1, context=context)
            break
        except urllib.error.HTTPError:
            break  # 401: up, with auth
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"docker-registry did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
    return RegistryServer(f"127.0.0.1:{port}", storage, process, log)


def stop_registry(server: RegistryServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(5)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path / "registry")
    yield server
    stop_registry(server)


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    require("htpasswd")
    htpasswd = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), "alice", "s3cret"], check=True, capture_output=True)
    server = start_registry(tmp_path / "registry", htpasswd)
    yield server
    stop_registry(server)


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry on https with a self-signed certificate made by openssl."""
    openssl = require("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = start_registry(tmp_path / "registry", tls=(cert, key))
    yield server
    stop_registry(server)


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[RegistryServer, TokenServer]]:
    """docker-registry in ``auth: token:`` mode, trusting the test's TokenServer."""
    with TokenServer(require("openssl"), tmp_path) as tokens:
        auth = (
            "auth:\n  token:\n"
            f"    realm: {tokens.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {tokens.cert}\n"
        )
        server = start_registry(tmp_path / "registry", auth=auth)
        yield server, tokens
        stop_registry(server)


@pytest.fixture(autouse=True)
def isolated_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Credentials never come from the user's real files."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def check(layout_dir: Path, tag: str) -> None:
    """pybuild's check and oci-image-tool's validation of a layout."""
    problems = check_layout(Layout.open(layout_dir))
    assert problems == [], problems
    tool = require("oci-image-tool")
    result = subprocess.run(
        [tool, "validate", "--type", "image", "--ref", f"name={tag}", str(layout_dir)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require("skopeo")
    result = subprocess.run([tool, "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"skopeo {' '.join(args)}: {result.stderr}"
    return result
