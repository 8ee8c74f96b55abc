"""`pybuild pull/push/copy/inspect/login/logout` end to end against docker-registry and skopeo."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import Layout

from .conftest import RegistryServer, skopeo


@pytest.mark.slow
def test_push_pull_inspect_through_the_cli(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "localhost/bb")
    pushed = pybuild_cli(
        "push", "localhost/bb", f"docker://{registry.host}/bb:v1", "--digestfile", str(tmp_path / "d")
    )
    digest = pushed.stdout.strip()
    assert (tmp_path / "d").read_text().strip() == digest
    assert (
        json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/bb:v1").stdout)[
            "Digest"
        ]
        == digest
    )
    info = json.loads(pybuild_cli("inspect", "--json", f"docker://{registry.host}/bb:v1").stdout)
    assert info["digest"] == digest and info["runtime"]["Cmd"] == ["/bin/sh"]
    raw = pybuild_cli("inspect", "--raw", f"docker://{registry.host}/bb:v1").stdout.encode()
    assert raw == (busybox_layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    pulled = pybuild_cli("pull", f"{registry.host}/bb:v1").stdout
    assert pulled.strip() == f"pulled {registry.host}/bb:v1 {digest}"
    names = [i["name"] for i in json.loads(pybuild_cli("images", "--json").stdout)]
    assert f"{registry.host}/bb:v1" in names
    assert pybuild_cli("check").returncode == 0


@pytest.mark.slow
def test_archives_through_the_cli(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    archive = tmp_path / "bb.tar"
    pybuild_cli("copy", f"oci:{busybox_layout}", f"docker-archive:{archive}:localhost/bb:v1")
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path}/sk:t")
    pybuild_cli("copy", f"docker-archive:{archive}", "localhost/back")
    ours = json.loads(pybuild_cli("inspect", "--json", f"oci:{busybox_layout}").stdout)
    back = json.loads(pybuild_cli("inspect", "--json", "localhost/back").stdout)
    assert back["config"] == ours["config"] and back["diff_ids"] == ours["diff_ids"]
    pybuild_cli("copy", "localhost/back", f"oci-archive:{tmp_path}/o.tar:t")
    skopeo("copy", f"oci-archive:{tmp_path}/o.tar:t", f"oci:{tmp_path}/sk2:t")
    assert Layout.open(tmp_path / "sk2").resolve("t")


@pytest.mark.slow
def test_login_logout_and_auth_errors(
    pybuild_cli: Any, busybox_layout: Path, auth_registry: RegistryServer, tmp_path: Path
) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "localhost/bb")
    denied = pybuild_cli("push", "localhost/bb", f"docker://{auth_registry.host}/bb:v1", check=False)
    assert denied.returncode == 1 and denied.stderr.startswith("error: ") and "Traceback" not in denied.stderr
    bad = pybuild_cli("login", "-u", "alice", "-p", "wrong", auth_registry.host, check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    pybuild_cli("login", "-u", "alice", "-p", "s3cret", auth_registry.host)
    pybuild_cli("push", "localhost/bb", f"docker://{auth_registry.host}/bb:v1")
    pybuild_cli("logout", auth_registry.host)
    again = pybuild_cli("pull", f"docker://{auth_registry.host}/bb:v1", check=False)
    assert again.returncode == 1
    pybuild_cli("pull", "--creds", "alice:s3cret", f"docker://{auth_registry.host}/bb:v1")


def test_unreachable_registry_is_one_line(pybuild_cli: Any) -> None:
    proc = pybuild_cli("pull", "docker://127.0.0.1:9/nothing:v1", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: cannot reach registry 127.0.0.1:9")
    assert len(proc.stderr.strip().splitlines()) <= 2


@pytest.mark.slow
def test_push_with_recompression(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "localhost/bb")
    pybuild_cli("push", "--compression", "zstd", "localhost/bb", f"docker://{registry.host}/bb:zstd")
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/bb:zstd", f"oci:{tmp_path}/sk:z")
    layout = Layout.open(tmp_path / "sk")
    from pybuild.layout import load_image

    image = load_image(layout, layout.resolve("z"))
    assert [layer.media_type for layer in image.layers] == ["application/vnd.oci.image.layer.v1.tar+zstd"]
    original = json.loads(pybuild_cli("inspect", "--json", "localhost/bb").stdout)
    assert [str(d) for d in image.diff_ids] == original["diff_ids"]  # same content, new blobs
    assert str(image.layers[0].digest) != original["layers"][0]["digest"]
    pybuild_cli("copy", "--compression", "none", "localhost/bb", f"oci:{tmp_path}/plain:p")
    plain = load_image(Layout.open(tmp_path / "plain"), Layout.open(tmp_path / "plain").resolve("p"))
    assert plain.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar"
    run_check = pybuild_cli("check", f"oci:{tmp_path}/plain")
    assert run_check.returncode == 0


PLAIN = "application/vnd.oci.image.layer.v1.tar"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.mark.slow
def test_uncompressed_layers_are_gzipped_on_the_way_out(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    """What skopeo does with plain tar layers (the store keeps built layers so): gzip them for a
    registry, an OCI layout or an oci-archive; keep them in the store, or with --compression none."""
    from pybuild.layout import load_image

    def media(layout_dir: Path, tag: str) -> list[str]:
        layout = Layout.open(layout_dir)
        return [layer.media_type for layer in load_image(layout, layout.resolve(tag)).layers]

    def raw_media(ref: str) -> list[str]:
        raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout)
        return [layer["mediaType"] for layer in raw["layers"]]

    pybuild_cli("copy", "--compression", "none", f"oci:{busybox_layout}", f"oci:{tmp_path}/plain:p")
    assert media(tmp_path / "plain", "p") == [PLAIN]
    pybuild_cli("copy", f"oci:{tmp_path}/plain:p", "localhost/plain")  # into the store: as it is
    stored = json.loads(pybuild_cli("inspect", "--json", "localhost/plain").stdout)
    assert [layer["mediaType"] for layer in stored["layers"]] == [PLAIN]

    pybuild_cli("copy", "localhost/plain", f"oci:{tmp_path}/out:t")  # to a layout: gzipped
    assert media(tmp_path / "out", "t") == [GZIP]
    out = json.loads(pybuild_cli("inspect", "--json", f"oci:{tmp_path}/out:t").stdout)
    assert out["id"] == stored["id"] and out["diff_ids"] == stored["diff_ids"]
    pybuild_cli("tag", "localhost/plain", f"oci:{tmp_path}/tagged:t")
    assert media(tmp_path / "tagged", "t") == [GZIP]
    pybuild_cli("copy", "--compression", "none", "localhost/plain", f"oci:{tmp_path}/kept:t")
    assert media(tmp_path / "kept", "t") == [PLAIN]
    pybuild_cli("copy", "localhost/plain", f"oci-archive:{tmp_path}/o.tar:t")
    assert raw_media(f"oci-archive:{tmp_path}/o.tar:t") == [GZIP]

    digest = pybuild_cli("push", "localhost/plain", f"docker://{registry.host}/plain:v1").stdout.strip()
    assert digest == out["digest"]  # the same gzip bytes as the layout copy: deterministic
    assert raw_media(f"docker://{registry.host}/plain:v1") == [GZIP]
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/plain:v1", f"oci:{tmp_path}/sk:t")
    pybuild_cli("push", "--compression", "none", "localhost/plain", f"docker://{registry.host}/plain:none")
    assert raw_media(f"docker://{registry.host}/plain:none") == [PLAIN]  # (skopeo copy would gzip it)
    for layout in ("out", "tagged", "kept", "sk"):
        assert pybuild_cli("check", f"oci:{tmp_path}/{layout}").returncode == 0


@pytest.mark.slow
def test_build_from_a_registry_image(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "localhost/bb")
    digest = pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1").stdout.strip()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f"FROM docker://{registry.host}/bb:v1\nRUN echo built > /built\n")
    fresh = {"PYBUILD_STORE": str(tmp_path / "fresh")}
    # --pull never: the image is not in the fresh store, so nothing is pulled and the build fails
    refused = pybuild_cli("build", "--pull", "never", str(ctx), check=False, env=fresh)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: Containerfile:1: FROM docker://")
    assert "--pull never" in refused.stderr and "Traceback" not in refused.stderr
    # missing (the default): pulled into the store under its registry name, then built on
    out = pybuild_cli("build", "-t", "localhost/on-bb", str(ctx), env=fresh).stdout
    assert f"pulling {registry.host}/bb:v1" in out
    images = {i["name"]: i["digest"] for i in json.loads(pybuild_cli("images", "--json", env=fresh).stdout)}
    assert images[f"{registry.host}/bb:v1"] == digest
    ran = pybuild_cli("run", "localhost/on-bb", "--", "cat", "/built", env=fresh)
    assert ran.stdout == "built\n"
    # a second build finds the base in the store: no pull
    assert "pulling" not in pybuild_cli("build", str(ctx), env=fresh).stdout
    assert pybuild_cli("check", env=fresh).returncode == 0


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run pybuild with stderr on a pseudo-terminal; (exit status, what the terminal got)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "pybuild"), *args],
        stdout=subprocess.DEVNULL,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env, "COLUMNS": "200", "TERM": "xterm"},
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=120), out.decode(errors="replace")


@pytest.mark.slow
def test_progress_on_a_terminal_and_quiet_elsewhere(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "localhost/bb")
    pushed = pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1")
    assert pushed.stderr == ""  # not a terminal: no bars in CI logs
    env = {"PYBUILD_STORE": str(tmp_path / "fresh")}
    status, shown = _on_a_terminal(["pull", f"{registry.host}/bb:v1"], env)
    assert status == 0
    assert "total" in shown and "blob " in shown and "done" in shown  # per blob, and overall
    env = {"PYBUILD_STORE": str(tmp_path / "fresh2")}
    status, shown = _on_a_terminal(["pull", "-q", f"{registry.host}/bb:v1"], env)
    assert status == 0 and shown == ""
    pulled = pybuild_cli("pull", f"{registry.host}/bb:v1", env={"PYBUILD_STORE": str(tmp_path / "fresh3")})
    assert pulled.stderr == ""


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compression_for_a_docker_archive_is_refused(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path, compression: str
) -> None:
    """docker-archive layers are plain tars (skopeo decompresses too): a compression asked for
    there is one error line and exit status 2, and no archive is written."""
    archive = tmp_path / "bb.tar"
    proc = pybuild_cli(
        "copy",
        "--compression",
        compression,
        f"oci:{busybox_layout}",
        f"docker-archive:{archive}",
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: --compression {compression}: docker-archive:{archive}: docker-archive layers are plain tars"
    ], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not archive.exists() and list(tmp_path.glob(".bb.tar.*")) == []
    # none is what the archive holds anyway: accepted, and docker-archive layers stay plain tars
    pybuild_cli("copy", "--compression", "none", f"oci:{busybox_layout}", f"docker-archive:{archive}")
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path}/sk:t")
    with tarfile.open(archive) as tar:
        entry = json.loads(tar.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        head = tar.extractfile(entry["Layers"][0]).read(512)  # type: ignore[union-attr]
    assert head[257:262] == b"ustar"  # a plain tar, not gzip nor zstd


@pytest.mark.slow
def test_inspect_archives_without_extracting(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    """`inspect docker-archive:F[:NAME]` and `oci-archive:F[:REF]` read the archive's documents as
    skopeo inspect does: the manifest pybuild's copy gives the image (the same digest), its config
    byte for byte, --raw, --config, --json, and --referrers for an oci-archive's artifacts."""
    docker = tmp_path / "d.tar"
    oci = tmp_path / "o.tar"
    pybuild_cli("copy", f"oci:{busybox_layout}", f"docker-archive:{docker}:localhost/bb:v1")
    pybuild_cli("copy", f"oci:{busybox_layout}", f"oci-archive:{oci}:v1")
    config = json.loads(skopeo("inspect", "--config", "--raw", f"docker-archive:{docker}").stdout)
    for ref, copied in (
        (f"docker-archive:{docker}", "localhost/from-docker"),
        (f"docker-archive:{docker}:localhost/bb:v1", "localhost/from-docker"),
        (f"oci-archive:{oci}", "localhost/from-oci"),
        (f"oci-archive:{oci}:v1", "localhost/from-oci"),
    ):
        info = json.loads(pybuild_cli("inspect", "--json", ref).stdout)
        pybuild_cli("copy", ref, copied)
        stored = json.loads(pybuild_cli("inspect", "--json", copied).stdout)
        assert info["name"] == ref
        for key in ("digest", "mediaType", "id", "layers", "diff_ids", "runtime", "history"):
            assert info[key] == stored[key], key
        raw = pybuild_cli("inspect", "--raw", ref).stdout.encode()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == info["digest"]
        raw_config = pybuild_cli("inspect", "--raw", "--config", ref).stdout.encode()
        assert "sha256:" + hashlib.sha256(raw_config).hexdigest() == info["config"]
        assert json.loads(raw_config) == config
        theirs = json.loads(skopeo("inspect", ref).stdout)
        assert [layer["digest"] for layer in info["layers"]] == theirs["Layers"]
        assert (info["created"], info["runtime"]["Env"]) == (theirs["Created"], theirs["Env"])
        if ref.startswith("oci-archive:"):  # the archive's own manifest (skopeo makes a Docker one
            assert info["digest"] == theirs["Digest"]  # for a docker-archive; pybuild an OCI one)
        text = pybuild_cli("inspect", ref).stdout
        assert f"Digest:       {info['digest']}" in text and "Layers:       1" in text
    # an archive with an SBOM beside the image: inspect --referrers lists it, as for a layout
    layout = tmp_path / "with-sbom"
    pybuild_cli("copy", f"oci:{busybox_layout}", f"oci:{layout}:v1")
    pybuild_cli("sbom", "--attach", f"oci:{layout}:v1")
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)
    ours = json.loads(pybuild_cli("inspect", "--json", "--referrers", f"oci:{layout}:v1").stdout)
    listed = json.loads(
        pybuild_cli("inspect", "--json", "--referrers", f"oci-archive:{tmp_path}/s.tar").stdout
    )
    assert listed == ours and [r["artifactType"] for r in listed] == ["application/spdx+json"]
    # errors are one line, exit status 1
    for ref, message in (
        (f"oci-archive:{oci}:nope", f"error: no image tagged 'nope' in oci-archive:{oci}"),
        (
            f"docker-archive:{docker}:other:v1",
            f"error: docker-archive:{docker}: no image 'other:v1' in the archive",
        ),
        (
            f"docker-archive:{tmp_path}/none.tar",
            f"error: docker-archive:{tmp_path}/none.tar: {tmp_path}/none.tar does not exist",
        ),
    ):
        proc = pybuild_cli("inspect", ref, check=False)
        assert proc.returncode == 1 and proc.stderr.splitlines() == [message], proc.stderr
