"""Whiteouts across tools: a layer that deletes a file and makes a directory opaque, as pybuild
writes it (built as root and rootless), applied by containerd (each snapshotter that works here)
and by Docker: the file is gone, and so is the opaque directory's old content."""

from __future__ import annotations

import json
import tarfile

import pytest

from tests.fixtures.daemons import Containerd, Dockerd

from .conftest import WHITEOUT_OUTPUT, Images, archive_of, ctr_import, ctr_run

pytestmark = pytest.mark.slow

MODES = ["root", "rootless"]


@pytest.mark.parametrize("mode", MODES)
def test_pybuild_wrote_the_whiteouts(images: Images, mode: str) -> None:
    """The image really carries a whiteout and an opaque whiteout (not a squashed tree)."""
    archive = archive_of(images.whiteouts[mode], "docker-archive")
    with tarfile.open(archive) as tar:
        layers = json.loads(tar.extractfile("manifest.json").read())[0]["Layers"]  # type: ignore[union-attr]
        last = tar.extractfile(layers[-1])
        assert last is not None
        with tarfile.open(fileobj=last) as layer:
            names = sorted(m.name for m in layer)
    assert names == ["data", "data/.wh.gone", "opq", "opq/.wh..wh..opq", "opq/new"]


@pytest.mark.parametrize("mode", MODES)
def test_containerd_applies_pybuild_whiteouts(containerd: Containerd, images: Images, mode: str) -> None:
    image = images.whiteouts[mode]
    ctr_import(containerd, image, "oci-archive")
    # the snapshotter containerd's probe chose here (overlayfs keeps whiteouts as overlay whiteouts)
    # and native (which applies them to a copied tree); ctr run unpacks the image for each
    for snapshotter in sorted({containerd.snapshotter, "native"}):
        status, out = ctr_run(containerd, image.name, snapshotter=snapshotter)
        assert (status, out.splitlines()) == (0, WHITEOUT_OUTPUT), snapshotter


@pytest.mark.parametrize("mode", MODES)
def test_docker_applies_pybuild_whiteouts(dockerd: Dockerd, images: Images, mode: str) -> None:
    image = images.whiteouts[mode]
    out = dockerd.docker("load", "-i", str(archive_of(image, "docker-archive"))).stdout
    assert out.splitlines() == [f"Loaded image: {image.name}"]
    proc = dockerd.docker("run", "--rm", "--network", "none", image.name)
    assert proc.stdout.splitlines() == WHITEOUT_OUTPUT, dockerd.storage_driver
