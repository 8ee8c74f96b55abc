"""docker-archive and oci-archive, read and written, checked against skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from fixtures.images import make_busybox_image, make_image, tar_entries

from pybuild.errors import DigestMismatch
from pybuild.layout import Descriptor, Digest, ImageStore, Layout, check_layout, load_image, mediatype
from pybuild.remote import (
    ArchiveReference,
    LayoutReference,
    copy_image,
    parse_image_reference,
    read_docker_archive,
    read_oci_archive,
    write_docker_archive,
    write_oci_archive,
)

from .conftest import check, skopeo

pytestmark = pytest.mark.slow


def test_parse_image_reference() -> None:
    assert parse_image_reference("docker-archive:/tmp/a.tar:app:v1") == ArchiveReference(
        "docker-archive", Path("/tmp/a.tar"), "app:v1"
    )
    assert parse_image_reference("docker-archive:/tmp/a.tar") == ArchiveReference(
        "docker-archive", Path("/tmp/a.tar"), None
    )
    assert parse_image_reference("oci-archive:/tmp/a.tar:v2") == ArchiveReference(
        "oci-archive", Path("/tmp/a.tar"), "v2"
    )
    # the name after the first colon is the whole name, as containers/image reads it
    assert parse_image_reference("docker-archive:/tmp/a.tar:localhost:5000/app:v1") == ArchiveReference(
        "docker-archive", Path("/tmp/a.tar"), "localhost:5000/app:v1"
    )
    assert parse_image_reference("docker-archive:/tmp/a.tar:app") == ArchiveReference(
        "docker-archive", Path("/tmp/a.tar"), "app:latest"
    )
    assert parse_image_reference("oci-archive:/tmp/a.tar:localhost/app:v1") == ArchiveReference(
        "oci-archive", Path("/tmp/a.tar"), "localhost/app:v1"
    )
    assert parse_image_reference("oci-archive:/tmp/a.tar") == ArchiveReference(
        "oci-archive", Path("/tmp/a.tar"), None
    )
    assert parse_image_reference("oci:/tmp/dir:t") == LayoutReference("oci", "t", Path("/tmp/dir"))
    assert parse_image_reference("app:v1") == LayoutReference("store", "docker.io/library/app:v1", None)


def test_docker_archive_written_by_pybuild_is_read_by_skopeo(tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    archive = tmp_path / "image.tar"
    write_docker_archive(src, desc, archive, ["localhost/app:v1"])
    with tarfile.open(archive) as tar:
        entries = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert entries[0]["RepoTags"] == ["localhost/app:v1"]
        image = load_image(src, desc)
        layer = tar.extractfile(entries[0]["Layers"][0]).read()  # type: ignore[union-attr]
        assert "sha256:" + hashlib.sha256(layer).hexdigest() == str(image.diff_ids[0])
        assert tar.extractfile(entries[0]["Config"]).read() == src.blobs.read(  # type: ignore[union-attr]
            image.manifest.config.digest
        )
    out = tmp_path / "out"
    skopeo("copy", f"docker-archive:{archive}", f"oci:{out}:t")
    check(out, "t")
    got = load_image(Layout.open(out), Layout.open(out).resolve("t"))
    # skopeo re-serialises the config when it converts Docker schema 2 to OCI: compare the JSON
    assert got.config.to_dict() == image.config.to_dict()
    assert got.diff_ids == image.diff_ids
    # and pybuild reads its own archive back, config byte-exact, layers stored uncompressed
    back = Layout.create(tmp_path / "back")
    d = read_docker_archive(archive, back, "v1", name="localhost/app:v1")
    again = load_image(back, d)
    assert again.manifest.config.digest == image.manifest.config.digest
    assert again.layers[0].media_type == mediatype.OCI_LAYER
    assert again.layers[0].digest == image.diff_ids[0]
    check(back.root, "v1")


def test_docker_archive_written_by_skopeo_is_read_by_pybuild(tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    archive = tmp_path / "sk.tar"
    skopeo("copy", f"oci:{src.root}:v1", f"docker-archive:{archive}:example.com/app:v3")
    out = Layout.create(tmp_path / "out")
    got = read_docker_archive(archive, out, "mine", name="example.com/app:v3")
    image = load_image(out, got)
    original = load_image(src, desc)
    assert image.manifest.config.digest == original.manifest.config.digest
    assert image.diff_ids == original.diff_ids
    check(out.root, "mine")
    with pytest.raises(Exception, match="no image 'other:v1'"):
        read_docker_archive(archive, out, "x", name="other:v1")


def test_docker_archive_with_wrong_diff_id_is_refused(tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    archive = tmp_path / "image.tar"
    write_docker_archive(src, desc, archive, ["app:v1"])
    # rewrite the archive with a gzip layer whose content differs
    bad = tmp_path / "bad.tar"
    with tarfile.open(archive) as tin, tarfile.open(bad, "w") as tout:
        for info in tin:
            data = tin.extractfile(info).read()  # type: ignore[union-attr]
            if info.name.endswith(".tar"):
                data = gzip.compress(data + b"\0" * 512)
                info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    out = Layout.create(tmp_path / "out")
    before = (out.root / "index.json").read_bytes()
    with pytest.raises(DigestMismatch, match="diff_id"):
        read_docker_archive(bad, out, "v1")
    assert (out.root / "index.json").read_bytes() == before


def test_oci_archive_round_trip_with_skopeo(tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    archive = tmp_path / "oci.tar"
    write_oci_archive(src, desc, archive, "v1")
    out = tmp_path / "out"
    skopeo("copy", f"oci-archive:{archive}:v1", f"oci:{out}:t")
    check(out, "t")
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == str(desc.digest)
    sk_archive = tmp_path / "sk-oci.tar"
    skopeo("copy", f"oci:{src.root}:v1", f"oci-archive:{sk_archive}:v9")
    back = Layout.create(tmp_path / "back")
    assert read_oci_archive(sk_archive, back, "v9", "mine").digest == desc.digest
    check(back.root, "mine")


def test_oci_archive_named_like_an_image_is_read_by_skopeo(tmp_path: Path) -> None:
    """`oci-archive:FILE:localhost/app:v1` writes FILE with the ref.name `localhost/app:v1` (it
    made a directory `FILE:localhost` before), and skopeo and pybuild find the image by that name."""
    store = ImageStore.at(tmp_path / "store")
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    copy_image(f"oci:{src.root}:v1", "localhost/app:v1", store=store)
    archive = tmp_path / "named.tar"
    copy_image("localhost/app:v1", f"oci-archive:{archive}:localhost/app:v1", store=store)
    assert archive.is_file() and not (tmp_path / "named.tar:localhost").exists()
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "localhost/app:v1"
    ]
    out = tmp_path / "out"
    skopeo("copy", f"oci-archive:{archive}:localhost/app:v1", f"oci:{out}:t")
    check(out, "t")
    got = copy_image(f"oci-archive:{archive}:localhost/app:v1", f"oci:{tmp_path / 'back'}:b", store=store)
    check(tmp_path / "back", "b")
    copied = Layout.open(out)
    assert load_image(copied, copied.resolve("t")).diff_ids == load_image(src, desc).diff_ids
    assert got.digest == copied.resolve("t").digest


def test_copy_image_between_transports(tmp_path: Path) -> None:
    store = ImageStore.at(tmp_path / "store")
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    digestfile = tmp_path / "digest"
    got = copy_image(f"oci:{src.root}:v1", "app:v1", store=store, digestfile=digestfile)
    assert got.digest == desc.digest
    assert digestfile.read_text() == str(desc.digest)
    check(store.root, "docker.io/library/app:v1")
    copy_image("app:v1", f"oci-archive:{tmp_path / 'a.tar'}:x", store=store)
    copy_image(
        f"oci-archive:{tmp_path / 'a.tar'}:x", f"docker-archive:{tmp_path / 'd.tar'}:app:v2", store=store
    )
    got = copy_image(
        f"docker-archive:{tmp_path / 'd.tar'}:app:v2", f"oci:{tmp_path / 'final'}:done", store=store
    )
    check(tmp_path / "final", "done")
    final = load_image(Layout.open(tmp_path / "final"), got)
    assert final.manifest.config.digest == load_image(src, desc).manifest.config.digest


def test_docker_archive_from_zstd_and_plain_layers(tmp_path: Path) -> None:
    import zstandard
    from fixtures.images import make_config, put_layer, tar_tree
    from fixtures.rootfs import make_busybox_rootfs

    from pybuild.layout import Descriptor, commit_image

    src = Layout.create(tmp_path / "src")
    tree = tar_tree(make_busybox_rootfs(tmp_path / "rootfs"))
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    with src.writing():
        plain, plain_id = put_layer(src, tree, "none")
        data = zstandard.ZstdCompressor().compress(extra.getvalue())
        digest, size = src.blobs.put(data)
        zstd = Descriptor(mediatype.OCI_LAYER_ZSTD, digest, size)
        zstd_id = Digest.of_bytes(extra.getvalue())
        desc = commit_image(src, make_config([plain_id, zstd_id]), [plain, zstd])
        src.set_tag("v1", desc)
    archive = tmp_path / "image.tar"
    write_docker_archive(src, desc, archive, ["app:v1"])
    out = tmp_path / "out"
    skopeo("copy", f"docker-archive:{archive}", f"oci:{out}:t")
    check(out, "t")
    back = Layout.create(tmp_path / "back")
    got = load_image(back, read_docker_archive(archive, back, "v1"))
    assert got.diff_ids == [plain_id, zstd_id]
    assert [layer.digest for layer in got.layers] == [plain_id, zstd_id]
    check(back.root, "v1")


def test_truncated_archives_are_refused(tmp_path: Path) -> None:
    from pybuild.errors import RegistryError

    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    for kind, write, read in (
        ("docker-archive", write_docker_archive, read_docker_archive),
        ("oci-archive", write_oci_archive, read_oci_archive),
    ):
        archive = tmp_path / f"{kind}.tar"
        write(src, desc, archive, ["app:v1"] if kind == "docker-archive" else "v1")  # type: ignore[operator]
        data = archive.read_bytes()
        archive.write_bytes(data[: len(data) // 2])
        out = Layout.create(tmp_path / f"out-{kind}")
        before = (out.root / "index.json").read_bytes()
        with pytest.raises(RegistryError, match=f"{kind}:{archive}"):
            read(archive, out, "v1")  # type: ignore[operator]
        assert (out.root / "index.json").read_bytes() == before
        assert check_layout(out) == []


def _tar_layout(layout: Path, archive: Path) -> None:
    """An oci-archive made by hand: a tar of the layout's files (its .pybuild area left out)."""
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)


