"""`pybuild sbom` and `pybuild inspect --referrers`, through the real console script.

The fast tests use images made in code; the slow ones the debootstrap'd Debian image, rootless as
the unprivileged test user: every package dpkg-query lists is in the SBOM with its version, and a
Python package a RUN step installs shows up too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import Layout
from tests.fixtures.images import make_image, tar_entries
from tests.fixtures.packages import SITE, STATUS_A
from tests.fixtures.rootless import PYBUILD, as_test_user
from tests.fixtures.tools import validate_layout


def spdx_packages(document: dict[str, Any], kind: str) -> dict[str, str]:
    """name -> version of the SPDX packages whose purl has type ``kind`` ("deb", "pypi")."""
    out = {}
    for package in document["packages"]:
        for ref in package.get("externalRefs", []):
            if ref["referenceType"] == "purl" and ref["referenceLocator"].startswith(f"pkg:{kind}/"):
                out[package["name"]] = package["versionInfo"]
    return out


def test_sbom_of_a_layout_image_with_bad_input_warns_once_each(pybuild_cli: Any, tmp_path: Path) -> None:
    oci = tmp_path / "oci"
    layers = [
        {"var/lib/dpkg/status": b"\x00garbage\n\n" + STATUS_A},
        {f"{SITE}/bad-1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bad\nVersion: ?\n"},
    ]
    make_image(Layout.create(oci), [tar_entries(x) for x in layers], "latest")
    out = tmp_path / "sbom.json"
    proc = pybuild_cli("sbom", f"oci:{oci}:latest", "-o", str(out), "--timestamp", "1700000000")
    assert proc.stdout == ""
    warnings = proc.stderr.splitlines()
    assert warnings == [
        (
            "warning: /var/lib/dpkg/status: corrupt: 1 of 4 paragraphs skipped "
            "(line 1: not a 'Field: value' line)"
        ),
        f"warning: /{SITE}/bad-1.dist-info/METADATA: bad metadata ('?' is invalid for 'version'), skipped",
    ]
    document = json.loads(out.read_bytes())
    assert document["name"] == f"oci:{oci}:latest"
    assert spdx_packages(document, "deb") == {"base-files": "12.4+deb12u5", "libc6": "2.36-9+deb12u4"}
    assert document["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert document["comment"] == "pybuild skipped:\n" + "\n".join(w[len("warning: ") :] for w in warnings)
    # printed, the same bytes
    again = pybuild_cli("sbom", f"oci:{oci}:latest", "--timestamp", "1700000000")
    assert again.stdout.encode() == out.read_bytes()
    # CycloneDX, with SOURCE_DATE_EPOCH
    cdx = pybuild_cli("sbom", "--format", "cyclonedx", f"oci:{oci}:latest", env={"SOURCE_DATE_EPOCH": "0"})
    doc = json.loads(cdx.stdout)
    assert doc["specVersion"] == "1.5" and doc["metadata"]["timestamp"] == "1970-01-01T00:00:00+00:00"
    validate_layout(oci, "latest")


def test_sbom_attach_inspect_referrers_and_gc_in_the_store(pybuild_cli: Any, busybox_layout: Path) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}:latest", "localhost/bb")
    image = json.loads(pybuild_cli("inspect", "--json", "localhost/bb").stdout)
    proc = pybuild_cli("sbom", "--attach", "--timestamp", "0", "localhost/bb")
    assert proc.stderr.startswith("warning: no package database")
    first = proc.stdout.split()
    assert first[:2] == ["attached", "application/spdx+json"] and first[4] == image["digest"]
    pybuild_cli("sbom", "--attach", "--format", "cyclonedx", "--timestamp", "0", "localhost/bb")
    spdx = json.loads(pybuild_cli("sbom", "localhost/bb", check=False).stdout)
    assert spdx["name"] == "localhost/bb:latest"
    listed = json.loads(pybuild_cli("inspect", "--referrers", "--json", "localhost/bb").stdout)
    assert [(r["artifactType"], r["subject"]) for r in listed] == [
        ("application/spdx+json", image["digest"]),
        ("application/vnd.cyclonedx+json", image["digest"]),
    ]
    assert listed[0]["digest"] == first[2]
    assert listed[0]["annotations"] == {"org.opencontainers.image.created": "1970-01-01T00:00:00Z"}
    text = pybuild_cli("inspect", "--referrers", "localhost/bb").stdout.splitlines()
    assert text[0].split() == ["ARTIFACT", "TYPE", "DIGEST", "SIZE", "ANNOTATIONS"]
    assert text[1].split()[:2] == ["application/spdx+json", first[2]]
    # referrers are no images
    names = [i["name"] for i in json.loads(pybuild_cli("images", "--json").stdout)]
    assert names == ["localhost/bb:latest"]
    pybuild_cli("check")
    validate_layout(pybuild_cli.store, "localhost/bb:latest")
    assert "removed" in pybuild_cli("gc").stdout
    assert len(json.loads(pybuild_cli("inspect", "--referrers", "--json", "localhost/bb").stdout)) == 2
    pybuild_cli("rm", "localhost/bb")
    assert "removed 2 artifacts whose subject is gone" in pybuild_cli("gc").stdout
    assert json.loads((pybuild_cli.store / "index.json").read_bytes())["manifests"] == []


def test_bad_command_lines_give_one_error_line(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    cases = [
        (
            ["sbom", "--format", "xml", f"oci:{busybox_layout}:latest"],
            "--format 'xml': expected spdx or cyclonedx",
        ),
        (["sbom", f"oci:{busybox_layout}:nope"], "no image tagged 'nope'"),
        (
            ["sbom", f"oci:{busybox_layout}:latest", "-o", str(tmp_path / "no/such/dir/x.json")],
            "cannot write",
        ),
        (["inspect", "--referrers", "docker://127.0.0.1:1/x:y"], "cannot reach registry 127.0.0.1:1"),
    ]
    for args, fragment in cases:
        proc = pybuild_cli(*args, check=False)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and fragment in errors[0], proc.stderr
    assert not (tmp_path / "no").exists()


def copy_for_test_user(src: Path, home: Path) -> Path:
    dst = home / "oci"
    shutil.copytree(src, dst)
    subprocess.run(["chown", "-R", "pybuild-test", str(dst)], check=True)
    return dst


DPKG_QUERY = ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"]


def installed(dpkg_query_output: str) -> dict[str, str]:
    """name -> version of the installed ("ii") packages in DPKG_QUERY's output."""
    return {
        name: version
        for name, version, status in (line.split("\t") for line in dpkg_query_output.splitlines())
        if status.strip() == "ii"
    }


