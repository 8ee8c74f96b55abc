"""containerd runs what pybuild writes, and pybuild reads what containerd exports.

A rootless pybuild build (COPY --chown, RUN, USER, ENV, WORKDIR, ENTRYPOINT, CMD) is written as an
oci-archive and a docker-archive, imported with `ctr images import` into a private containerd, run
with `ctr run --rm`; `ctr images export` of it is read back by `pybuild copy` with the same config
digest and diff_ids, and what pybuild wrote passes its check and oci-image-tool validate.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from pybuild.layout import mediatype
from tests.fixtures.cli import Pybuild
from tests.fixtures.daemons import Containerd

from .conftest import (
    APP_OUTPUT,
    WHITEOUT_OUTPUT,
    Images,
    archive_manifest,
    archive_of,
    assert_same_image,
    ctr_import,
    ctr_run,
    pybuild_reads_back,
    validate_copy,
)

pytestmark = pytest.mark.slow

KINDS = ["oci-archive", "docker-archive"]


@pytest.mark.parametrize("kind", KINDS)
def test_ctr_runs_pybuild_image(containerd: Containerd, images: Images, kind: str) -> None:
    app = images.app
    ctr_import(containerd, app, kind)
    status, out = ctr_run(containerd, app.name)
    # USER, WORKDIR, ENV, ENTRYPOINT + CMD, COPY --chown's and the RUN's chown owners
    assert (status, out.splitlines()) == (0, APP_OUTPUT)
    status, out = ctr_run(containerd, app.name, "/bin/env")
    env = out.splitlines()
    # the image's Env in its order; containerd adds HOME (/ for a user without a passwd entry)
    assert (status, env) == (0, [*app.runtime["Env"], "HOME=/"])
    assert "GREETING=hello from pybuild" in env
    # ctr's arguments replace ENTRYPOINT and CMD both; the process's status is ctr's
    assert ctr_run(containerd, app.name, "sh", "-c", "exit 7") == (7, "")


def test_ctr_export_of_pybuild_oci_archive_is_read_back(
    containerd: Containerd, images: Images, root_pybuild: Pybuild, tmp_path: Path
) -> None:
    """Imported from pybuild's oci-archive, containerd keeps pybuild's manifest, and exports it so."""
    app = images.app
    ctr_import(containerd, app, "oci-archive")
    exported = tmp_path / "exported.tar"
    containerd.ctr("images", "export", str(exported), app.name)
    # containerd writes an OCI layout (ref.name: the tag) and a manifest.json for docker load beside it
    for n, source in enumerate(
        [f"oci-archive:{exported}:v1", f"oci-archive:{exported}", f"docker-archive:{exported}:{app.name}"]
    ):
        back = pybuild_reads_back(root_pybuild, source, f"localhost/back-oci-{n}:v1")
        assert (back.config_digest, back.diff_ids, back.config) == (
            app.config_digest,
            app.diff_ids,
            app.config,
        )
        if source.startswith("oci-archive:"):
            assert back.manifest_digest == archive_manifest(archive_of(app, "oci-archive"))
            assert back.manifest_media_type == mediatype.OCI_MANIFEST
        validate_copy(root_pybuild, back.name, tmp_path / f"layout{n}")


def test_ctr_export_of_pybuild_docker_archive_is_read_back(
    containerd: Containerd, images: Images, root_pybuild: Pybuild, tmp_path: Path
) -> None:
    """Imported from pybuild's docker-archive, containerd makes a Docker schema 2 manifest (its
    layers gzipped); the export read back has pybuild's config and diff_ids all the same."""
    app = images.app
    ctr_import(containerd, app, "docker-archive")
    exported = tmp_path / "exported.tar"
    containerd.ctr("images", "export", str(exported), app.name)
    back = pybuild_reads_back(
        root_pybuild, f"docker-archive:{exported}:{app.name}", "localhost/back-docker:v1"
    )
    assert_same_image(back, app)
    validate_copy(root_pybuild, back.name, tmp_path / "layout")
    # read through the OCI layout, the image keeps containerd's Docker manifest as it is (pybuild's
    # check passes; `pybuild copy` to an oci: layout would keep that media type, which
    # oci-image-tool refuses: not converted, unlike skopeo)
    back = pybuild_reads_back(root_pybuild, f"oci-archive:{exported}:v1", "localhost/back-docker-oci:v1")
    assert_same_image(back, app)
    assert back.manifest_media_type == mediatype.DOCKER_MANIFEST


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_ctr_runs_pybuild_oci_archive_compressed_otherwise(
    containerd: Containerd, images: Images, root_pybuild: Pybuild, tmp_path: Path, compression: str
) -> None:
    """`pybuild copy --compression zstd|none` to an oci-archive: containerd unpacks those layers too
    (whiteouts included) and keeps the manifest pybuild wrote."""
    image = images.whiteouts["root"]
    name = f"localhost/interop/{compression}:v1"
    archive = tmp_path / "a.tar"
    root_pybuild("copy", "-q", "--compression", compression, image.name, f"oci-archive:{archive}:{name}")
    blob = "blobs/" + archive_manifest(archive).replace(":", "/")
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(blob).read())  # type: ignore[union-attr]
    media_type = {"zstd": mediatype.OCI_LAYER_ZSTD, "none": mediatype.OCI_LAYER}[compression]
    assert [layer["mediaType"] for layer in manifest["layers"]] == [media_type] * len(image.diff_ids)
    ctr_import(containerd, replace(image, name=name, oci_archive=archive), "oci-archive")
    assert ctr_run(containerd, name) == (0, "\n".join(WHITEOUT_OUTPUT) + "\n")