def test_oci_archive_with_an_untagged_image_and_its_sbom(pybuild_cli: Any, tmp_path: Path) -> None:
    """An archive whose index.json lists an untagged image and its SBOM (an OCI 1.1 artifact with a
    subject, untagged as referrers are): without a tag, the image is the one to read."""
    src = Layout.create(tmp_path / "src")
    desc = make_busybox_image(src, "v1")
    pybuild_cli("sbom", "--attach", f"oci:{src.root}:v1")
    src.remove_tag("v1")
    src.update_index(lambda manifests: [*manifests, Descriptor(desc.media_type, desc.digest, desc.size)])
    listed = src.read_index().manifests
    assert len(listed) == 2 and not any(m.ref_name for m in listed)
    archive = tmp_path / "with-sbom.tar"
    _tar_layout(src.root, archive)
    got = read_oci_archive(archive, Layout.create(tmp_path / "api"), None, "t")
    assert got.digest == desc.digest
    check(tmp_path / "api", "t")
    pybuild_cli("copy", f"oci-archive:{archive}", f"oci:{tmp_path / 'cli'}:t")
    check(tmp_path / "cli", "t")
    copied = Layout.open(tmp_path / "cli")
    image = load_image(copied, copied.resolve("t"))
    assert image.manifest.config.digest == load_image(src, desc).manifest.config.digest
    # two images (the artifact still aside) stay ambiguous: one error line names the count
    other = make_image(src, [tar_entries({"other": "another image\n"})], "other")
    src.remove_tag("other")
    src.update_index(lambda manifests: [*manifests, Descriptor(other.media_type, other.digest, other.size)])
    _tar_layout(src.root, archive)
    proc = pybuild_cli("copy", f"oci-archive:{archive}", f"oci:{tmp_path / 'none'}:t", check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        f"error: oci-archive:{archive}: the archive holds 2 images: name one (oci-archive:PATH:TAG)"
    )


