"""`pybuild build --sbom` and `--provenance`: the documents made after the commit and attached as
OCI 1.1 referrers of the image's manifest, in the store and in each oci: target, through the real
console script (and `pybuild.build` for the Python API). The Debian case (a Python package a RUN
installs, rootless) is in tests/attest/test_build_attestations.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

import pybuild
from pybuild.layout import Digest, Layout, referrers
from tests.builder.test_golden import GOLDEN, built, expected
from tests.fixtures.cli import PYBUILD, Pybuild, assert_fails, base_store, context
from tests.fixtures.rootless import TEST_USER, as_test_user
from tests.fixtures.tools import validate_layout
from tests.fixtures.trees import all_bytes

SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"
IN_TOTO = "application/vnd.in-toto+json"


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Pybuild:
    """A store holding the busybox image as busybox and as alpine."""
    return base_store(tmp_path_factory.mktemp("attest-bases"))


def fresh_store(bases: Pybuild, root: Path) -> Pybuild:
    """A new store under ``root`` with busybox in it, copied from ``bases`` (same digest)."""
    layout = root / "base"
    bases("copy", "-q", "busybox", f"oci:{layout}:latest")
    tool = Pybuild(root / "store", root / "scratch")
    tool.scratch.mkdir(parents=True, exist_ok=True)
    tool("copy", "-q", f"oci:{layout}:latest", "busybox")
    return tool


def attestations(layout_dir: Path, subject: str) -> dict[str, tuple[bytes, bytes]]:
    """artifactType -> (the artifact's manifest, its document) of ``subject``'s referrers there."""
    layout = Layout.open(layout_dir)
    out = {}
    for ref in referrers(layout, Digest.parse(subject)):
        raw = layout.blobs.read(ref.digest, ref.size)
        layer = json.loads(raw)["layers"][0]
        assert ref.artifact_type is not None
        out[ref.artifact_type] = (raw, layout.blobs.read(Digest.parse(layer["digest"]), layer["size"]))
    return out


def manifest_digest(pb: Pybuild, ref: str) -> str:
    return str(pb.inspect(ref)["digest"])


def provenance_of(layout_dir: Path, subject: str) -> dict[str, Any]:
    return dict(json.loads(attestations(layout_dir, subject)[IN_TOTO][1]))


APP = """\
ARG BASE=busybox
FROM $BASE
ARG VERSION
ARG FLAVOUR=plain
RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok > /tok.sum && echo "$VERSION $FLAVOUR" > /version
COPY app.txt /app.txt
"""


def test_two_builds_into_fresh_stores_give_identical_attestations(bases: Pybuild, tmp_path: Path) -> None:
    """--timestamp 0 in one store, SOURCE_DATE_EPOCH=0 in another: the same image, and the same
    attestation manifests and documents, in the stores and in the oci: targets."""
    secret = f"never-in-a-blob-{uuid.uuid4()}"
    (tmp_path / "tok").write_text(secret)
    ctx = context(tmp_path / "ctx", APP, **{"app.txt": "app\n", ".containerignore": "ignored.txt\n"})
    flags = ["--sbom", "--provenance", "--build-arg", "VERSION=1.2", "--build-arg", "NOT_DECLARED=x"]
    flags += ["--secret", f"id=tok,src={tmp_path / 'tok'}"]
    results = []
    for n, (extra, env) in enumerate([(["--timestamp", "0"], {}), ([], {"SOURCE_DATE_EPOCH": "0"})]):
        pb = fresh_store(bases, tmp_path / f"run{n}")
        out = tmp_path / f"run{n}" / "out"
        proc = pb("build", "-t", "localhost/app", *flags, *extra, "-t", f"oci:{out}:v1", str(ctx), env=env)
        assert secret not in proc.stdout + proc.stderr
        store_digest, oci_digest = manifest_digest(pb, "localhost/app"), manifest_digest(pb, f"oci:{out}:v1")
        assert store_digest != oci_digest  # the store's layers are gzipped on the way to the layout
        made = [line.split() for line in proc.stdout.splitlines() if line.startswith("ATTACH ")]
        assert [(m[1], m[4], m[6]) for m in made] == [
            (SPDX, store_digest, "store"),
            (IN_TOTO, store_digest, "store"),
            (SPDX, oci_digest, f"oci:{out}"),
            (IN_TOTO, oci_digest, f"oci:{out}"),
        ]
        results.append((attestations(pb.store, store_digest), attestations(out, oci_digest)))
        # the secret is in no blob and no file of the store or the layout, decompressed
        for root in (pb.store, out):
            for path, data in all_bytes(root):
                assert secret.encode() not in data, path
        pb.check()
        validate_layout(out, "v1")
        validate_layout(pb.store, "localhost/app:latest")
    (store_a, oci_a), (store_b, oci_b) = results
    assert store_a == store_b and oci_a == oci_b
    assert sorted(store_a) == sorted(oci_a) == [SPDX, IN_TOTO]
    # each document names the manifest it is attached to, and that manifest's layers
    pb = Pybuild(tmp_path / "run0" / "store", tmp_path / "run0" / "scratch")
    out = tmp_path / "run0" / "out"
    for root, ref, name in (
        (pb.store, "localhost/app", "localhost/app:latest"),
        (out, f"oci:{out}:v1", "v1"),
    ):
        info = pb.inspect(ref)
        statement = provenance_of(root, info["digest"])
        assert statement["subject"] == [{"name": name, "digest": {"sha256": info["digest"][7:]}}]
        sbom = json.loads(attestations(root, info["digest"])[SPDX][1])
        assert sbom["name"] == name and sbom["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
        layers = [p["name"] for p in sbom["packages"] if p.get("primaryPackagePurpose") == "ARCHIVE"]
        assert layers == [layer["digest"] for layer in info["layers"]]
    statement = provenance_of(pb.store, manifest_digest(pb, "localhost/app"))
    definition = statement["predicate"]["buildDefinition"]
    # the args in scope: given and declared (BASE's default is no given arg; NOT_DECLARED is unused)
    assert definition["externalParameters"]["request"] == {
        "args": {"VERSION": "1.2"},
        "platform": "linux/amd64",
    }
    base = pb.inspect("busybox")["digest"]
    assert definition["resolvedDependencies"][0] == {
        "uri": "pkg:docker/docker.io/library/busybox@latest?platform=linux%2Famd64",
        "digest": {"sha256": base[7:]},
    }
    assert statement["predicate"]["runDetails"]["metadata"] == {
        "startedOn": "1970-01-01T00:00:00Z",
        "finishedOn": "1970-01-01T00:00:00Z",
    }


def test_attestations_leave_the_golden_image_alone(tmp_path: Path) -> None:
    """--sbom --provenance attach documents; the image (manifest, config, layers) is the same."""
    env = {"PYBUILD_STORE": str(tmp_path / "store"), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    args = ["build", "-q", "--timestamp", "0", "--compression", "none", "-t", "localhost/golden"]
    args += ["--sbom", "--sbom-format", "cyclonedx", "--provenance", str(GOLDEN / "context")]
    subprocess.run([PYBUILD, *args], env=env, check=True, capture_output=True)
    pb = Pybuild(tmp_path / "store", tmp_path)
    info = pb.inspect("localhost/golden")
    assert built(info) == expected()
    listed = json.loads(pb("inspect", "--referrers", "--json", "localhost/golden").stdout)
    assert [(r["artifactType"], r["subject"]) for r in listed] == [
        (CYCLONEDX, info["digest"]),
        (IN_TOTO, info["digest"]),
    ]
    cdx = json.loads(attestations(pb.store, info["digest"])[CYCLONEDX][1])
    assert cdx["specVersion"] == "1.5" and cdx["metadata"]["component"]["version"] == info["digest"]
    statement = provenance_of(pb.store, info["digest"])
    containerfile = (GOLDEN / "context" / "Containerfile").read_bytes()
    external = statement["predicate"]["buildDefinition"]["externalParameters"]
    assert external["configSource"] == {
        "path": "Containerfile",
        "digest": {"sha256": hashlib.sha256(containerfile).hexdigest()},
    }
    # FROM scratch: no base image, only the context
    assert [d.get("name") for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]] == [
        "context"
    ]
    pb.check()
    validate_layout(pb.store, "localhost/golden:latest")


STAGES = """\
FROM alpine AS tools
RUN echo tool > /tool
FROM scratch AS final
COPY --from=tools /tool /tool
COPY --from=busybox /bin/busybox /busybox
ARG MODE
FROM final AS unused-later
"""


def test_provenance_records_what_the_build_read(bases: Pybuild, tmp_path: Path) -> None:
    """The Containerfile from stdin by its bytes, images by name and digest (not stages, not
    scratch), --target, the args in scope, and a context digest that follows the ignore file."""
    ctx = context(tmp_path / "ctx", "", **{"data.txt": "1\n", "skip.log": "a\n", ".dockerignore": "*.log\n"})
    (ctx / "Containerfile").unlink()
    pb = bases

    def build(*extra: str) -> dict[str, Any]:
        proc = subprocess.run(
            [PYBUILD, "build", "-q", "-f", "-", "--provenance", "--target", "final", *extra, str(ctx)],
            input=STAGES,
            capture_output=True,
            text=True,
            env={**os.environ, "PYBUILD_STORE": str(pb.store)},
        )
        assert proc.returncode == 0, proc.stderr
        image = pb.inspect(proc.stdout.strip())["digest"]
        return provenance_of(pb.store, image)

    first = build("--build-arg", "MODE=fast", "--build-arg", "OTHER=1")
    definition = first["predicate"]["buildDefinition"]
    external = definition["externalParameters"]
    assert external["configSource"] == {
        "path": "-",
        "digest": {"sha256": hashlib.sha256(STAGES.encode()).hexdigest()},
    }
    assert external["request"] == {"args": {"MODE": "fast"}, "platform": "linux/amd64", "target": "final"}
    base = pb.inspect("busybox")["digest"][7:]  # alpine is the same image under another name
    deps = definition["resolvedDependencies"]
    assert deps[:2] == [
        {
            "uri": "pkg:docker/docker.io/library/alpine@latest?platform=linux%2Famd64",
            "digest": {"sha256": base},
        },
        {
            "uri": "pkg:docker/docker.io/library/busybox@latest?platform=linux%2Famd64",
            "digest": {"sha256": base},
        },
    ]
    assert deps[2]["name"] == "context" and len(deps) == 3
    assert external["context"]["digest"] == deps[2]["digest"]
    # no --timestamp: the times the build ran, in order
    metadata = first["predicate"]["runDetails"]["metadata"]
    assert metadata["startedOn"] <= metadata["finishedOn"] and metadata["startedOn"] > "2024"

    def context_digest(statement: dict[str, Any]) -> str:
        return str(
            statement["predicate"]["buildDefinition"]["externalParameters"]["context"]["digest"]["sha256"]
        )

    (ctx / "skip.log").write_text("changed, and ignored\n")
    cached = build()  # every step from the cache: the same images read, the same context
    assert cached["predicate"]["buildDefinition"]["resolvedDependencies"] == deps
    (ctx / "data.txt").chmod(0o600)
    moded = context_digest(build())
    assert moded != context_digest(first)
    (ctx / "data.txt").write_text("2\n")
    assert context_digest(build()) not in (moded, context_digest(first))
    pb.check()


def test_python_api_lists_the_attestations(bases: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", "FROM busybox\nCOPY a /a\n", a="a\n")
    store = pybuild.open_store(bases.store)
    out = tmp_path / "out"
    options = pybuild.BuildOptions(
        context=ctx, tags=["localhost/api", f"oci:{out}:api"], timestamp=0, sbom=True, provenance=True
    )
    result = pybuild.build(store, options)
    store_digest = bases.inspect("localhost/api")["digest"]
    oci_digest = bases.inspect(f"oci:{out}:api")["digest"]
    assert str(result.descriptor.digest) == store_digest
    assert [(a.where, str(a.subject.digest), a.artifact.artifact_type) for a in result.attestations] == [
        (store.label, store_digest, SPDX),
        (store.label, store_digest, IN_TOTO),
        (f"oci:{out}", oci_digest, SPDX),
        (f"oci:{out}", oci_digest, IN_TOTO),
    ]
    listed = referrers(Layout.open(out), Digest.parse(oci_digest))
    assert listed == [a.artifact for a in result.attestations[2:]]
    assert result.attestations[1].artifact.annotations == {
        "in-toto.io/predicate-type": "https://slsa.dev/provenance/v1",
        "org.opencontainers.image.created": "1970-01-01T00:00:00Z",
    }
    # busybox has no package database: the SBOM says so, once, as a warning of the build
    missing = "no package database (/var/lib/dpkg/status, /var/lib/dpkg/status.d/*, /lib/apk/db/installed)"
    assert [w for w in result.warnings if "package database" in w] == [f"{missing}: no OS packages listed"]
    with pytest.raises(pybuild.UsageError, match="--sbom-format 'xml': expected spdx or cyclonedx"):
        pybuild.BuildOptions(context=ctx, sbom=True, sbom_format="xml")
    with pytest.raises(pybuild.UsageError, match="no SBOM is made without --sbom"):
        pybuild.BuildOptions(context=ctx, sbom_format="cyclonedx")
    validate_layout(out, "api")


def test_bad_attestation_flags_are_one_error_line(bases: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", "FROM busybox\n")
    cases = [
        (["--attest", "type=sbom,generator=docker/scout"], "generator: not supported"),
        (["--attest", "type=provenance,mode=max"], "mode: not supported"),
        (["--attest", "type=signature"], "expected type=sbom or type=provenance"),
        (["--attest", "type=sbom,type=provenance"], "expected type=sbom or type=provenance"),
        (["--sbom-format", "spdx"], "--sbom-format spdx: no SBOM is made without --sbom"),
        (["--sbom", "--sbom-format", "xml"], "--sbom-format 'xml': expected spdx or cyclonedx"),
    ]
    for flags, fragment in cases:
        proc = bases("build", *flags, "-t", "localhost/bad-flags", str(ctx), check=False)
        assert_fails(proc, 2, fragment)
    assert "bad-flags" not in bases("images").stdout
    # BuildKit's spellings do what --sbom and --provenance do
    proc = bases(
        "build", "--attest", "type=sbom", "--attest", "type=provenance", "-t", "localhost/bk", str(ctx)
    )
    digest = bases.inspect("localhost/bk")["digest"]
    assert sorted(attestations(bases.store, digest)) == [SPDX, IN_TOTO]
    assert proc.stdout.count("ATTACH ") == 2


@pytest.mark.rootless
def test_a_context_the_provenance_cannot_read_tags_nothing(user_home: Path) -> None:
    """--provenance reads the whole context (after the ignore file): an unreadable file there is one
    error line, and nothing is tagged; ignored, it is no problem."""
    ctx = context(user_home / "ctx", "FROM scratch\nCOPY a /a\n", a="a\n", private="root only\n")
    shutil.chown(ctx, TEST_USER)
    for name in ("a", "Containerfile"):
        shutil.chown(ctx / name, TEST_USER)
    (ctx / "private").chmod(0o600)  # root's
    env = {"PYBUILD_STORE": str(user_home / "store")}
    proc = as_test_user([PYBUILD, "build", "--provenance", "-t", "localhost/p", str(ctx)], user_home, env)
    assert_fails(proc, 1, "provenance: the build context's digest: ", '"private"', "Permission denied")
    images = as_test_user([PYBUILD, "images"], user_home, env)
    assert "localhost/p" not in images.stdout
    (ctx / ".containerignore").write_text("private\n")
    proc = as_test_user([PYBUILD, "build", "--provenance", "-t", "localhost/p", str(ctx)], user_home, env)
    assert proc.returncode == 0, proc.stderr
    assert "localhost/p" in as_test_user([PYBUILD, "images"], user_home, env).stdout
    assert as_test_user([PYBUILD, "check"], user_home, env).returncode == 0


def test_push_carries_the_attestations(bases: Pybuild, tmp_path: Path) -> None:
    """To a registry without the referrers API (CNCF distribution 2.8): the fallback tag of the
    pushed manifest lists both, each rewritten to name that manifest; the SBOM is unchanged, the
    provenance statement's subject names the pushed manifest (what a verifier compares) and nothing
    else in it changes. A copy into an oci: layout does the same there."""
    from tests.remote.conftest import start_registry, stop_registry
    from tests.remote.referrers_helpers import fallback_tag, get

    ctx = context(tmp_path / "ctx", "FROM busybox\nCOPY a /a\n", a="pushed\n")
    flags = ["--sbom", "--sbom-format", "cyclonedx", "--provenance", "--timestamp", "0"]
    bases("build", *flags, "-t", "localhost/pushed", str(ctx))
    local = bases.inspect("localhost/pushed")["digest"]
    documents = {kind: doc for kind, (_, doc) in attestations(bases.store, local).items()}
    server = start_registry(tmp_path / "registry")
    try:
        pushed = bases("push", "localhost/pushed", f"docker://{server.host}/app:v1").stdout.strip()
        assert pushed != local  # the store's layers were gzipped on the way
        index = json.loads(get(server.host, f"/v2/app/manifests/{fallback_tag(pushed)}")[0])
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert [m["artifactType"] for m in index["manifests"]] == [CYCLONEDX, IN_TOTO]
        for entry in index["manifests"]:
            manifest = json.loads(get(server.host, f"/v2/app/manifests/{entry['digest']}")[0])
            assert manifest["subject"]["digest"] == pushed
            layer = manifest["layers"][0]["digest"]
            document = get(server.host, f"/v2/app/blobs/{layer}")[0]
            if entry["artifactType"] == CYCLONEDX:
                assert document == documents[CYCLONEDX]
            else:
                _assert_moved_statement(document, documents[IN_TOTO], local, pushed)
        listed = json.loads(
            bases("inspect", "--referrers", "--json", f"docker://{server.host}/app:v1").stdout
        )
        assert sorted(r["artifactType"] for r in listed) == [CYCLONEDX, IN_TOTO]
    finally:
        stop_registry(server)
    bases("copy", "localhost/pushed", f"oci:{tmp_path / 'out'}:v1")
    out = Layout.open(tmp_path / "out")
    copied = str(out.resolve("v1").digest)
    assert copied != local
    found = {kind: doc for kind, (_, doc) in attestations(tmp_path / "out", copied).items()}
    assert found[CYCLONEDX] == documents[CYCLONEDX]
    _assert_moved_statement(found[IN_TOTO], documents[IN_TOTO], local, copied)


def _assert_moved_statement(moved: bytes, built: bytes, old: str, new: str) -> None:
    """``moved`` is the statement ``built`` with its one subject naming ``new`` instead of ``old``."""
    statement, original = json.loads(moved), json.loads(built)
    assert [s["digest"] for s in original["subject"]] == [{"sha256": old.removeprefix("sha256:")}]
    assert [s["digest"] for s in statement["subject"]] == [{"sha256": new.removeprefix("sha256:")}]
    for doc in (statement, original):
        for subject in doc["subject"]:
            del subject["digest"]
    assert statement == original