def user_pybuild(home: Path, timeout: float) -> Any:
    """`pybuild ARGS` as the test user with a store in ``home``, failing the test if it fails."""

    def pb(*args: str) -> subprocess.CompletedProcess[str]:
        proc = as_test_user([PYBUILD, *args], home, {"PYBUILD_STORE": str(home / "store")}, timeout=timeout)
        assert proc.returncode == 0, f"pybuild {' '.join(args)}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    return pb


@pytest.mark.slow
@pytest.mark.rootless
def test_debian_sbom_lists_every_dpkg_package_rootless(debian_layout: Path, user_home: Path) -> None:
    from tests.fixtures.debian import debian_rootfs

    admindir = debian_rootfs() / "var/lib/dpkg"
    query = subprocess.run([DPKG_QUERY[0], f"--admindir={admindir}", *DPKG_QUERY[1:]], capture_output=True)
    expected = installed(query.stdout.decode())
    assert len(expected) > 50
    oci = copy_for_test_user(debian_layout, user_home)
    pb = user_pybuild(user_home, 300)

    spdx = pb("sbom", f"oci:{oci}:latest")
    assert spdx.stderr == ""  # nothing skipped
    document = json.loads(spdx.stdout)
    assert spdx_packages(document, "deb") == expected
    libc = next(p for p in document["packages"] if p["name"] == "libc6")
    purl = libc["externalRefs"][0]["referenceLocator"]
    assert (
        purl.startswith("pkg:deb/debian/libc6@") and "distro=debian-12" in purl and "upstream=glibc" in purl
    )
    # licenses from the DEP-5 copyright files (libc6's is free-form: none said, none guessed)
    assert libc["licenseDeclared"] == "NOASSERTION"
    adduser = next(p for p in document["packages"] if p["name"] == "adduser")
    assert adduser["licenseDeclared"] == "GPL-2.0-or-later"
    cdx = json.loads(pb("sbom", "--format", "cyclonedx", f"oci:{oci}:latest").stdout)
    debs = {c["name"]: c["version"] for c in cdx["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert debs == expected
    pb("sbom", "--attach", f"oci:{oci}:latest")
    listed = json.loads(pb("inspect", "--referrers", "--json", f"oci:{oci}:latest").stdout)
    assert [r["artifactType"] for r in listed] == ["application/spdx+json"]
    validate_layout(oci, "latest")


PYTHON_CONTAINERFILE = """\
FROM debian
RUN apt-get update && apt-get install -y --no-install-recommends python3-six && rm -rf /var/lib/apt/lists/*
RUN python3 -c 'import six; print(six.__version__)' > /six-version
"""


@pytest.mark.slow
@pytest.mark.rootless
def test_python_package_installed_in_a_run_step_is_in_the_sbom_rootless(
    debian_layout: Path, user_home: Path
) -> None:
    ctx = user_home / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(PYTHON_CONTAINERFILE)
    subprocess.run(["chown", "-R", "pybuild-test", str(ctx)], check=True)
    oci = copy_for_test_user(debian_layout, user_home)
    pb = user_pybuild(user_home, 600)

    pb("copy", f"oci:{oci}:latest", "debian")
    pb("build", "-t", "localhost/py", str(ctx))
    six_version = pb("run", "localhost/py", "--", "cat", "/six-version").stdout.strip()
    # dpkg-query inside the image, run by pybuild
    expected = installed(pb("run", "localhost/py", "--", *DPKG_QUERY).stdout)
    assert "python3-six" in expected and "python3" in expected
    proc = pb("sbom", "localhost/py")
    assert proc.stderr == ""
    document = json.loads(proc.stdout)
    assert spdx_packages(document, "deb") == expected
    assert spdx_packages(document, "pypi") == {"six": six_version}
    six = next(p for p in document["packages"] if p["name"] == "six")
    assert "/usr/lib/python3/dist-packages/six-" in six["sourceInfo"]
    layers = [p for p in document["packages"] if p.get("primaryPackagePurpose") == "ARCHIVE"]
    assert len(layers) == 3
    pb("check")