def test_archive_documents_of_a_docker_archive_with_a_gzip_layer(tmp_path: Path) -> None:
    """A docker-archive whose layer is gzipped (older `docker save`, hand-made archives): inspect's
    reading hashes the member as it streams by and names the manifest `copy` makes, digest for digest."""
    from pybuild.remote.archivedocs import archive_documents

    layer = tar_entries({"hello": "hi\n"})
    gzipped = gzip.compress(layer, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [str(Digest.of_bytes(layer))]},
        }
    ).encode()
    archive = tmp_path / "gz.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (
            ("layer.tar.gz", gzipped),
            ("config.json", config),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": "config.json", "RepoTags": ["app:v1"], "Layers": ["layer.tar.gz"]}]
                ).encode(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    docs = Layout.create(tmp_path / "docs")
    ref = parse_image_reference(f"docker-archive:{archive}:app:v1")
    assert isinstance(ref, ArchiveReference)
    seen = archive_documents(ref, docs)
    back = Layout.create(tmp_path / "back")
    stored = read_docker_archive(archive, back, "v1")
    assert seen == stored
    image = load_image(docs, seen)
    assert [(layer.media_type, str(layer.digest)) for layer in image.layers] == [
        (mediatype.OCI_LAYER_GZIP, "sha256:" + hashlib.sha256(gzipped).hexdigest())
    ]
    assert not docs.blobs.exists(image.layers[0].digest)  # documents only: no layer in the scratch layout
    check(back.root, "v1")
