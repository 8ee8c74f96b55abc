"""OCI 1.1 referrers against a registry with the referrers API (the stub in ocistub.py), the races of
the tag-schema fallback, and registries that answer what the spec does not allow."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import (
    Descriptor,
    Digest,
    ImageStore,
    Index,
    Layout,
    Manifest,
    Platform,
    attach,
    check_layout,
    dump_json,
    mediatype,
    referrers,
)
from pybuild.layout.referrers import list_artifact, referrer_descriptor
from tests.fixtures.images import make_image, tar_entries
from tests.fixtures.rootless import PYBUILD, TEST_USER, as_test_user
from tests.fixtures.tools import validate_layout

from .ocistub import OCI_INDEX, StubRegistry, digest_of
from .referrers_helpers import SIG, SPDX, attach_to, fallback_tag, image_in_store, warnings_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(b"{}"), "size": 2}


def referrer_gets(stub: StubRegistry) -> list[str]:
    return [path for method, path, _ in stub.requests if method == "GET" and "/referrers/" in path]


def test_push_and_list_through_the_referrers_api(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    local = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=True)
    sbom = attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    attach_to(pybuild_cli.store, str(sbom.digest), SIG, b"signed sbom")
    with StubRegistry() as stub:
        pushed = pybuild_cli("push", "localhost/bb", f"docker://{stub.host}/bb:v1").stdout.strip()
        assert pushed != local
        assert sorted(stub.repo("bb").tags) == ["v1"]  # the registry answered OCI-Subject: no fallback tag
        [entry] = stub.referrers_of("bb", pushed)
        assert entry["artifactType"] == SPDX and entry["digest"] != str(sbom.digest)
        [sig] = stub.referrers_of("bb", entry["digest"])
        assert sig["artifactType"] == SIG

        listed = pybuild_cli("inspect", "--referrers", "--json", f"docker://{stub.host}/bb:v1").stdout
        assert [(r["digest"], r["subject"]) for r in json.loads(listed)] == [(entry["digest"], pushed)]
        assert referrer_gets(stub) == [f"/v2/bb/referrers/{pushed}"]
        assert not [p for m, p, _ in stub.requests if m == "GET" and fallback_tag(pushed) in p]
        # the filter goes to the registry, which applies it
        for wanted, expected in ((SIG, []), (SPDX, [entry["digest"]])):
            out = pybuild_cli(
                "inspect", "--referrers", "--artifact-type", wanted, "--json", f"docker://{stub.host}/bb:v1"
            ).stdout
            assert [r["digest"] for r in json.loads(out)] == expected
            assert (
                referrer_gets(stub)[-1]
                == f"/v2/bb/referrers/{pushed}?{urllib.parse.urlencode({'artifactType': wanted})}"
            )

        env = {"PYBUILD_STORE": str(tmp_path / "pulled")}
        pybuild_cli("pull", "--referrers", f"{stub.host}/bb:v1", env=env)
        store = ImageStore.at(tmp_path / "pulled")
        [got] = referrers(store, Digest.parse(pushed))
        assert str(got.digest) == entry["digest"] and got.artifact_type == SPDX
        assert [str(r.digest) for r in referrers(store, got.digest)] == [sig["digest"]]
        assert check_layout(store) == []


def test_listing_follows_pages(pybuild_cli: Any, busybox_layout: Path) -> None:
    image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    made = [attach_to(pybuild_cli.store, "localhost/bb", SIG, f"signature {i}".encode()) for i in range(3)]
    with StubRegistry(page_size=1) as stub:
        pushed = pybuild_cli("push", "localhost/bb", f"docker://{stub.host}/bb:v1").stdout.strip()
        listed = pybuild_cli("inspect", "--referrers", "--json", f"docker://{stub.host}/bb:v1").stdout
        assert sorted(r["digest"] for r in json.loads(listed)) == sorted(str(d.digest) for d in made)
        assert len(referrer_gets(stub)) == 3
        assert referrer_gets(stub)[1] == f"/v2/bb/referrers/{pushed}?last=1"


def _foreign_referrer(stub: StubRegistry, subject: str, size: int) -> dict[str, Any]:
    """Another tool's signature of ``subject`` in the stub: its entry in a referrers index."""
    stub.blobs[EMPTY["digest"]] = b"{}"
    stub.blobs[digest_of(b"foreign")] = b"foreign"
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.other.sig",
        "config": EMPTY,
        "layers": [{"mediaType": "application/octet-stream", "digest": digest_of(b"foreign"), "size": 7}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": size},
    }
    raw = dump_json(doc)
    digest = stub.put_manifest("bb", digest_of(raw), raw, OCI_MANIFEST)
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(raw),
        "artifactType": "application/vnd.other.sig",
    }


