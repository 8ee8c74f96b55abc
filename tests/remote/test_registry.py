"""Pull and push against the real CNCF registry, checked with skopeo and oci-image-tool."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from fixtures.images import make_busybox_image, make_image

from pybuild.errors import AuthError, DigestMismatch, RegistryError
from pybuild.layout import Descriptor, Index, Layout, Platform, check_layout, load_image, mediatype
from pybuild.remote import (
    Credentials,
    find_credentials,
    inspect_remote,
    login,
    logout,
    parse_registry_reference,
    pull,
    push,
)

from .conftest import RegistryServer, check, free_port, skopeo

pytestmark = pytest.mark.slow


def ref(server: RegistryServer, name: str) -> object:
    return parse_registry_reference(f"docker://{server.host}/{name}")


def test_reference_parsing() -> None:
    r = parse_registry_reference("docker://127.0.0.1:5000/team/app:v1")
    assert (r.registry, r.repository, r.tag, r.digest) == ("127.0.0.1:5000", "team/app", "v1", None)
    r = parse_registry_reference("localhost:5000/app")
    assert (r.registry, r.repository, r.tag) == ("localhost:5000", "app", "latest")
    r = parse_registry_reference("busybox")
    assert (r.registry, r.repository, r.api_host) == ("docker.io", "library/busybox", "registry-1.docker.io")
    digest = "sha256:" + "a" * 64
    assert str(parse_registry_reference(f"docker://h:1/x@{digest}").digest) == digest


def test_pybuild_push_then_skopeo_pull(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    events: list[str] = []
    pushed = push(
        src,
        desc,
        parse_registry_reference(f"{registry.host}/app:v1"),
        progress=lambda event, d, n: events.append(event),
    )
    assert pushed == desc.digest
    assert "done" in events
    out = tmp_path / "skopeo-out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/app:v1", f"oci:{out}:t")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(desc.digest)
    check(out, "t")
    # Pushing again skips every blob.
    events.clear()
    push(
        src,
        desc,
        parse_registry_reference(f"{registry.host}/app:v1"),
        progress=lambda event, d, n: events.append(event),
    )
    assert events and set(events) == {"skip"}


def test_skopeo_push_then_pybuild_pull(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src.root}:v1", f"docker://{registry.host}/sk/app:v2")
    out = Layout.create(tmp_path / "out")
    seen: list[tuple[str, int]] = []
    got = pull(
        parse_registry_reference(f"docker://{registry.host}/sk/app:v2"),
        out,
        "v2",
        progress=lambda event, d, n: seen.append((event, n)),
    )
    assert got.digest == desc.digest
    assert out.resolve("v2").digest == desc.digest
    assert (
        sum(n for event, n in seen if event == "advance")
        == sum(d.size for d in [*load_image(src, desc).layers]) + load_image(src, desc).manifest.config.size
    )
    for blob in src.blobs.digests():
        assert out.blobs.exists(blob)
    check(out.root, "v2")
    manifest, config = inspect_remote(f"docker://{registry.host}/sk/app:v2")
    assert manifest == src.blobs.read(desc.digest)
    assert json.loads(config)["architecture"] == "amd64"


def test_chunked_push_and_mount(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    push(
        src,
        desc,
        parse_registry_reference(f"{registry.host}/chunked:v1"),
        chunked_threshold=0,
        chunk_size=1000,
    )
    events: list[str] = []
    push(
        src,
        desc,
        parse_registry_reference(f"{registry.host}/other:v1"),
        mount_from="chunked",
        progress=lambda event, d, n: events.append(event),
    )
    assert "advance" not in events  # every blob was mounted, none uploaded
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/other:v1", f"oci:{out}:t")
    check(out, "t")
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == str(desc.digest)


def test_index_selects_platform(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")

    # layers differ by content so each manifest differs
    def layer(text: str) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("arch")
            data = text.encode()
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    amd = make_image(src, [layer("amd64")])
    arm_manifest = _image_for(src, layer("arm64"), "arm64")
    index = Index.build(
        [
            Descriptor(amd.media_type, amd.digest, amd.size, platform=Platform("amd64", "linux")),
            Descriptor(
                arm_manifest.media_type,
                arm_manifest.digest,
                arm_manifest.size,
                platform=Platform("arm64", "linux", "v8"),
            ),
        ]
    )
    digest, size = src.blobs.put(index.to_bytes())
    index_desc = Descriptor(mediatype.OCI_INDEX, digest, size)
    src.set_tag("multi", index_desc)
    assert push(src, index_desc, parse_registry_reference(f"{registry.host}/multi:v1")) == digest
    out = Layout.create(tmp_path / "out")
    got = pull(
        parse_registry_reference(f"{registry.host}/multi:v1"), out, "arm", platform=Platform("arm64", "linux")
    )
    assert got.digest == arm_manifest.digest
    got = pull(
        parse_registry_reference(f"{registry.host}/multi:v1"), out, "amd", platform=Platform("amd64", "linux")
    )
    assert got.digest == amd.digest
    check(out.root, "arm")
    check(out.root, "amd")
    manifest, config = inspect_remote(f"{registry.host}/multi:v1", platform=Platform("arm64", "linux"))
    assert manifest == src.blobs.read(arm_manifest.digest)
    assert json.loads(config)["architecture"] == "arm64"
    with pytest.raises(Exception, match="no image for linux/s390x"):
        pull(
            parse_registry_reference(f"{registry.host}/multi:v1"),
            out,
            "s",
            platform=Platform("s390x", "linux"),
        )
    # skopeo agrees on which manifest is arm64
    sk = tmp_path / "sk"
    skopeo(
        "copy",
        "--override-arch=arm64",
        "--src-tls-verify=false",
        f"docker://{registry.host}/multi:v1",
        f"oci:{sk}:t",
    )
    assert json.loads((sk / "index.json").read_text())["manifests"][0]["digest"] == str(arm_manifest.digest)


def _image_for(layout: Layout, tar: bytes, arch: str) -> Descriptor:
    from fixtures.images import make_config, put_layer

    from pybuild.layout import commit_image

    with layout.writing():
        desc, diff_id = put_layer(layout, tar)
        return commit_image(layout, make_config([diff_id], architecture=arch, variant="v8"), [desc])


def test_errors_name_registry_and_repository(registry: RegistryServer, tmp_path: Path) -> None:
    out = Layout.create(tmp_path / "out")
    with pytest.raises(RegistryError) as info:
        pull(parse_registry_reference(f"{registry.host}/app:v1"), out, "x")
    assert str(info.value) == f"registry {registry.host}: pulling app:v1: manifest unknown"
    port = free_port()
    with pytest.raises(RegistryError) as info:
        pull(parse_registry_reference(f"127.0.0.1:{port}/app:v1"), out, "x")
    assert str(info.value) == f"cannot reach registry 127.0.0.1:{port}: connection refused"


def test_corrupt_blob_is_rejected_and_nothing_committed(registry: RegistryServer, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    push(src, desc, parse_registry_reference(f"{registry.host}/app:v1"))
    layer = load_image(src, desc).layers[0]
    data = bytearray(registry.blob_path(str(layer.digest)).read_bytes())
    data[len(data) // 2] ^= 0xFF
    registry.blob_path(str(layer.digest)).write_bytes(bytes(data))
    out = Layout.create(tmp_path / "out")
    before = (out.root / "index.json").read_bytes()
    with pytest.raises(DigestMismatch, match=f"registry {registry.host}: pulling app:v1: .*corrupt"):
        pull(parse_registry_reference(f"{registry.host}/app:v1"), out, "v1")
    assert (out.root / "index.json").read_bytes() == before
    assert not out.blobs.exists(layer.digest)
    assert not out.blobs.exists(desc.digest)
    assert check_layout(out) == []


def test_basic_auth_login_logout(auth_registry: RegistryServer, tmp_path: Path, isolated_auth: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    target = parse_registry_reference(f"{auth_registry.host}/private:v1")
    with pytest.raises(AuthError, match=f"registry {auth_registry.host}: pushing private:v1: authentication"):
        push(src, desc, target)
    with pytest.raises(AuthError, match="invalid username or password"):
        push(src, desc, target, creds="alice:wrong")
    assert push(src, desc, target, creds="alice:s3cret") == desc.digest
    with pytest.raises(AuthError):
        login(auth_registry.host, "alice", "nope")
    login(auth_registry.host, "alice", "s3cret")
    auth_file = tmp_path / "run" / "containers" / "auth.json"
    assert auth_file.is_file()
    assert find_credentials(auth_registry.host) == Credentials("alice", "s3cret")
    out = Layout.create(tmp_path / "out")
    assert pull(target, out, "v1").digest == desc.digest
    check(out.root, "v1")
    # skopeo reads the auth.json pybuild wrote
    sk = tmp_path / "sk"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--authfile",
        str(auth_file),
        f"docker://{auth_registry.host}/private:v1",
        f"oci:{sk}:t",
    )
    assert logout(auth_registry.host) is True
    assert logout(auth_registry.host) is False
    assert find_credentials(auth_registry.host) is None


def test_docker_config_json_is_read(isolated_auth: Path) -> None:
    docker = isolated_auth / ".docker"
    docker.mkdir()
    (docker / "config.json").write_text(
        json.dumps(
            {"auths": {"https://reg.example:5000/v1/": {"auth": base64.b64encode(b"bob:pw").decode()}}}
        )
    )
    assert find_credentials("reg.example:5000") == Credentials("bob", "pw")
    assert find_credentials("other.example") is None


def test_skopeo_is_installed() -> None:
    result = skopeo("--version")
    assert "skopeo" in result.stdout
    assert subprocess.run(["docker-registry", "--version"], capture_output=True).returncode == 0


def test_copy_image_registry_to_registry_and_store(registry: RegistryServer, tmp_path: Path) -> None:
    from pybuild.layout import ImageStore
    from pybuild.remote import copy_image

    store = ImageStore.at(tmp_path / "store")
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    assert (
        copy_image(f"oci:{src.root}:v1", f"docker://{registry.host}/a/app:v1", store=store).digest
        == desc.digest
    )
    events: list[str] = []
    got = copy_image(
        f"docker://{registry.host}/a/app:v1",
        f"docker://{registry.host}/b/app:v2",
        store=store,
        progress=lambda event, d, n: events.append(event),
    )
    assert got.digest == desc.digest
    manifest, _ = inspect_remote(f"docker://{registry.host}/b/app:v2")
    assert manifest == src.blobs.read(desc.digest)
    got = copy_image(f"docker://{registry.host}/b/app:v2", f"{registry.host}/b/app:v2", store=store)
    assert store.lookup(f"{registry.host}/b/app:v2")[1].digest == desc.digest
    check(store.root, f"{registry.host}/b/app:v2")
    archive = tmp_path / "d.tar"
    copy_image(f"docker://{registry.host}/b/app:v2", f"docker-archive:{archive}:app:v2", store=store)
    sk = tmp_path / "sk"
    skopeo("copy", f"docker-archive:{archive}", f"oci:{sk}:t")
    check(sk, "t")


def test_tls_verify(tls_registry: RegistryServer, tmp_path: Path) -> None:
    from pybuild.remote import Registry

    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    target = parse_registry_reference(f"{tls_registry.host}/app:v1")
    with pytest.raises(RegistryError, match=f"cannot reach registry {tls_registry.host}: TLS") as info:
        push(src, desc, target, registry=Registry(tls_registry.host, plain_http=False))
    assert "--tls-verify=false" in info.value.hints[0]
    insecure = Registry(tls_registry.host, plain_http=False, tls_verify=False)
    assert push(src, desc, target, registry=insecure) == desc.digest
    out = Layout.create(tmp_path / "out")
    assert pull(target, out, "v1", registry=insecure).digest == desc.digest
    check(out.root, "v1")
