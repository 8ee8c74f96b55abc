"""A registry that misbehaves in every way we know of: each ends in one error line, no traceback,
in bounded time, with nothing tagged or written, and the store still working.

Bounded: each command runs with PYBUILD_REGISTRY_DEADLINE=3 and a generous subprocess timeout that
it must not reach; no test asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pybuild.layout import Layout, check_layout

from .hostile import BASIC, HostileRegistry

PYBUILD = str(Path(sys.executable).parent / "pybuild")

# mode -> a fragment of the one error line
EXPECTED = {
    "garbage-status": "invalid HTTP answer: bad status line",
    "many-headers": "invalid HTTP answer: got more than 100 headers",
    "long-header": "invalid HTTP answer: a line longer than 64 KiB",
    "bad-chunked": "invalid HTTP answer: broken chunked encoding",
    "bad-content-length": "invalid",
    "content-length-lie": "connection dropped (the body ended after",
    "trickle": "no complete answer within 3s",
    "trickle-headers": "no complete answer within 3s",
    "silent": "no complete answer within 3s",
    "deep-json": "nests too deeply",
    "huge-manifest": "larger than the limit of 4194304",
    "config-not-json": "invalid JSON",
    "unknown-layer-type": "has unknown media type 'application/x-foo'",
    "unknown-config-type": "has unknown media type 'application/x-not-a-config'",
    "diff-ids-mismatch": "1 layers but its config has 2 diff_ids",
    "bad-digest": "is corrupt: content has digest",
    "blob-too-long": "is larger than",
    "manifest-digest-lie": "registry says sha256:",
    "redirect-ftp": "refused a redirect to 'ftp://",
    "redirect-loop": "too many redirects",
    "basic-loop": "invalid username or password",
    "bearer-loop": "denied: the token was refused",
    "bad-token": "the token server sent no valid token",
    "error-escapes": "manifest unknown",
}


class Cli:
    """The real console script over a store that holds one image, with a private TMPDIR."""

    def __init__(self, tmp: Path, busybox_layout: Path) -> None:
        self.store = tmp / "store"
        self.tmpdir = tmp / "tmpdir"
        self.tmpdir.mkdir()
        self("copy", f"oci:{busybox_layout}", "localhost/base")

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PYBUILD_STORE": str(self.store),
            "TMPDIR": str(self.tmpdir),
            "PYBUILD_REGISTRY_DEADLINE": "3",
        }
        return subprocess.run(
            [PYBUILD, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def snapshot(self) -> tuple[bytes, set[str], set[str]]:
        blobs = {str(p.relative_to(self.store)) for p in (self.store / "blobs").rglob("*") if p.is_file()}
        tmp = self.store / ".pybuild" / "tmp"
        temp = {p.name for p in tmp.iterdir()} if tmp.is_dir() else set()
        return (self.store / "index.json").read_bytes(), blobs, temp

    def images(self) -> list[str]:
        proc = self("images", "--json")
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return [i["name"] for i in json.loads(proc.stdout)]


def one_error_line(proc: subprocess.CompletedProcess[str], fragment: str, status: int = 1) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert all(line.startswith("hint: ") for line in lines[1:]), proc.stderr
    assert fragment in lines[0], lines[0]
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    return lines[0]


@pytest.fixture
def cli(tmp_path: Path, busybox_layout: Path) -> Cli:
    return Cli(tmp_path, busybox_layout)


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_hostile_pull_fails_cleanly(cli: Cli, mode: str) -> None:
    before = cli.snapshot()
    with HostileRegistry(mode) as server:
        proc = cli("pull", "--creds", "alice:s3cret", f"{server.host}/app:v1")
    line = one_error_line(proc, EXPECTED[mode])
    assert f"{server.host}" in line
    assert cli.snapshot() == before  # nothing tagged, no blob, no temp file left
    assert list(cli.tmpdir.iterdir()) == []  # nothing written outside the store either
    assert cli.images() == ["localhost/base:latest"]
    assert check_layout(Layout.open(cli.store)) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode", ["config-not-json", "unknown-layer-type", "diff-ids-mismatch", "bad-digest", "deep-json"]
)
def test_hostile_copy_into_a_layout_names_nothing(cli: Cli, tmp_path: Path, mode: str) -> None:
    out = tmp_path / "out"
    with HostileRegistry(mode) as server:
        proc = cli("copy", f"docker://{server.host}/app:v1", f"oci:{out}:v1")
        inspected = cli("inspect", f"docker://{server.host}/app:v1")
    one_error_line(proc, EXPECTED[mode])
    if mode != "bad-digest":  # inspect reads no layer
        one_error_line(inspected, EXPECTED[mode])
    if out.exists():
        layout = Layout.open(out)
        assert layout.tags() == []
        assert list(layout.blobs.digests()) == []
    assert list(cli.tmpdir.iterdir()) == []


@pytest.mark.slow
def test_redirect_to_another_host_gets_no_credentials(cli: Cli) -> None:
    with (
        HostileRegistry("serve-blobs") as other,
        HostileRegistry("redirect-foreign", need_auth=True, other=other) as server,
    ):
        denied = cli("pull", f"{server.host}/app:v1")
        one_error_line(denied, "authentication required")
        proc = cli("pull", "--creds", "alice:s3cret", f"{server.host}/app:v1")
    assert proc.returncode == 0, proc.stderr
    assert [h.get("authorization") for _, _, h in other.requests] == [None]  # the blob, and no creds
    assert BASIC in [h.get("authorization") for _, _, h in server.requests]
    assert f"{server.host}/app:v1" in cli.images()
    assert check_layout(Layout.open(cli.store)) == []


@pytest.mark.slow
def test_broken_image_in_the_store_does_not_take_the_store_down(cli: Cli, busybox_layout: Path) -> None:
    """An image an older pybuild let in (a config that is not JSON), or one damaged on disk: the
    rest still lists, inspects, is removed and collected."""
    with HostileRegistry("serve-blobs") as server:
        pass
    store = Layout.open(cli.store)
    config = b"not JSON {"
    manifest_raw = server.image.manifest.replace(
        json.loads(server.image.manifest)["config"]["digest"].encode(),
        f"sha256:{__import__('hashlib').sha256(config).hexdigest()}".encode(),
    )
    manifest = json.loads(manifest_raw)
    manifest["config"]["size"] = len(config)
    with store.writing():
        store.blobs.put(config)
        layer = server.image.blobs[server.image.layer_digest]
        store.blobs.put(layer)
        raw = json.dumps(manifest).encode()
        digest, size = store.blobs.put(raw)
        from pybuild.layout import Descriptor

        store.set_tag(
            "localhost/broken:v1", Descriptor("application/vnd.oci.image.manifest.v1+json", digest, size)
        )
    cli("copy", f"oci:{busybox_layout}", "localhost/other")
    listed = cli("images", "--json")
    assert listed.returncode == 0
    assert [i["name"] for i in json.loads(listed.stdout)] == [
        "localhost/base:latest",
        "localhost/other:latest",
    ]
    assert listed.stderr.startswith("warning: localhost/broken:v1 is broken: ")
    assert cli("inspect", "localhost/other").returncode == 0
    one_error_line(cli("inspect", "localhost/broken:v1"), "invalid JSON")
    assert cli("rm", "localhost/other").returncode == 0
    collected = cli("gc")
    assert collected.returncode == 0, collected.stderr
    assert cli("rm", "localhost/broken:v1").returncode == 0
    assert cli("gc").returncode == 0
    assert cli.images() == ["localhost/base:latest"]
    assert check_layout(Layout.open(cli.store)) == []
