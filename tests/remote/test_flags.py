"""Issue 12's registry flags and transport references, through the CLI, checked with skopeo."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import Layout, load_image
from pybuild.remote import ArchiveReference, LayoutReference, parse_image_reference

from .conftest import RegistryServer, check, skopeo
from .test_hostile import one_error_line

pytestmark = pytest.mark.slow


def test_references_split_at_the_first_colon() -> None:
    assert parse_image_reference("oci-archive:img.tar:localhost/app:1") == ArchiveReference(
        "oci-archive", Path("img.tar"), "localhost/app:1"
    )
    assert parse_image_reference("docker-archive:d.tar:localhost/app:2") == ArchiveReference(
        "docker-archive", Path("d.tar"), "localhost/app:2"
    )
    assert parse_image_reference("docker-archive:d.tar:localhost/app") == ArchiveReference(
        "docker-archive", Path("d.tar"), "localhost/app:latest"
    )
    assert parse_image_reference("oci:dir:localhost/app:3") == LayoutReference(
        "oci", "localhost/app:3", Path("dir")
    )
    assert parse_image_reference("oci:dir") == LayoutReference("oci", "latest", Path("dir"))


def test_full_names_in_archive_and_layout_references_are_read_by_skopeo(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "localhost/bb")
    pybuild_cli("copy", "localhost/bb", f"oci-archive:{tmp_path}/img.tar:localhost/app:1")
    assert (tmp_path / "img.tar").is_file() and not list(tmp_path.glob("img.tar:*"))
    skopeo("copy", f"oci-archive:{tmp_path}/img.tar:localhost/app:1", f"oci:{tmp_path}/sk1:t")
    check(tmp_path / "sk1", "t")
    pybuild_cli("copy", "localhost/bb", f"docker-archive:{tmp_path}/d.tar:localhost/app:2")
    assert (tmp_path / "d.tar").is_file()
    skopeo("copy", f"docker-archive:{tmp_path}/d.tar:localhost/app:2", f"oci:{tmp_path}/sk2:t")
    check(tmp_path / "sk2", "t")
    pybuild_cli("copy", "localhost/bb", f"oci:{tmp_path}/lay:localhost/app:3")
    assert Layout.open(tmp_path / "lay").resolve("localhost/app:3")
    skopeo("copy", f"oci:{tmp_path}/lay:localhost/app:3", f"oci:{tmp_path}/sk3:t")
    check(tmp_path / "sk3", "t")
    # and what skopeo writes under a full name, pybuild reads back
    skopeo("copy", f"oci:{busybox_layout}:latest", f"oci-archive:{tmp_path}/s.tar:localhost/app:4")
    pybuild_cli("copy", f"oci-archive:{tmp_path}/s.tar:localhost/app:4", "localhost/back")
    assert pybuild_cli("inspect", "localhost/back").returncode == 0


def test_tls_verify_values_and_cert_dir(
    pybuild_cli: Any, busybox_layout: Path, tls_registry: RegistryServer, tmp_path: Path
) -> None:
    host = tls_registry.host
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(tmp_path / "cert.pem", certs / "ca.crt")
    pybuild_cli("copy", f"oci:{busybox_layout}", "localhost/bb")
    refused = pybuild_cli("push", "localhost/bb", f"docker://{host}/bb:v1", check=False)
    one_error_line(refused, f"cannot reach registry {host}: TLS")
    pybuild_cli("push", "--tls-verify=false", "localhost/bb", f"docker://{host}/bb:v1")
    # a bare --tls-verify means true and never eats the next argument; --cert-dir makes it pass
    pushed = pybuild_cli(
        "push", "--tls-verify", "--cert-dir", str(certs), "localhost/bb", f"docker://{host}/bb:v2"
    )
    digest = pushed.stdout.strip()
    one_error_line(
        pybuild_cli("pull", "--tls-verify=true", f"{host}/bb:v1", check=False),
        f"cannot reach registry {host}: TLS",
    )
    one_error_line(
        pybuild_cli("pull", "--tls-verify=maybe", f"{host}/bb:v1", check=False),
        "--tls-verify='maybe'",
        status=2,  # a bad command line
    )
    assert pybuild_cli("pull", "--tls-verify", "--cert-dir", str(certs), f"{host}/bb:v2").returncode == 0
    info = json.loads(pybuild_cli("inspect", "--json", "--tls-verify=false", f"docker://{host}/bb:v2").stdout)
    assert info["digest"] == digest
    assert pybuild_cli("inspect", "--cert-dir", str(certs), f"docker://{host}/bb:v2").returncode == 0
    # copy: skopeo's per-side flags
    one_error_line(
        pybuild_cli(
            "copy", "--src-tls-verify=false", f"docker://{host}/bb:v1", f"docker://{host}/bb:v3", check=False
        ),
        "TLS",
    )
    pybuild_cli(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{host}/bb:v1",
        f"docker://{host}/bb:v3",
    )
    pybuild_cli("copy", "--src-cert-dir", str(certs), f"docker://{host}/bb:v3", f"oci:{tmp_path}/out:t")
    check(tmp_path / "out", "t")
    out = skopeo("inspect", "--cert-dir", str(certs), f"docker://{host}/bb:v3").stdout
    assert json.loads(out)["Digest"] == digest
    # build: FROM a registry that needs the flags
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f'FROM {host}/bb:v2\nCMD ["/bin/true"]\n')
    fresh = {"PYBUILD_STORE": str(tmp_path / "fresh")}
    one_error_line(pybuild_cli("build", str(ctx), check=False, env=fresh), "TLS")
    pybuild_cli("build", "--cert-dir", str(certs), "-t", "localhost/on-bb", str(ctx), env=fresh)
    pybuild_cli("build", "--tls-verify=false", "--pull", "always", str(ctx), env=fresh)
    # login: --cert-dir decides whether the registry's certificate is trusted
    authfile = tmp_path / "auth.json"
    login = ["login", "--creds", "u:p", "--authfile", str(authfile)]
    one_error_line(pybuild_cli(*login, host, check=False), f"cannot reach registry {host}: TLS")
    pybuild_cli(*login, "--cert-dir", str(certs), host)
    assert host in json.loads(authfile.read_text())["auths"]


def test_creds_and_authfile(
    pybuild_cli: Any, busybox_layout: Path, auth_registry: RegistryServer, tmp_path: Path
) -> None:
    host = auth_registry.host
    authfile = tmp_path / "auth.json"
    pybuild_cli("copy", f"oci:{busybox_layout}", "localhost/bb")
    one_error_line(
        pybuild_cli("push", "localhost/bb", f"docker://{host}/bb:v1", check=False), "authentication required"
    )
    one_error_line(
        pybuild_cli("push", "--creds", "alice", "localhost/bb", f"docker://{host}/bb:v1", check=False),
        "--creds alice: no password given",
        status=2,  # a bad command line
    )
    one_error_line(
        pybuild_cli(
            "push", "--authfile", str(authfile), "localhost/bb", f"docker://{host}/bb:v1", check=False
        ),
        f"--authfile {authfile}: no such file",
        status=2,  # a bad command line
    )
    pybuild_cli("login", "--creds", "alice:s3cret", "--authfile", str(authfile), host)
    doc = json.loads(authfile.read_text())
    assert host in doc["auths"]
    pybuild_cli("push", "--authfile", str(authfile), "localhost/bb", f"docker://{host}/bb:v1")
    pybuild_cli("push", "--creds", "alice:s3cret", "localhost/bb", f"docker://{host}/bb:v2")
    pybuild_cli("pull", "--authfile", str(authfile), f"{host}/bb:v1")
    pybuild_cli("inspect", "--authfile", str(authfile), f"docker://{host}/bb:v2")
    pybuild_cli(
        "copy",
        "--src-authfile",
        str(authfile),
        "--dest-creds",
        "alice:s3cret",
        f"docker://{host}/bb:v1",
        f"docker://{host}/bb:v3",
    )
    skopeo("inspect", "--tls-verify=false", "--authfile", str(authfile), f"docker://{host}/bb:v3")
    proc = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{host}/bb:v3"], capture_output=True, text=True
    )
    assert proc.returncode != 0  # the credentials are in the file, nowhere else
    image = load_image(
        Layout.open(pybuild_cli.store), Layout.open(pybuild_cli.store).resolve(f"{host}/bb:v1")
    )
    assert image.layers
    # build: a base in that registry, pulled with --creds or --authfile, refused without them
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f'FROM {host}/bb:v2\nCMD ["/bin/true"]\n')
    for n, flags in enumerate([[], ["--creds", "alice:s3cret"], ["--authfile", str(authfile)]]):
        fresh = {"PYBUILD_STORE": str(tmp_path / f"fresh{n}")}
        built = pybuild_cli("build", *flags, "-t", "localhost/on-bb", str(ctx), check=False, env=fresh)
        if not flags:
            one_error_line(built, "authentication required")
        else:
            assert built.returncode == 0, built.stderr
            pulled = Layout.open(tmp_path / f"fresh{n}").resolve(f"{host}/bb:v2")
            there = skopeo(
                "inspect", "--tls-verify=false", "--authfile", str(authfile), f"docker://{host}/bb:v2"
            )
            assert str(pulled.digest) == json.loads(there.stdout)["Digest"]
