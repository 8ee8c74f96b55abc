"""OCI 1.1 referrers against a registry with the referrers API (the stub in ocistub.py), the races of
the tag-schema fallback, and registries that answer what the spec does not allow."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import Digest, ImageStore, check_layout, dump_json, referrers

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
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path, body: bytes, *fragments: str
) -> None:
    digest = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    with StubRegistry() as stub:
        pybuild_cli("push", "localhost/bb", f"docker://{stub.host}/bb:v1")
        stub.override[f"/v2/bb/referrers/{digest}"] = (200, {"Content-Type": OCI_INDEX}, body)
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