@pytest.mark.parametrize("conditional", [True, False], ids=["if-match", "read-back"])
def test_a_concurrent_update_of_the_referrers_tag_is_merged(
    pybuild_cli: Any, busybox_layout: Path, conditional: bool
) -> None:
    """Another client writes the referrers tag while pybuild does: with If-Match the registry
    refuses pybuild's stale write (412); without it, pybuild's read-back finds its entry gone. Either
    way pybuild reads again and merges: both entries are listed."""
    digest = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    size = len(ImageStore.at(pybuild_cli.store).blobs.read(Digest.parse(digest)))
    mine = attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    tag = fallback_tag(digest)
    with StubRegistry(referrers_api=False, conditional=conditional) as stub:
        pybuild_cli("push", "--no-referrers", "localhost/bb", f"docker://{stub.host}/bb:v1")
        theirs = _foreign_referrer(stub, digest, size)
        their_index = dump_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [theirs]})
        raced: list[str] = []

        def other_client(repo: str, reference: str, body: bytes) -> None:
            if reference == tag and not raced:
                raced.append(reference)
                stub.put_manifest(repo, tag, their_index, OCI_INDEX)  # written from a read made before ours

        if conditional:
            stub.before_put = other_client
        else:
            stub.after_put = other_client
        pybuild_cli("push", "localhost/bb", f"docker://{stub.host}/bb:v1")
        assert raced == [tag]
        entries = json.loads(stub.manifest("bb", tag))["manifests"]
        assert [e["digest"] for e in entries] == [theirs["digest"], str(mine.digest)]
        assert entries[0] == theirs  # kept as the other client wrote it
        puts = [p for m, p, _ in stub.requests if m == "PUT" and p.endswith(f"/manifests/{tag}")]
        assert len(puts) == 2
        conditional_headers = [h for m, p, h in stub.requests if m == "PUT" and p.endswith(tag)]
        assert conditional_headers[0].get("if-none-match") == "*"
        assert conditional_headers[1].get("if-match") == f'"{digest_of(their_index)}"'


def _pull_with_bad_listing(
    pybuild_cli: Any,
    busybox_layout: Path,
    tmp_path: Path,
    body: bytes,
    *fragments: str,
    headers: dict[str, str] | None = None,
) -> None:
    digest = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    with StubRegistry() as stub:
        pybuild_cli("push", "localhost/bb", f"docker://{stub.host}/bb:v1")
        stub.override[f"/v2/bb/referrers/{digest}"] = (
            200,
            {"Content-Type": OCI_INDEX, **(headers or {})},
            body,
        )
        env = {"PYBUILD_STORE": str(tmp_path / "pulled")}
        proc = pybuild_cli("pull", "--referrers", f"{stub.host}/bb:v1", env=env, check=False)
        [warning] = warnings_of(proc)
        for fragment in fragments:
            assert fragment in warning, warning
        store = ImageStore.at(tmp_path / "pulled")
        assert store.lookup(f"{stub.host}/bb:v1")[1].digest == Digest.parse(digest)  # pulled all the same
        assert referrers(store, Digest.parse(digest)) == []
        assert check_layout(store) == []
        listed = pybuild_cli("inspect", "--referrers", f"docker://{stub.host}/bb:v1", check=False)
        assert len(warnings_of(listed)) == 1


def test_a_referrers_answer_too_large_is_one_warning(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": digest_of(b"x"),
        "size": 1,
        "annotations": {"pad": "x" * 1024},
    }
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry] * 5000}).encode()
    assert len(body) > 4 << 20
    _pull_with_bad_listing(pybuild_cli, busybox_layout, tmp_path, body, "referrers of", "larger than")


def test_a_referrers_answer_nested_too_deep_is_one_warning(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    body = b'{"schemaVersion": 2, "manifests": [' + b"[" * 100000 + b"]" * 100000 + b"]}"
    _pull_with_bad_listing(pybuild_cli, busybox_layout, tmp_path, body, "referrers of", "nests deeper")


def test_a_referrers_answer_that_is_no_index_is_one_warning(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY, "layers": []}).encode()
    _pull_with_bad_listing(pybuild_cli, busybox_layout, tmp_path, body, "not an OCI image index")


