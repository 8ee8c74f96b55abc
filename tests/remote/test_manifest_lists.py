"""Manifest lists (issue 17): `pybuild manifest create|add|remove|inspect|push`, `pull
--all-platforms`, `copy --all` between layouts, archives and docker-registry, read back by skopeo
(--override-arch) and checked with pybuild's check and oci-image-tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import ImageStore, Layout, attach, load_image, read_index
from pybuild.layout import mediatype as mt
from tests.fixtures.cli import assert_fails, context
from tests.fixtures.emulation import require_arm64_emulation
from tests.fixtures.tools import validate_layout

from .conftest import RegistryServer, skopeo
from .referrers_helpers import SPDX, fallback_tag

pytestmark = pytest.mark.slow


def raw_of(ref: str, *extra: str) -> dict[str, Any]:
    return dict(json.loads(skopeo("inspect", "--tls-verify=false", "--raw", *extra, ref).stdout))


def arch_configs(ref: str) -> dict[str, dict[str, Any]]:
    """What skopeo reads for each architecture of the list ``ref`` names: the image's config."""
    out = {}
    for arch in ("amd64", "arm64"):
        config = skopeo("inspect", "--tls-verify=false", "--override-arch", arch, "--config", ref).stdout
        out[arch] = json.loads(config)
    return out


