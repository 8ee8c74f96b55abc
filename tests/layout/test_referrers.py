"""OCI 1.1 artifacts in a layout: attach, list, check, gc; read back by skopeo and oci-image-tool."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pybuild.errors import BlobNotFound, UsageError
from pybuild.layout import (
    EMPTY_DESCRIPTOR,
    REF_NAME,
    Descriptor,
    Digest,
    Index,
    Layout,
    Manifest,
    Platform,
    attach,
    check_layout,
    gc,
    load_image,
    mediatype,
    read_manifest,
    referrers,
)
from tests.fixtures.images import make_image, tar_entries
from tests.fixtures.tools import run, validate_layout

SPDX = "application/spdx+json"
SIG = "application/vnd.example.signature"
CREATED = {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}


@pytest.fixture
def layout(busybox_layout: Path, tmp_path: Path) -> Layout:
    shutil.copytree(busybox_layout, tmp_path / "oci")
    return Layout.open(tmp_path / "oci")


def raw_index(layout: Layout) -> list[dict[str, Any]]:
    return list(json.loads((layout.root / "index.json").read_bytes())["manifests"])


def test_attach_writes_an_artifact_manifest_listed_in_index_json(layout: Layout) -> None:
    image = layout.resolve("latest")
    doc = b'{"spdxVersion": "SPDX-2.3"}'
    artifact = attach(layout, image, SPDX, SPDX, doc, CREATED)
    manifest = read_manifest(layout, artifact)
    raw = json.loads(manifest.to_bytes())
    assert raw["mediaType"] == mediatype.OCI_MANIFEST
    assert raw["artifactType"] == SPDX
    assert raw["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    }
    assert layout.blobs.read(EMPTY_DESCRIPTOR.digest) == b"{}"
    assert len(manifest.layers) == 1 and manifest.layers[0].media_type == SPDX
    assert layout.blobs.read(manifest.layers[0].digest) == doc
    assert raw["subject"] == {"mediaType": image.media_type, "digest": str(image.digest), "size": image.size}
    assert raw["annotations"] == CREATED
    # index.json lists it untagged, with artifactType and annotations, as the referrers API would
    entries = raw_index(layout)
    assert entries[-1] == {
        "mediaType": mediatype.OCI_MANIFEST,
        "digest": str(artifact.digest),
        "size": artifact.size,
        "artifactType": SPDX,
        "annotations": CREATED,
    }
    assert referrers(layout, image.digest) == [artifact]
    # the same document again changes nothing
    assert attach(layout, image, SPDX, SPDX, doc, CREATED) == artifact
    assert len(raw_index(layout)) == 2
    validate_layout(layout.root, "latest")


def test_referrers_filters_and_skips_other_subjects(layout: Layout) -> None:
    image = layout.resolve("latest")
    sbom = attach(layout, image, SPDX, SPDX, b"{}\n", CREATED)
    sig = attach(layout, image, SIG, "application/octet-stream", b"signed")
    # an artifact of an artifact: refers to the SBOM, not the image
    sbom_sig = attach(layout, sbom, SIG, "application/octet-stream", b"signed sbom")
    assert referrers(layout, image.digest) == [sbom, sig]
    assert referrers(layout, image.digest, SIG) == [sig]
    assert referrers(layout, sbom.digest) == [sbom_sig]
    assert referrers(layout, sig.digest) == []
    assert [d.annotations for d in referrers(layout, image.digest)] == [CREATED, {}]
    # tags and lookups see only the image
    assert [tag for tag, _ in layout.tags()] == ["latest"]
    validate_layout(layout.root, "latest")


def test_gc_keeps_artifacts_while_their_subject_lives(layout: Layout) -> None:
    image = layout.resolve("latest")
    sbom = attach(layout, image, SPDX, SPDX, b'{"a": 1}', CREATED)
    sbom_sig = attach(layout, sbom, SIG, "application/octet-stream", b"signed sbom")
    sbom_layer = read_manifest(layout, sbom).layers[0].digest
    stray = layout.blobs.put(b"nothing refers to me")[0]
    result = gc(layout)
    assert result.removed == [stray] and result.referrers == []
    assert referrers(layout, image.digest) == [sbom]
    assert layout.blobs.exists(sbom_layer) and layout.blobs.exists(EMPTY_DESCRIPTOR.digest)
    validate_layout(layout.root, "latest")

    layout.remove_tag("latest")
    result = gc(layout)
    assert sorted(result.referrers) == sorted([sbom.digest, sbom_sig.digest])
    assert raw_index(layout) == []
    assert list(layout.blobs.digests()) == []
    assert check_layout(layout) == []


def test_gc_drops_only_the_artifacts_of_the_image_that_went(layout: Layout, tmp_path: Path) -> None:
    kept = layout.resolve("latest")
    other = make_image(layout, [tar_entries({"etc/other": b"x"})], "other")
    keep_sbom = attach(layout, kept, SPDX, SPDX, b'{"image": "kept"}')
    drop_sbom = attach(layout, other, SPDX, SPDX, b'{"image": "other"}')
    drop_layer = read_manifest(layout, drop_sbom).layers[0].digest
    layout.remove_tag("other")
    result = gc(layout)
    assert result.referrers == [drop_sbom.digest]
    assert drop_layer in result.removed and other.digest in result.removed
    assert [m["digest"] for m in raw_index(layout)] == [str(kept.digest), str(keep_sbom.digest)]
    assert layout.blobs.exists(EMPTY_DESCRIPTOR.digest)  # the kept SBOM still uses it
    assert referrers(layout, kept.digest) == [keep_sbom]
    validate_layout(layout.root, "latest")


def test_artifact_of_a_platform_manifest_inside_an_index_lives_with_the_index(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "oci")
    child = make_image(layout, [tar_entries({"etc/a": b"a"})])
    index = Index.build(
        [Descriptor(child.media_type, child.digest, child.size, platform=Platform("amd64", "linux"))]
    )
    digest, size = layout.blobs.put(index.to_bytes())
    layout.set_tag("multi", Descriptor(mediatype.OCI_INDEX, digest, size))
    sbom = attach(layout, child, SPDX, SPDX, b"{}")
    assert gc(layout).referrers == []
    assert referrers(layout, child.digest) == [sbom]
    validate_layout(layout.root, "multi")


def test_skopeo_reads_and_copies_a_layout_holding_artifacts(layout: Layout, tmp_path: Path) -> None:
    image = layout.resolve("latest")
    attach(layout, image, SPDX, SPDX, b"{}", CREATED)
    attach(layout, image, SIG, "application/octet-stream", b"sig")
    info = json.loads(run(["skopeo", "inspect", f"oci:{layout.root}:latest"]).stdout)
    assert info["Digest"] == str(image.digest)
    run(["skopeo", "copy", "--all", f"oci:{layout.root}:latest", f"oci:{tmp_path / 'copy'}:latest"])
    validate_layout(tmp_path / "copy", "latest")
    copied = Layout.open(tmp_path / "copy")
    assert load_image(copied, copied.resolve("latest")).diff_ids == load_image(layout, image).diff_ids


def test_check_reports_a_broken_artifact(layout: Layout) -> None:
    image = layout.resolve("latest")
    sbom = attach(layout, image, SPDX, SPDX, b'{"x": 2}')
    layer = read_manifest(layout, sbom).layers[0].digest
    (layout.root / "blobs" / "sha256" / layer.encoded).write_bytes(b'{"x": 3}')
    problems = check_layout(layout)
    assert len(problems) == 1 and str(layer) in problems[0] and "corrupt" in problems[0]


def test_check_reports_an_artifact_without_artifact_type(layout: Layout) -> None:
    image = layout.resolve("latest")
    data = layout.blobs.put(b"doc")
    manifest = Manifest.new(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": EMPTY_DESCRIPTOR.to_dict(),
            "layers": [{"mediaType": SPDX, "digest": str(data[0]), "size": data[1]}],
            "subject": {"mediaType": image.media_type, "digest": str(image.digest), "size": image.size},
        }
    )
    layout.blobs.put(b"{}")
    digest, size = layout.blobs.put(manifest.to_bytes())
    layout.update_index(lambda ms: [*ms, Descriptor(mediatype.OCI_MANIFEST, digest, size, artifact_type=SIG)])
    problems = check_layout(layout)
    assert problems == [
        f"manifest {digest} in {layout.label}: its config is empty but it has no artifactType (manifest.md)",
        (
            f"manifest {digest} in {layout.label}: listed with artifactType {SIG}, but it is "
            "application/vnd.oci.empty.v1+json"
        ),
    ]
    # the referrers API falls back to the config's media type for such a manifest
    assert [d.artifact_type for d in referrers(layout, image.digest)] == [mediatype.OCI_EMPTY]


def test_bad_attach_input_is_refused_and_writes_nothing(layout: Layout) -> None:
    image = layout.resolve("latest")
    before = (layout.root / "index.json").read_bytes()
    blobs = set(layout.blobs.digests())
    config = load_image(layout, image).manifest.config
    with pytest.raises(UsageError, match="invalid artifact type 'not a type'"):
        attach(layout, image, "not a type", SPDX, b"{}")
    with pytest.raises(UsageError, match="invalid media type"):
        attach(layout, image, SPDX, "spdx", b"{}")
    with pytest.raises(UsageError, match="not an image manifest or index"):
        attach(layout, config, SPDX, SPDX, b"{}")
    with pytest.raises(UsageError, match="has no tag"):
        attach(layout, image, SPDX, SPDX, b"{}", {REF_NAME: "sbom"})
    missing = replace(image, digest=Digest.of_bytes(b"no such manifest"))
    with pytest.raises(BlobNotFound, match="not in oci:"):
        attach(layout, missing, SPDX, SPDX, b"{}")
    assert (layout.root / "index.json").read_bytes() == before
    assert set(layout.blobs.digests()) == blobs
