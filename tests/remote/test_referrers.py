"""OCI 1.1 referrers against docker-registry 2.8, which has no referrers API: the tag-schema fallback.

Pushed, listed, copied docker:// -> oci: -> docker://, pulled with --referrers, read back by skopeo.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import Digest, ImageStore, Layout, check_layout, gc, referrers
from pybuild.remote.registry.referrers import referrers_tag
from tests.fixtures.tools import validate_layout

from .conftest import RegistryServer, skopeo
from .referrers_helpers import SIG, SPDX, attach_to, fallback_tag, get, image_in_store, tags, warnings_of

pytestmark = pytest.mark.slow


def raw_of(ref: str) -> dict[str, Any]:
    return dict(json.loads(skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout))


def sbom_of(store: Path) -> tuple[str, bytes]:
    """The SBOM `pybuild sbom --attach` stored: (artifact digest, document bytes)."""
    layout = ImageStore.at(store)
    for desc in layout.read_index().manifests:
        if desc.artifact_type == SPDX:
            manifest = json.loads(layout.blobs.read(desc.digest))
            return str(desc.digest), layout.blobs.read(Digest.parse(manifest["layers"][0]["digest"]))
    raise AssertionError("no SBOM in the store")


def test_referrers_tag_follows_the_spec() -> None:
    """distribution-spec, "Referrers Tag Schema": truncated algorithm, '-', truncated encoded."""
    assert referrers_tag(Digest("sha256", "a" * 64)) == "sha256-" + "a" * 64
    assert referrers_tag(Digest("sha512", "a" * 128)) == "sha512-" + "a" * 64
    odd = Digest.parse(
        "test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation"
        ":alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation",
        any_algorithm=True,
    )
    assert referrers_tag(odd) == (
        "test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot"
    )


def test_push_lists_referrers_in_the_fallback_tag(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    """A store image (uncompressed layers) with an SBOM and a signature of the SBOM: the push gzips
    the layers, so the manifest pushed is a new one, and the SBOM is rewritten to name it."""
    store = pybuild_cli.store
    local = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=True)
    pybuild_cli("sbom", "--attach", "--timestamp", "0", "localhost/bb")
    sbom_digest, document = sbom_of(store)
    signature = attach_to(store, sbom_digest, SIG, b"signed sbom")
    pushed = pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1").stdout.strip()
    assert pushed != local

    # the fallback tag: an OCI index listing the SBOM as the referrers API would
    index = raw_of(f"docker://{registry.host}/bb:{fallback_tag(pushed)}")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [entry] = index["manifests"]
    assert (
        entry["artifactType"] == SPDX and entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    )
    assert entry["annotations"] == {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}
    assert entry["digest"] != sbom_digest  # a new subject makes a new manifest
    sbom = raw_of(f"docker://{registry.host}/bb@{entry['digest']}")
    assert sbom["subject"]["digest"] == pushed and sbom["artifactType"] == SPDX
    assert sbom["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    layer = sbom["layers"][0]["digest"]
    assert get(registry.host, f"/v2/bb/blobs/{layer}")[0] == document  # the document itself is unchanged
    # the signature of the SBOM followed it, rewritten in turn
    [sig_entry] = raw_of(f"docker://{registry.host}/bb:{fallback_tag(entry['digest'])}")["manifests"]
    assert sig_entry["artifactType"] == SIG and sig_entry["digest"] != str(signature.digest)
    assert (
        raw_of(f"docker://{registry.host}/bb@{sig_entry['digest']}")["subject"]["digest"] == entry["digest"]
    )
    # the store keeps what it had: the artifacts of the local manifest
    assert [str(r.digest) for r in referrers(ImageStore.at(store), Digest.parse(local))] == [sbom_digest]

    listed = json.loads(
        pybuild_cli("inspect", "--referrers", "--json", f"docker://{registry.host}/bb:v1").stdout
    )
    assert [(r["digest"], r["artifactType"], r["subject"]) for r in listed] == [
        (entry["digest"], SPDX, pushed)
    ]

    # the tag, pulled by skopeo: an index of the artifacts, with the SBOM's bytes
    out = tmp_path / "sk"
    skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{registry.host}/bb:{fallback_tag(pushed)}",
        f"oci:{out}:refs",
    )
    assert check_layout(Layout.open(out)) == []
    assert (out / "blobs" / "sha256" / layer.split(":")[1]).read_bytes() == document

    # and by pybuild: pull --referrers brings both artifacts into another store
    other = {"PYBUILD_STORE": str(tmp_path / "store2")}
    pybuild_cli("pull", "--referrers", f"{registry.host}/bb:v1", env=other)
    second = ImageStore.at(tmp_path / "store2")
    assert [str(r.digest) for r in referrers(second, Digest.parse(pushed))] == [entry["digest"]]
    assert [str(r.digest) for r in referrers(second, Digest.parse(entry["digest"]))] == [sig_entry["digest"]]
    assert check_layout(second) == []
    assert pybuild_cli("check", env=other).returncode == 0


def test_two_referrers_pushed_by_two_commands_both_survive(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    """Two stores push the same image, each with its own artifact: the second push keeps the
    entry the first one wrote (byte for byte), and pushing again lists nothing twice."""
    first = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    other = {"PYBUILD_STORE": str(tmp_path / "store2")}
    pybuild_cli("copy", "-q", f"oci:{busybox_layout}", "localhost/bb", env=other)
    signature = attach_to(tmp_path / "store2", "localhost/bb", SIG, b"signature")

    assert pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1").stdout.strip() == first
    before = raw_of(f"docker://{registry.host}/bb:{fallback_tag(first)}")["manifests"]
    second = pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1", env=other)
    assert second.stdout.strip() == first
    after = raw_of(f"docker://{registry.host}/bb:{fallback_tag(first)}")["manifests"]
    assert after[: len(before)] == before and len(after) == 2
    assert after[1]["digest"] == str(signature.digest) and after[1]["artifactType"] == SIG
    pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1", env=other)
    assert raw_of(f"docker://{registry.host}/bb:{fallback_tag(first)}")["manifests"] == after
    listed = pybuild_cli("inspect", "--referrers", "--json", f"docker://{registry.host}/bb:v1").stdout
    assert sorted(r["artifactType"] for r in json.loads(listed)) == [SPDX, SIG]
    filtered = pybuild_cli(
        "inspect", "--referrers", "--artifact-type", SIG, "--json", f"docker://{registry.host}/bb:v1"
    ).stdout
    assert [r["digest"] for r in json.loads(filtered)] == [str(signature.digest)]


def test_skopeo_copy_all_keeps_the_referrers_tag_readable(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    """skopeo knows nothing of referrers, but copies the image and the referrers tag with --all (an
    index of the artifacts); pybuild reads the copy as it reads its own. skopeo 1.9 rewrites that
    index without the entries' artifactType: pybuild reads it from the manifests then."""
    digest = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    sbom = attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1")
    tag = fallback_tag(digest)
    for ref in ("v1", tag):
        skopeo(
            "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
            f"docker://{registry.host}/bb:{ref}", f"docker://{registry.host}/mirror:{ref}",
        )  # fmt: skip
    for repo in ("bb", "mirror"):
        listed = pybuild_cli("inspect", "--referrers", "--json", f"docker://{registry.host}/{repo}:v1").stdout
        assert [(r["digest"], r["artifactType"]) for r in json.loads(listed)] == [(str(sbom.digest), SPDX)]
    out = tmp_path / "out"
    pybuild_cli("copy", f"docker://{registry.host}/mirror:v1", f"oci:{out}:v1")
    assert [r.digest for r in referrers(Layout.open(out), Digest.parse(digest))] == [sbom.digest]
    validate_layout(out, "v1")


