"""Images in a layout (layout/image.py): platforms, following indexes to a manifest, loading,
committing, and copying what an image references."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pybuild.errors import ImageNotFound, LayoutError, UsageError
from pybuild.layout import (
    Descriptor,
    Index,
    Layout,
    Platform,
    commit_image,
    copy_blobs,
    load_image,
    mediatype,
    parse_platform,
    referenced_blobs,
    select_manifest,
)
from tests.fixtures.images import make_config, make_image, put_layer
from tests.fixtures.tools import validate_layout


def test_parse_platform() -> None:
    assert parse_platform("linux/arm64/v8") == Platform("arm64", "linux", "v8")
    assert parse_platform("linux/amd64") == Platform("amd64", "linux")
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d"):
        with pytest.raises(UsageError, match="invalid platform"):
            parse_platform(bad)


def _index(layout: Layout, manifests: list[Descriptor]) -> Descriptor:
    digest, size = layout.blobs.put(Index.build(manifests).to_bytes())
    return Descriptor(mediatype.OCI_INDEX, digest, size)


def test_select_manifest_follows_an_index_to_the_platform(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    amd = make_image(layout, [busybox_tar])
    arm = make_image(layout, [busybox_tar[:-1024] + bytes(1024)])
    v7 = dataclasses.replace(arm, platform=Platform("arm", "linux", "v7"))
    index = _index(
        layout,
        [
            dataclasses.replace(amd, platform=Platform("amd64", "linux")),
            dataclasses.replace(arm, platform=Platform("arm", "linux", "v6")),
            v7,
        ],
    )
    assert select_manifest(layout, index, Platform("amd64", "linux")).digest == amd.digest
    assert select_manifest(layout, index, parse_platform("linux/arm/v7")) == v7  # the exact variant
    nested = _index(layout, [dataclasses.replace(index, platform=Platform("amd64", "linux"))])
    assert select_manifest(layout, nested, Platform("amd64", "linux")).digest == amd.digest
    with pytest.raises(ImageNotFound, match=r"has no image for .*s390x.*\(it has: .*arm.*\)"):
        select_manifest(layout, index, Platform("s390x", "linux"))
    single = _index(layout, [amd])  # no platform at all: the only manifest
    assert select_manifest(layout, single) == amd
    assert load_image(layout, single).descriptor == amd
    with pytest.raises(LayoutError, match="not an image manifest or index"):
        select_manifest(
            layout, dataclasses.replace(amd, media_type="application/vnd.oci.image.config.v1+json")
        )
    layout.set_tag("multi", index)  # (oci-image-tool does not follow an index inside an index)
    validate_layout(tmp_path / "l", "multi")


def test_commit_image_checks_its_layers(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    layer, diff_id = put_layer(layout, busybox_tar)
    with pytest.raises(LayoutError, match="config has 0 diff_ids but the image has 1 layers"):
        commit_image(layout, make_config([]), [layer])
    missing = dataclasses.replace(layer, digest=type(layer.digest)("sha256", "f" * 64))
    with pytest.raises(LayoutError, match=f"layer {missing.digest} is not in"):
        commit_image(layout, make_config([diff_id]), [missing])
    with layout.writing():
        desc = commit_image(layout, make_config([diff_id]), [layer])
        layout.set_tag("v1", desc)
    image = load_image(layout, desc)
    assert image.layers == [layer] and image.diff_ids == [diff_id]
    assert image.id == str(image.manifest.config.digest) and not image.is_docker
    validate_layout(tmp_path / "l", "v1")


def test_copy_blobs_copies_what_an_image_references(tmp_path: Path, busybox_tar: bytes) -> None:
    src, dst = Layout.create(tmp_path / "src"), Layout.create(tmp_path / "dst")
    desc = make_image(src, [busybox_tar])
    index = _index(src, [desc])
    refs = referenced_blobs(src, index)
    assert [r.digest for r in refs[:2]] == [index.digest, desc.digest] and len(refs) == 4
    with dst.writing():
        assert copy_blobs(src, dst, index) == 4
        assert copy_blobs(src, dst, index) == 0  # already there: nothing copied twice
        dst.set_tag("v1", index)
    validate_layout(tmp_path / "dst", "v1")
