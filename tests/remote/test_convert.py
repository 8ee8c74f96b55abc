"""Docker schema 2 images on their way to a destination that takes only OCI (an oci: layout, an
oci-archive): converted as skopeo converts them (containers/image), so that oci-image-tool accepts
the result; the config bytes (the image ID) stay. The store and registries keep Docker as it is."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import Descriptor, Layout, check_layout, copy_blobs, dump_json, mediatype
from tests.fixtures.tools import validate_documents, validate_layout

from .conftest import RegistryServer, check, skopeo

pytestmark = pytest.mark.slow

OCI_LAYERS = {mediatype.OCI_LAYER, mediatype.OCI_LAYER_GZIP}


def _tar_layout(layout: Path, archive: Path) -> None:
    """An oci-archive as `ctr images export` writes one: a tar of an OCI layout (here listing Docker
    schema 2 documents, as containerd's export does for Docker images)."""
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)


def _manifest_in(ref: str) -> dict[str, Any]:
    """The manifest skopeo reads at ``ref`` (an oci: layout or an oci-archive)."""
    return json.loads(skopeo("inspect", "--raw", ref).stdout)


def _assert_oci(manifest: dict[str, Any], config_digest: str) -> None:
    assert manifest["mediaType"] == mediatype.OCI_MANIFEST
    assert manifest["config"]["mediaType"] == mediatype.OCI_CONFIG
    assert manifest["config"]["digest"] == config_digest  # the config bytes stay: the image ID stays
    assert {layer["mediaType"] for layer in manifest["layers"]} <= OCI_LAYERS


def test_docker_schema2_becomes_oci_in_oci_destinations(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    # a Docker schema 2 image with gzip layers in a registry (skopeo writes it so)
    remote = f"docker://{registry.host}/bb:v2s2"
    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{busybox_layout}:latest", remote)
    theirs = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", remote).stdout)
    assert theirs["mediaType"] == mediatype.DOCKER_MANIFEST
    config_digest = theirs["config"]["digest"]
    # the store keeps it as it is
    pybuild_cli("pull", f"{registry.host}/bb:v2s2")
    name = f"{registry.host}/bb:v2s2"
    assert json.loads(pybuild_cli("inspect", "--json", name).stdout)["mediaType"] == mediatype.DOCKER_MANIFEST
    # `ctr images export`: an oci-archive whose index.json names the Docker manifest, and a
    # Docker manifest list of it
    store = Layout.open(pybuild_cli.store)
    desc = store.resolve(name)
    ctr = Layout.create(tmp_path / "ctr")
    with ctr.writing():
        copy_blobs(store, ctr, desc)
        ctr.set_tag("v1", Descriptor(desc.media_type, desc.digest, desc.size))
        child = Descriptor(desc.media_type, desc.digest, desc.size).to_dict()
        child["platform"] = {"architecture": "amd64", "os": "linux"}
        listing = dump_json(
            {"schemaVersion": 2, "mediaType": mediatype.DOCKER_MANIFEST_LIST, "manifests": [child]}
        )
        digest, size = ctr.blobs.put(listing)
        ctr.set_tag("list", Descriptor(mediatype.DOCKER_MANIFEST_LIST, digest, size))
    archive = tmp_path / "ctr.tar"
    _tar_layout(ctr.root, archive)

    cases = [
        (name, "from-store"),  # between two layouts
        (remote, "from-registry"),  # pulled straight into the layout
        (f"oci-archive:{archive}:v1", "from-archive"),
    ]
    for src, out in cases:
        pybuild_cli("copy", "--src-tls-verify=false", src, f"oci:{tmp_path / out}:t")
        check(tmp_path / out, "t")  # pybuild's check and oci-image-tool validate
        _assert_oci(_manifest_in(f"oci:{tmp_path / out}:t"), config_digest)
    pybuild_cli("copy", f"oci-archive:{archive}:v1", f"oci-archive:{tmp_path / 'o.tar'}:t")
    _assert_oci(_manifest_in(f"oci-archive:{tmp_path / 'o.tar'}:t"), config_digest)
    pybuild_cli("copy", f"oci-archive:{tmp_path / 'o.tar'}:t", f"oci:{tmp_path / 'o'}:t")
    check(tmp_path / "o", "t")
    # a Docker manifest list, copied whole between two layouts: an OCI index of OCI manifests
    pybuild_cli("copy", f"oci:{ctr.root}:list", f"oci:{tmp_path / 'index'}:t")
    validate_layout(tmp_path / "index")
    out = Layout.open(tmp_path / "index")
    index_desc = out.resolve("t")
    assert index_desc.media_type == mediatype.OCI_INDEX
    index = json.loads(out.blobs.read(index_desc.digest, index_desc.size))
    assert index["mediaType"] == mediatype.OCI_INDEX
    assert [m["platform"] for m in index["manifests"]] == [{"architecture": "amd64", "os": "linux"}]
    assert [m["mediaType"] for m in index["manifests"]] == [mediatype.OCI_MANIFEST]
    child_desc = Descriptor.from_dict(index["manifests"][0])
    _assert_oci(json.loads(out.blobs.read(child_desc.digest, child_desc.size)), config_digest)
    # registries keep Docker as it is, as skopeo does
    pybuild_cli("push", "--tls-verify=false", name, f"docker://{registry.host}/bb:again")
    again = json.loads(
        skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/bb:again").stdout
    )
    assert again["mediaType"] == mediatype.DOCKER_MANIFEST and again["config"]["digest"] == config_digest


def test_a_docker_format_build_becomes_oci_in_an_oci_layout(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    """`build --format docker` keeps plain tar layers in the store (Docker's uncompressed type); on
    the way to an oci: layout they are gzipped and the whole image becomes OCI, config unchanged."""
    pybuild_cli("copy", f"oci:{busybox_layout}", "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text('FROM busybox\nRUN echo hi > /hi\nHEALTHCHECK CMD ["true"]\n')
    pybuild_cli("build", "--format", "docker", "-t", "localhost/docker-format", str(ctx))
    stored = json.loads(pybuild_cli("inspect", "--json", "localhost/docker-format").stdout)
    assert stored["mediaType"] == mediatype.DOCKER_MANIFEST
    for compression in ([], ["--compression", "zstd"]):
        out = tmp_path / f"out{len(compression)}"
        pybuild_cli("copy", *compression, "localhost/docker-format", f"oci:{out}:t")
        if compression:  # oci-image-tool predates zstd layers: the image-spec's own schemas then
            assert check_layout(Layout.open(out)) == []
            validate_documents(out)
        else:
            check(out, "t")
        manifest = _manifest_in(f"oci:{out}:t")
        assert manifest["mediaType"] == mediatype.OCI_MANIFEST
        assert manifest["config"] == {
            **manifest["config"],
            "mediaType": mediatype.OCI_CONFIG,
            "digest": stored["config"],
        }
        expected = mediatype.OCI_LAYER_ZSTD if compression else mediatype.OCI_LAYER_GZIP
        assert {layer["mediaType"] for layer in manifest["layers"]} == {expected}