def test_a_next_page_that_is_not_http_is_one_warning(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    link = {"Link": '<file:///etc/passwd>; rel="next"'}
    _pull_with_bad_listing(pybuild_cli, busybox_layout, tmp_path, body, "refused a next page", headers=link)


def test_a_referrer_of_another_image_is_one_warning(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    """The registry lists, among the image's referrers, one whose subject is another image: it is
    not taken; the image's own referrer is."""
    digest = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    mine = attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    with StubRegistry() as stub:
        pybuild_cli("push", "localhost/bb", f"docker://{stub.host}/bb:v1")
        stranger = _foreign_referrer(stub, digest_of(b"another image"), 100)
        listing = [*stub.referrers_of("bb", digest), stranger]
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listing}).encode()
        stub.override[f"/v2/bb/referrers/{digest}"] = (200, {"Content-Type": OCI_INDEX}, body)
        env = {"PYBUILD_STORE": str(tmp_path / "pulled")}
        proc = pybuild_cli("pull", "--referrers", f"{stub.host}/bb:v1", env=env, check=False)
        [warning] = warnings_of(proc)
        assert stranger["digest"] in warning and f"its subject is {digest_of(b'another image')}" in warning
        store = ImageStore.at(tmp_path / "pulled")
        assert [r.digest for r in referrers(store, Digest.parse(digest))] == [mine.digest]
        assert not store.blobs.exists(Digest.parse(stranger["digest"]))
        assert check_layout(store) == []


BUNDLE = "application/vnd.example.bundle"


def _index_with_referrers(root: Path) -> dict[str, Descriptor]:
    """An OCI layout with an index of two platform images, tagged ``multi``: an SBOM of each image,
    a signature of the index, and a bundle (an index artifact holding one manifest) of the amd64 one."""
    layout = Layout.create(root)
    amd64 = make_image(layout, [tar_entries({"etc/amd64": b"amd64"})])
    arm64 = make_image(layout, [tar_entries({"etc/arm64": b"arm64"})])
    index = Index.build(
        [
            Descriptor(amd64.media_type, amd64.digest, amd64.size, platform=Platform("amd64", "linux")),
            Descriptor(arm64.media_type, arm64.digest, arm64.size, platform=Platform("arm64", "linux", "v8")),
        ]
    )
    digest, size = layout.blobs.put(index.to_bytes())
    top = Descriptor(mediatype.OCI_INDEX, digest, size)
    layout.set_tag("multi", top)
    made = {
        "index": top,
        "amd64": amd64,
        "arm64": arm64,
        "index-sig": attach(layout, top, SIG, "application/octet-stream", b"signed index"),
        "amd64-sbom": attach(layout, amd64, SPDX, SPDX, b'{"arch": "amd64"}'),
        "arm64-sbom": attach(layout, arm64, SPDX, SPDX, b'{"arch": "arm64"}'),
    }
    with layout.writing():
        part, part_size = layout.blobs.put(b"a part of the bundle")
        layout.blobs.put(b"{}")
        inner = Manifest.new(
            {
                "schemaVersion": 2,
                "mediaType": mediatype.OCI_MANIFEST,
                "artifactType": BUNDLE,
                "config": EMPTY,
                "layers": [{"mediaType": "application/octet-stream", "digest": str(part), "size": part_size}],
            }
        )
        inner_digest, inner_size = layout.blobs.put(inner.to_bytes())
        bundle = Index.new(
            {
                "schemaVersion": 2,
                "mediaType": mediatype.OCI_INDEX,
                "artifactType": BUNDLE,
                "manifests": [
                    {"mediaType": mediatype.OCI_MANIFEST, "digest": str(inner_digest), "size": inner_size}
                ],
                "subject": {"mediaType": amd64.media_type, "digest": str(amd64.digest), "size": amd64.size},
            }
        )
        raw = bundle.to_bytes()
        bundle_digest, bundle_size = layout.blobs.put(raw)
        listed = referrer_descriptor(
            raw, Descriptor(mediatype.OCI_INDEX, bundle_digest, bundle_size), "bundle"
        )
        list_artifact(layout, listed)
    made["bundle"] = listed
    return made


