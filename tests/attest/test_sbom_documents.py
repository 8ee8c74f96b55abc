"""SPDX 2.3 and CycloneDX 1.5 documents: validated by their own libraries, deterministic, complete."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pybuild.attest import Inventory, cyclonedx_document, inventory, spdx_document
from pybuild.layout import Layout
from tests.fixtures.images import make_image, tar_entries
from tests.fixtures.packages import APK_DB, COPYRIGHT, METADATA, OS_RELEASE, SITE, STATUS_A

# what an inventory skips is asserted through Inventory.skipped here; that each line is also a
# warning, in test_bad_input_is_skipped_with_one_line_each
pytestmark = pytest.mark.filterwarnings("ignore::pybuild.errors.PybuildWarning")

CREATED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    """Debian, Alpine and Python packages, a bad METADATA, two layers."""
    path = tmp_path_factory.mktemp("mixed") / "oci"
    layout = Layout.create(path)
    layers = [
        {
            "usr/lib/os-release": OS_RELEASE,
            "var/lib/dpkg/status": STATUS_A,
            "usr/share/doc/libc6/copyright": COPYRIGHT,
            "lib/apk/db/installed": APK_DB,
        },
        {
            f"{SITE}/requests_toolbelt-1.0.0.dist-info/METADATA": METADATA,
            f"{SITE}/bad-1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bad\n",
            f"{SITE}/corp-3.dist-info/METADATA": b"Metadata-Version: 2.1\nName: corp\nVersion: 3\n"
            b"License: Corp Internal License\n",
        },
    ]
    desc = make_image(layout, [tar_entries(x) for x in layers], "latest")
    return inventory(layout, desc)


def validate_spdx(data: bytes, tmp_path: Path) -> object:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    path = tmp_path / "sbom.spdx.json"
    path.write_bytes(data)
    document = parse_file(str(path))
    assert validate_full_spdx_document(document) == []
    return document


def test_spdx_document_validates_and_lists_everything(mixed: Inventory, tmp_path: Path) -> None:
    data = spdx_document(mixed, name="localhost/mixed:latest", created=CREATED)
    document = validate_spdx(data, tmp_path)
    assert document.creation_info.spdx_version == "SPDX-2.3"  # type: ignore[attr-defined]
    doc = json.loads(data)
    assert doc["creationInfo"]["created"] == "2024-05-06T07:08:09Z"
    assert doc["documentNamespace"].startswith("urn:uuid:")
    by_name = {p["name"]: p for p in doc["packages"]}
    image = by_name["localhost/mixed:latest"]
    assert image["primaryPackagePurpose"] == "CONTAINER"
    assert image["versionInfo"] == str(mixed.image.digest)
    layers = [p for p in doc["packages"] if p.get("primaryPackagePurpose") == "ARCHIVE"]
    assert [p["name"] for p in layers] == [str(x.digest) for x in mixed.layers]
    assert [p["checksums"] for p in layers] == [
        [{"algorithm": "SHA256", "checksumValue": x.digest.encoded}] for x in mixed.layers
    ]
    purls = sorted(p["externalRefs"][0]["referenceLocator"] for p in doc["packages"] if "externalRefs" in p)
    assert purls == sorted(p.purl for p in mixed.packages)
    assert len(purls) == 6  # base-files, libc6, musl, busybox-binsh, Requests_Toolbelt, corp; not "bad"
    libc = by_name["libc6"]
    assert libc["versionInfo"] == "2.36-9+deb12u4"
    assert libc["supplier"] == "Person: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
    assert (
        libc["licenseDeclared"] == "(MIT OR GPL-2.0-or-later) AND LGPL-2.1-or-later"
        or libc["licenseDeclared"] == "(GPL-2.0-or-later OR MIT) AND LGPL-2.1-or-later"
    )
    assert by_name["musl"]["licenseDeclared"] == "MIT"
    # a license SPDX has no id for is carried as extracted licensing info, not dropped
    # "Apache 2.0" is no SPDX id: carried as it is, never guessed at
    assert by_name["Requests_Toolbelt"]["licenseDeclared"] == "LicenseRef-Apache-2.0"
    assert by_name["corp"]["licenseDeclared"] == "LicenseRef-Corp-Internal-License"
    refs = {x["licenseId"]: x["extractedText"] for x in doc["hasExtractedLicensingInfos"]}
    assert refs == {
        "LicenseRef-Apache-2.0": "Apache 2.0",
        "LicenseRef-Corp-Internal-License": "Corp Internal License",
    }
    contains = {r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"}
    assert contains == {p["SPDXID"] for p in doc["packages"]} - {image["SPDXID"]}
    # what was skipped is said in the document
    assert "bad-1.dist-info/METADATA: bad metadata" in doc["comment"]


def test_spdx_document_is_deterministic(mixed: Inventory) -> None:
    one = spdx_document(mixed, name="x", created=CREATED)
    assert spdx_document(mixed, name="x", created=CREATED) == one
    other = spdx_document(mixed, name="x", created=datetime(2024, 5, 6, 7, 8, 10, tzinfo=UTC))
    assert other != one
    assert json.loads(other)["documentNamespace"] != json.loads(one)["documentNamespace"]


def test_cyclonedx_document_validates_and_lists_everything(mixed: Inventory) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    data = cyclonedx_document(mixed, name="localhost/mixed:latest", created=CREATED)
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(data.decode()) is None
    doc = json.loads(data)
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.5")
    assert doc["metadata"]["timestamp"] == "2024-05-06T07:08:09+00:00"
    assert doc["metadata"]["component"]["type"] == "container"
    assert doc["metadata"]["component"]["version"] == str(mixed.image.digest)
    libraries = [c for c in doc["components"] if c["type"] == "library"]
    assert sorted(c["purl"] for c in libraries) == sorted(p.purl for p in mixed.packages)
    files = {
        next(p["value"] for p in c["properties"] if p["name"] == "pybuild:layer:index"): c["hashes"][0][
            "content"
        ]
        for c in doc["components"]
        if c["type"] == "file"
    }
    assert files == {str(i): x.digest.encoded for i, x in enumerate(mixed.layers, 1)}
    musl = next(c for c in libraries if c["name"] == "musl")
    assert musl["licenses"] == [{"license": {"id": "MIT"}}]
    assert musl["publisher"] == "Timo Teräs <timo.teras@iki.fi>"
    skipped = [p["value"] for p in doc["metadata"]["properties"] if p["name"] == "pybuild:skipped"]
    assert len(skipped) == 1 and "bad-1.dist-info/METADATA: bad metadata" in skipped[0]
    # every component hangs off the image in the dependency graph
    root = next(d for d in doc["dependencies"] if d["ref"] == doc["metadata"]["component"]["bom-ref"])
    assert len(root["dependsOn"]) == len(doc["components"])


def test_cyclonedx_document_is_deterministic(mixed: Inventory) -> None:
    one = cyclonedx_document(mixed, name="x", created=CREATED)
    assert cyclonedx_document(mixed, name="x", created=CREATED) == one
    assert cyclonedx_document(mixed, name="y", created=CREATED) != one


def test_cli_does_not_import_the_sbom_libraries() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pybuild.cli, pybuild.attest"],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "pybuild" in modules
    heavy = {
        "spdx_tools",
        "cyclonedx",
        "debian",
        "license_expression",
        "packageurl",
        "packaging",
        "serializable",
    }
    assert modules & heavy == set()