def test_copy_docker_to_oci_to_docker_keeps_referrers(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=True)
    pybuild_cli("sbom", "--attach", "--timestamp", "0", "localhost/bb")
    sbom_digest, _ = sbom_of(pybuild_cli.store)
    attach_to(pybuild_cli.store, sbom_digest, SIG, b"signed sbom")
    pushed = pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1").stdout.strip()
    listed = json.loads(
        pybuild_cli("inspect", "--referrers", "--json", f"docker://{registry.host}/bb:v1").stdout
    )

    out = tmp_path / "out"
    copied = pybuild_cli("copy", f"docker://{registry.host}/bb:v1", f"oci:{out}:v1").stdout
    assert pushed in copied
    layout = Layout.open(out)
    [sbom] = referrers(layout, Digest.parse(pushed))
    assert str(sbom.digest) == listed[0]["digest"] and sbom.artifact_type == SPDX
    [sig] = referrers(layout, sbom.digest)
    assert sig.artifact_type == SIG
    assert [tag for tag, _ in layout.tags()] == ["v1"]  # the artifacts are listed untagged
    validate_layout(out, "v1")

    pybuild_cli("copy", f"oci:{out}:v1", f"docker://{registry.host}/again:v1")
    again = json.loads(
        pybuild_cli("inspect", "--referrers", "--json", f"docker://{registry.host}/again:v1").stdout
    )
    assert again == listed  # nothing changed on the way: same digests
    assert fallback_tag(str(sig.digest)) not in tags(registry.host, "again")  # (signature of the SBOM:)
    assert fallback_tag(str(sbom.digest)) in tags(registry.host, "again")  # listed under the SBOM's tag
    [sig_entry] = raw_of(f"docker://{registry.host}/again:{fallback_tag(str(sbom.digest))}")["manifests"]
    assert sig_entry["digest"] == str(sig.digest)