def test_an_index_carries_the_referrers_of_its_manifests(pybuild_cli: Any, tmp_path: Path) -> None:
    """Copied whole between layouts, an index takes its own referrers and its manifests' along; to a
    registry, only the manifest for the platform goes, with its referrers (an index referrer too)."""
    made = _index_with_referrers(tmp_path / "a")
    validate_layout(tmp_path / "a", "multi")
    pybuild_cli("copy", f"oci:{tmp_path / 'a'}:multi", f"oci:{tmp_path / 'b'}:multi")
    copied = Layout.open(tmp_path / "b")
    assert [r.digest for r in referrers(copied, made["index"].digest)] == [made["index-sig"].digest]
    assert [r.digest for r in referrers(copied, made["amd64"].digest)] == [
        made["amd64-sbom"].digest,
        made["bundle"].digest,
    ]
    assert [r.digest for r in referrers(copied, made["arm64"].digest)] == [made["arm64-sbom"].digest]
    validate_layout(tmp_path / "b", "multi")

    with StubRegistry() as stub:
        pushed = pybuild_cli(
            "copy", "--platform", "linux/amd64", f"oci:{tmp_path / 'a'}:multi", f"docker://{stub.host}/bb:v1"
        )
        assert str(made["amd64"].digest) in pushed.stdout
        listed = stub.referrers_of("bb", str(made["amd64"].digest))
        assert sorted((e["digest"], e["artifactType"]) for e in listed) == sorted(
            [(str(made["amd64-sbom"].digest), SPDX), (str(made["bundle"].digest), BUNDLE)]
        )
        assert stub.referrers_of("bb", str(made["index"].digest)) == []  # the index is not there
        assert stub.referrers_of("bb", str(made["arm64"].digest)) == []

        env = {"PYBUILD_STORE": str(tmp_path / "pulled")}
        pybuild_cli("pull", "--referrers", "--platform", "linux/amd64", f"{stub.host}/bb:v1", env=env)
        store = ImageStore.at(tmp_path / "pulled")
        got = {r.digest: r for r in referrers(store, made["amd64"].digest)}
        assert set(got) == {made["amd64-sbom"].digest, made["bundle"].digest}
        assert got[made["bundle"].digest].media_type == mediatype.OCI_INDEX
        assert got[made["bundle"].digest].artifact_type == BUNDLE
        assert store.blobs.read(made["bundle"].digest) == Layout.open(tmp_path / "a").blobs.read(
            made["bundle"].digest
        )
        assert check_layout(store) == []


def test_a_layout_gets_rewritten_referrers_when_the_manifest_changes(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    """Store to oci: gzips uncompressed layers too: the SBOM in the layout names the new manifest."""
    local = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=True)
    sbom = attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    out = tmp_path / "out"
    written = pybuild_cli("copy", "localhost/bb", f"oci:{out}:v1").stdout.split()[-1]
    assert written != local
    layout = Layout.open(out)
    [moved] = referrers(layout, Digest.parse(written))
    assert moved.digest != sbom.digest and moved.artifact_type == SPDX
    manifest = json.loads(layout.blobs.read(moved.digest))
    assert manifest["subject"] == {
        "mediaType": mediatype.OCI_MANIFEST,
        "digest": written,
        "size": len(layout.blobs.read(Digest.parse(written))),
    }
    assert referrers(layout, Digest.parse(local)) == []
    validate_layout(out, "v1")


@pytest.mark.rootless
def test_referrers_round_trip_as_an_unprivileged_user(busybox_layout: Path, user_home: Path) -> None:
    """The same as the test user, in stores of its own: sbom --attach, push, pull --referrers."""
    oci = user_home / "oci"
    shutil.copytree(busybox_layout, oci)
    subprocess.run(["chown", "-R", TEST_USER, str(oci)], check=True)

    def pb(store: str, *args: str) -> subprocess.CompletedProcess[str]:
        proc = as_test_user([PYBUILD, *args], user_home, {"PYBUILD_STORE": str(user_home / store)})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    pb("store", "copy", "-q", "--compression", "none", f"oci:{oci}:latest", "localhost/bb")
    pb("store", "sbom", "--attach", "--timestamp", "0", "localhost/bb")
    with StubRegistry() as stub:
        pushed = pb("store", "push", "localhost/bb", f"docker://{stub.host}/bb:v1").stdout.strip()
        [entry] = stub.referrers_of("bb", pushed)
        pb("pulled", "pull", "--referrers", f"{stub.host}/bb:v1")
        listed = json.loads(pb("pulled", "inspect", "--referrers", "--json", f"{stub.host}/bb:v1").stdout)
        assert [(r["digest"], r["artifactType"], r["subject"]) for r in listed] == [
            (entry["digest"], SPDX, pushed)
        ]
        pb("pulled", "check")
    store = user_home / "pulled"
    assert all(p.stat().st_uid != 0 for p in store.rglob("*"))  # all the user's own
