"""`pybuild build --sbom --provenance` of the debootstrap'd Debian image, rootless as the unprivileged
test user: the Python package a RUN installs is in the SBOM, the provenance names the base by digest
and the Containerfile by the digest of its bytes, and a --secret's value is in no blob. The faster
cases (identical attestations from two stores, the golden image unchanged, push) are in
tests/builder/test_attestations.py."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from pybuild.layout import Digest, Layout, referrers
from tests.attest.test_sbom_cli import (
    DPKG_QUERY,
    PYTHON_CONTAINERFILE,
    copy_for_test_user,
    installed,
    spdx_packages,
    user_pybuild,
)
from tests.fixtures.tools import validate_layout
from tests.fixtures.trees import all_bytes

SPDX = "application/spdx+json"
IN_TOTO = "application/vnd.in-toto+json"
CONTAINERFILE = (
    PYTHON_CONTAINERFILE + "RUN --mount=type=secret,id=tok sha256sum < /run/secrets/tok > /tok.sum\n"
)


def documents(root: Path, subject: str) -> dict[str, bytes]:
    """artifactType -> document of ``subject``'s referrers in the layout at ``root``."""
    layout = Layout.open(root)
    out = {}
    for ref in referrers(layout, Digest.parse(subject)):
        layer = json.loads(layout.blobs.read(ref.digest, ref.size))["layers"][0]
        assert ref.artifact_type is not None
        out[ref.artifact_type] = layout.blobs.read(Digest.parse(layer["digest"]), layer["size"])
    return out


@pytest.mark.slow
@pytest.mark.rootless
def test_debian_build_with_sbom_and_provenance_rootless(debian_layout: Path, user_home: Path) -> None:
    secret = f"apt-token-{uuid.uuid4()}"
    ctx = user_home / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    (user_home / "tok").write_text(secret)
    subprocess.run(["chown", "-R", "pybuild-test", str(ctx), str(user_home / "tok")], check=True)
    oci = copy_for_test_user(debian_layout, user_home)
    out = user_home / "out"
    pb = user_pybuild(user_home, 900)

    pb("copy", f"oci:{oci}:latest", "debian")
    flags = ["--sbom", "--provenance", "--secret", f"id=tok,src={user_home / 'tok'}"]
    proc = pb("build", *flags, "-t", "localhost/py", "-t", f"oci:{out}:py", str(ctx))
    assert secret not in proc.stdout + proc.stderr
    base = json.loads(pb("inspect", "--json", "debian").stdout)["digest"]
    stored = json.loads(pb("inspect", "--json", "localhost/py").stdout)["digest"]
    written = json.loads(pb("inspect", "--json", f"oci:{out}:py").stdout)["digest"]
    six_version = pb("run", "localhost/py", "--", "cat", "/six-version").stdout.strip()
    expected = installed(pb("run", "localhost/py", "--", *DPKG_QUERY).stdout)
    assert "python3-six" in expected
    for ref, subject in (("localhost/py", stored), (f"oci:{out}:py", written)):
        listed = json.loads(pb("inspect", "--referrers", "--json", ref).stdout)
        assert [(r["artifactType"], r["subject"]) for r in listed] == [(SPDX, subject), (IN_TOTO, subject)]
    pb("check")

    for root, subject in ((user_home / "store", stored), (out, written)):
        found = documents(root, subject)
        sbom = json.loads(found[SPDX])
        assert "comment" not in sbom  # nothing skipped: it read every package database
        assert spdx_packages(sbom, "pypi") == {"six": six_version}
        assert spdx_packages(sbom, "deb") == expected
        statement = json.loads(found[IN_TOTO])
        assert statement["subject"][0]["digest"] == {"sha256": subject[7:]}
        definition = statement["predicate"]["buildDefinition"]
        assert definition["externalParameters"]["configSource"] == {
            "path": "Containerfile",
            "digest": {"sha256": hashlib.sha256(CONTAINERFILE.encode()).hexdigest()},
        }
        assert definition["resolvedDependencies"][0] == {
            "uri": "pkg:docker/docker.io/library/debian@latest?platform=linux%2Famd64",
            "digest": {"sha256": base[7:]},
        }
    # the secret's value: in no blob or file of the store or the layout, decompressed
    for root in (user_home / "store", out):
        for path, data in all_bytes(root):
            assert secret.encode() not in data, path
    validate_layout(out, "py")