def test_no_referrers_and_pull_referrers(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    digest = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    sbom = attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    pybuild_cli("push", "--no-referrers", "localhost/bb", f"docker://{registry.host}/bare:v1")
    assert tags(registry.host, "bare") == ["v1"]
    pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1")
    assert sorted(tags(registry.host, "bb")) == sorted(["v1", fallback_tag(digest)])

    out = tmp_path / "out"
    pybuild_cli("copy", "--no-referrers", f"docker://{registry.host}/bb:v1", f"oci:{out}:v1")
    assert referrers(Layout.open(out), Digest.parse(digest)) == []
    validate_layout(out, "v1")
    pybuild_cli("copy", "--no-referrers", "localhost/bb", f"oci:{tmp_path}/local:v1")
    assert referrers(Layout.open(tmp_path / "local"), Digest.parse(digest)) == []
    pybuild_cli("copy", "localhost/bb", f"oci:{tmp_path}/local2:v1")  # layout to layout: they go along
    assert [r.digest for r in referrers(Layout.open(tmp_path / "local2"), Digest.parse(digest))] == [
        sbom.digest
    ]
    validate_layout(tmp_path / "local2", "v1")

    env = {"PYBUILD_STORE": str(tmp_path / "pulled")}
    pybuild_cli("pull", f"{registry.host}/bb:v1", env=env)
    store = ImageStore.at(tmp_path / "pulled")
    assert referrers(store, Digest.parse(digest)) == []
    pybuild_cli("pull", "--referrers", f"{registry.host}/bb:v1", env=env)
    assert [r.digest for r in referrers(store, Digest.parse(digest))] == [sbom.digest]
    names = [i["name"] for i in json.loads(pybuild_cli("images", "--json", env=env).stdout)]
    assert names == [f"{registry.host}/bb:v1"]  # an artifact is no image
    assert gc(store).referrers == []  # kept while the subject lives
    pybuild_cli("rm", f"{registry.host}/bb:v1", env=env)
    assert sbom.digest in gc(store).referrers
    assert store.read_index().manifests == [] and check_layout(store) == []


def test_a_referrers_tag_that_is_no_index_is_one_warning(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    """Something else under the referrers tag (here: an image): pybuild reports it, leaves it as it
    is, pushes and pulls the image all the same."""
    digest = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{busybox_layout}:latest",
        f"docker://{registry.host}/bb:{fallback_tag(digest)}",
    )  # fmt: skip
    squatter = raw_of(f"docker://{registry.host}/bb:{fallback_tag(digest)}")
    proc = pybuild_cli("push", "localhost/bb", f"docker://{registry.host}/bb:v1", check=False)
    [warning] = warnings_of(proc)
    assert f"referrers tag {fallback_tag(digest)}" in warning and "not an OCI image index" in warning
    assert proc.stdout.strip() == digest
    assert raw_of(f"docker://{registry.host}/bb:{fallback_tag(digest)}") == squatter  # left alone
    assert raw_of(f"docker://{registry.host}/bb:v1")["config"]  # the image is there

    env = {**os.environ, "PYBUILD_STORE": str(tmp_path / "pulled")}
    pulled = pybuild_cli("pull", "--referrers", f"{registry.host}/bb:v1", env=env, check=False)
    [warning] = warnings_of(pulled)
    assert "not an OCI image index" in warning
    assert ImageStore.at(tmp_path / "pulled").lookup(f"{registry.host}/bb:v1")[1].digest == Digest.parse(
        digest
    )
    inspected = pybuild_cli("inspect", "--referrers", f"docker://{registry.host}/bb:v1", check=False)
    assert len(warnings_of(inspected)) == 1


def test_referrers_flags_are_checked(pybuild_cli: Any) -> None:
    proc = pybuild_cli("inspect", "--referrers", "--artifact-type", "not a type", "busybox", check=False)
    assert (
        proc.returncode == 2
        and proc.stderr.startswith("error: --artifact-type")
        and "Traceback" not in proc.stderr
    )
    proc = pybuild_cli("inspect", "--artifact-type", SPDX, "busybox", check=False)
    assert proc.returncode == 2 and "--artifact-type goes with --referrers" in proc.stderr


def test_copy_from_a_registry_with_the_api_to_one_without(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer
) -> None:
    """Listed by the referrers API at the source, by the referrers tag at the destination."""
    from .ocistub import StubRegistry

    digest = image_in_store(pybuild_cli, busybox_layout, "localhost/bb", plain=False)
    sbom = attach_to(pybuild_cli.store, "localhost/bb", SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    signature = attach_to(pybuild_cli.store, str(sbom.digest), SIG, b"signed sbom")
    with StubRegistry() as stub:
        pybuild_cli("push", "localhost/bb", f"docker://{stub.host}/bb:v1")
        assert sorted(stub.repo("bb").tags) == ["v1"]
        pybuild_cli("copy", f"docker://{stub.host}/bb:v1", f"docker://{registry.host}/bb:v1")
    assert sorted(tags(registry.host, "bb")) == sorted(
        ["v1", fallback_tag(digest), fallback_tag(str(sbom.digest))]
    )
    [entry] = raw_of(f"docker://{registry.host}/bb:{fallback_tag(digest)}")["manifests"]
    assert (entry["digest"], entry["artifactType"]) == (str(sbom.digest), SPDX)
    [entry] = raw_of(f"docker://{registry.host}/bb:{fallback_tag(str(sbom.digest))}")["manifests"]
    assert entry["digest"] == str(signature.digest)