def test_manifest_commands_in_the_store(pybuild_cli: Any, multiarch_layout: Path) -> None:
    pybuild_cli("copy", "-q", f"oci:{multiarch_layout}:latest", "localhost/bb")
    index = read_index(Layout.open(multiarch_layout), Layout.open(multiarch_layout).resolve("latest"))
    amd, arm = index.manifests
    pybuild_cli("manifest", "create", "localhost/list")
    assert json.loads(pybuild_cli("manifest", "inspect", "localhost/list").stdout)["manifests"] == []
    added = pybuild_cli("manifest", "add", "localhost/list", "localhost/bb").stdout.splitlines()
    assert added[0] == f"added {amd.digest}"  # a list given: this machine's image of it
    pybuild_cli("manifest", "add", "--platform", "linux/arm64", "localhost/list", "localhost/bb")
    shown = json.loads(pybuild_cli("manifest", "inspect", "localhost/list").stdout)
    assert [(m["digest"], m["platform"]) for m in shown["manifests"]] == [
        (str(amd.digest), {"architecture": "amd64", "os": "linux"}),
        (str(arm.digest), {"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    # what inspect prints is the index in the store, indented
    store = ImageStore.at(pybuild_cli.store)
    desc = store.resolve("localhost/list:latest")
    assert json.loads(store.blobs.read(desc.digest)) == shown
    assert desc.media_type == mt.OCI_INDEX
    listed = {i["name"]: i for i in json.loads(pybuild_cli("images", "--json").stdout)}
    assert listed["localhost/list:latest"]["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert listed["localhost/list:latest"]["id"] == desc.digest.encoded
    assert "manifest list: linux/amd64, linux/arm64/v8" in pybuild_cli("images").stdout
    # add again: listed once; remove one
    pybuild_cli("manifest", "add", "localhost/list", "localhost/bb")
    assert len(json.loads(pybuild_cli("manifest", "inspect", "localhost/list").stdout)["manifests"]) == 2
    pybuild_cli("manifest", "remove", "localhost/list", str(amd.digest))
    left = json.loads(pybuild_cli("manifest", "inspect", "localhost/list").stdout)["manifests"]
    assert [m["digest"] for m in left] == [str(arm.digest)]
    # the list keeps its images through gc when nothing else names them
    pybuild_cli("rm", "localhost/bb")
    pybuild_cli("gc")
    kept = store.resolve("localhost/list:latest")
    assert load_image(store, read_index(store, kept).manifests[0]).config.architecture == "arm64"
    assert pybuild_cli("check").returncode == 0
    # bad input: one line, nothing changed
    before = (pybuild_cli.store / "index.json").read_bytes()
    assert_fails(pybuild_cli("manifest", "create", "localhost/list", check=False), 2, "already exists")
    assert_fails(
        pybuild_cli("manifest", "remove", "localhost/list", str(amd.digest), check=False),
        1,
        f"has no image {amd.digest}",
    )
    assert_fails(
        pybuild_cli("manifest", "remove", "localhost/list", "sha256:12", check=False), 2, "sha256:12"
    )
    assert_fails(pybuild_cli("manifest", "inspect", "localhost/nolist", check=False), 1, "no manifest list")
    assert_fails(
        pybuild_cli("manifest", "add", "oci:/x", "localhost/list", check=False), 2, "named in the store"
    )
    assert (pybuild_cli.store / "index.json").read_bytes() == before
    # an image's name is no list
    pybuild_cli("copy", "-q", "--platform", "linux/arm64", f"oci:{multiarch_layout}:latest", "localhost/arm")
    assert_fails(
        pybuild_cli("manifest", "inspect", "localhost/arm", check=False),
        2,
        "is an image, not a manifest list",
    )


def _built_list(pybuild_cli: Any, tmp_path: Path, multiarch_layout: Path) -> None:
    """localhost/list in the store: a two-platform build (layers uncompressed there)."""
    require_arm64_emulation()
    pybuild_cli("copy", "-q", f"oci:{multiarch_layout}:latest", "busybox")
    ctx = context(tmp_path / "ctx", "FROM busybox\nRUN uname -m > /arch\n")
    pybuild_cli(
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--manifest",
        "localhost/list",
        "--timestamp",
        "0",
        str(ctx),
    )


def test_pushed_list_read_back_by_skopeo(
    pybuild_cli: Any, multiarch_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    _built_list(pybuild_cli, tmp_path, multiarch_layout)
    store = ImageStore.at(pybuild_cli.store)
    stored = read_index(store, store.resolve("localhost/list:latest"))
    arm_stored = next(m for m in stored.manifests if m.platform and m.platform.architecture == "arm64")
    sbom = attach(store, arm_stored, SPDX, "application/spdx+json", b'{"spdxVersion": "SPDX-2.3"}', None)
    ref = f"docker://{registry.host}/app:multi"
    digest = pybuild_cli(
        "manifest", "push", "localhost/list", ref, "--digestfile", str(tmp_path / "d")
    ).stdout.strip()
    assert (tmp_path / "d").read_text() == digest
    index = raw_of(ref)
    assert index["mediaType"] == mt.OCI_INDEX and json.loads(
        skopeo("inspect", "--tls-verify=false", ref).stdout
    )
    assert [m["mediaType"] for m in index["manifests"]] == [mt.OCI_MANIFEST, mt.OCI_MANIFEST]
    configs = arch_configs(ref)
    assert {a: (c["architecture"], c["os"], c.get("variant")) for a, c in configs.items()} == {
        "amd64": ("amd64", "linux", None),
        "arm64": ("arm64", "linux", "v8"),
    }
    for entry in index["manifests"]:  # each image went first, by digest, its layers gzipped
        image = raw_of(f"docker://{registry.host}/app@{entry['digest']}")
        assert {layer["mediaType"] for layer in image["layers"]} == {mt.OCI_LAYER_GZIP}
    # the SBOM of the arm64 image went along, its subject the arm64 image as pushed
    arm_pushed = next(m for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
    listed = raw_of(f"docker://{registry.host}/app:{fallback_tag(arm_pushed['digest'])}")
    assert [m["artifactType"] for m in listed["manifests"]] == [SPDX]
    assert listed["manifests"][0]["digest"] != str(sbom.digest)  # rewritten for the new subject
    # skopeo copies the whole list out of the registry into a valid layout
    out = tmp_path / "skopeo-out"
    skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{out}:multi")
    validate_layout(out, "multi")
    # --format docker: a Docker manifest list of Docker manifests
    docker_ref = f"docker://{registry.host}/app:docker"
    pybuild_cli("manifest", "push", "--format", "docker", "localhost/list", docker_ref)
    docker_list = raw_of(docker_ref)
    assert docker_list["mediaType"] == mt.DOCKER_MANIFEST_LIST
    for entry in docker_list["manifests"]:
        image = raw_of(f"docker://{registry.host}/app@{entry['digest']}")
        assert (image["mediaType"], image["config"]["mediaType"]) == (mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG)
        assert {layer["mediaType"] for layer in image["layers"]} == {mt.DOCKER_LAYER_GZIP}
    assert arch_configs(docker_ref)["arm64"]["architecture"] == "arm64"
    # --no-all: only the list, which needs its images there as the store lists them
    proc = pybuild_cli(
        "manifest", "push", "--no-all", "localhost/list", f"docker://{registry.host}/other:x", check=False
    )
    assert_fails(proc, 1, "it has no image sha256:", "the list names")


def test_copy_all_between_layouts_and_the_registry(
    pybuild_cli: Any, multiarch_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    layout = Layout.open(multiarch_layout)
    top = layout.resolve("latest")
    ref = f"docker://{registry.host}/bb:all"
    pushed = pybuild_cli(
        "copy", "--all", f"oci:{multiarch_layout}:latest", ref, "--digestfile", str(tmp_path / "d")
    )
    # gzip layers already: every manifest and the index go as they are, digests kept
    assert (tmp_path / "d").read_text() == str(top.digest) and str(top.digest) in pushed.stdout
    assert raw_of(ref) == json.loads(layout.blobs.read(top.digest))
    assert arch_configs(ref)["arm64"]["architecture"] == "arm64"
    out = tmp_path / "out"
    pybuild_cli("copy", "--all", ref, f"oci:{out}:all")
    validate_layout(out, "all")
    assert Layout.open(out).resolve("all").digest == top.digest
    # an oci-archive holds the index too, and gives it back
    archive = tmp_path / "all.tar"
    pybuild_cli("copy", "--all", ref, f"oci-archive:{archive}:all")
    pybuild_cli("copy", "--all", f"oci-archive:{archive}:all", f"oci:{tmp_path / 'back'}:all")
    validate_layout(tmp_path / "back", "all")
    assert Layout.open(tmp_path / "back").resolve("all").digest == top.digest
    # a docker-archive holds images, not indexes
    proc = pybuild_cli("copy", "--all", ref, f"docker-archive:{tmp_path / 'x.tar'}", check=False)
    assert_fails(proc, 2, "a docker-archive holds images, not an index")
    assert not (tmp_path / "x.tar").exists()
    assert_fails(pybuild_cli("copy", "--all", "--platform", "linux/arm64", ref, "oci:/tmp/y", check=False), 2)
    # pull: the whole list, or one platform of it
    pulled = pybuild_cli("pull", "--all-platforms", f"{registry.host}/bb:all").stdout
    assert pulled.strip() == f"pulled {registry.host}/bb:all {top.digest}"
    listed = {i["name"]: i for i in json.loads(pybuild_cli("images", "--json").stdout)}
    assert listed[f"{registry.host}/bb:all"]["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    pybuild_cli("pull", "--platform", "linux/arm64", f"{registry.host}/bb@{top.digest}")
    store = ImageStore.at(pybuild_cli.store)
    _, one = store.lookup(f"{registry.host}/bb@{top.digest}")
    assert load_image(store, one).config.architecture == "arm64"
    # a list pulled as it is (compressed) can be pushed alone to where its images are
    again = pybuild_cli(
        "manifest", "push", "--no-all", f"{registry.host}/bb:all", f"docker://{registry.host}/bb:again"
    )
    assert again.stdout.strip() == str(top.digest)
    assert pybuild_cli("check").returncode == 0


def test_platform_list_build_from_a_registry_base(
    pybuild_cli: Any, multiarch_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    """FROM a list in a registry, for two platforms: each platform's image is pulled (one of them
    under the base's name, the other kept untagged for the build) and built on."""
    require_arm64_emulation()
    pybuild_cli("copy", "--all", f"oci:{multiarch_layout}:latest", f"docker://{registry.host}/bb:all")
    ctx = context(tmp_path / "ctx", f"FROM {registry.host}/bb:all\nRUN uname -m > /arch\n")
    out = tmp_path / "out"
    both = ["--platform", "linux/amd64,linux/arm64", "--timestamp", "0"]
    proc = pybuild_cli("build", *both, "-t", f"oci:{out}:built", str(ctx))
    assert "warning" not in proc.stderr, proc.stderr
    validate_layout(out, "built")
    layout = Layout.open(out)
    for entry in read_index(layout, layout.resolve("built")).manifests:
        image = load_image(layout, entry)
        assert entry.platform is not None and image.config.architecture == entry.platform.architecture
    # again, the base in the store now: one platform under its name, the other pulled beside it
    again = pybuild_cli("build", *both, "-t", f"oci:{out}:again", str(ctx))
    assert "warning" not in again.stderr, again.stderr
    assert layout.resolve("again").digest == layout.resolve("built").digest
    for platform, arch in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        pybuild_cli("copy", "-q", "--platform", platform, f"oci:{out}:built", "localhost/one")
        bundle = tmp_path / f"bundle-{arch}"
        pybuild_cli("unpack", "localhost/one", str(bundle))
        assert (bundle / "rootfs" / "arch").read_text() == f"{arch}\n"
    assert pybuild_cli("check").returncode == 0
