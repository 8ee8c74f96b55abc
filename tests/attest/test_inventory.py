"""Inventories of images made in code: layers with whiteouts and opaque dirs, apk and dpkg databases,
Python distributions, and bad input (no database, a corrupt status file, bad METADATA, limits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.attest import inventory, read_image_files
from pybuild.errors import PybuildError, PybuildWarning, collect_warnings
from pybuild.layout import Layout, load_image
from tests.fixtures.images import make_image, tar_entries
from tests.fixtures.packages import (
    ALPINE_RELEASE,
    APK_DB,
    COPYRIGHT,
    METADATA,
    OS_RELEASE,
    PKG_INFO,
    SITE,
    STATUS_A,
    STATUS_B,
)
from tests.fixtures.tools import validate_layout

# what an inventory skips is asserted through Inventory.skipped here; that each line is also a
# warning, in test_bad_input_is_skipped_with_one_line_each
pytestmark = pytest.mark.filterwarnings("ignore::pybuild.errors.PybuildWarning")


def image(tmp_path: Path, *layers: dict[str, bytes | str | None]) -> tuple[Layout, object]:
    layout = Layout.create(tmp_path / "oci")
    desc = make_image(layout, [tar_entries(layer) for layer in layers], "latest")
    validate_layout(tmp_path / "oci", "latest")
    return layout, desc


def debs(inv: object) -> dict[str, str]:
    return {p.name: p.version for p in inv.packages if p.type == "deb"}  # type: ignore[attr-defined]


def test_dpkg_status_with_distro_purls_and_copyright_licenses(tmp_path: Path) -> None:
    layout, desc = image(
        tmp_path,
        {
            "etc/": None,
            "usr/lib/os-release": OS_RELEASE,
            "etc/os-release": "->../usr/lib/os-release",
            "var/lib/dpkg/status": STATUS_A,
            "usr/share/doc/libc6/copyright": COPYRIGHT,
        },
    )
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert inv.skipped == []
    assert inv.distro is not None and (inv.distro.id, inv.distro.version_id) == ("debian", "12")
    # "gone" left only its conffiles: not in the image
    assert debs(inv) == {"base-files": "12.4+deb12u5", "libc6": "2.36-9+deb12u4"}
    libc = next(p for p in inv.packages if p.name == "libc6")
    assert libc.purl == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
    assert libc.supplier == "GNU Libc Maintainers <debian-glibc@lists.debian.org>"
    assert libc.licenses == ("GPL-2+ or Expat", "LGPL-2.1+")
    assert libc.location == "/var/lib/dpkg/status"
    base = next(p for p in inv.packages if p.name == "base-files")
    assert base.purl == "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12"
    assert base.licenses == ()
    image_layers = load_image(layout, desc).layers  # type: ignore[arg-type]
    assert [(x.digest, x.size, x.media_type) for x in inv.layers] == [
        (x.digest, x.size, x.media_type) for x in image_layers
    ]
    assert inv.image.digest == desc.digest  # type: ignore[attr-defined]


def test_upper_layer_replaces_the_status_file(tmp_path: Path) -> None:
    layout, desc = image(tmp_path, {"var/lib/dpkg/status": STATUS_A}, {"var/lib/dpkg/status": STATUS_B})
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert debs(inv) == {"base-files": "12.5"}
    assert len(inv.layers) == 2 and inv.layers[0].digest != inv.layers[1].digest


def test_whiteout_of_the_status_file_is_honoured(tmp_path: Path) -> None:
    layout, desc = image(
        tmp_path,
        {"var/lib/dpkg/status": STATUS_A, f"{SITE}/six-1.16.0.dist-info/METADATA": PKG_INFO},
        {"var/lib/dpkg/.wh.status": b""},
    )
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert debs(inv) == {}
    assert [p.name for p in inv.packages] == ["six"]
    assert any(line.startswith("no package database") for line in inv.skipped), inv.skipped


def test_whiteout_of_a_parent_directory_hides_everything_below(tmp_path: Path) -> None:
    layout, desc = image(
        tmp_path,
        {f"{SITE}/six-1.16.0.dist-info/METADATA": PKG_INFO, "var/lib/dpkg/status": STATUS_B},
        {"usr/local/lib/.wh.python3.11": b""},
    )
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert [p.name for p in inv.packages] == ["base-files"]


def test_opaque_directory_hides_lower_content_but_not_its_own_layer(tmp_path: Path) -> None:
    layout, desc = image(
        tmp_path,
        {"var/lib/dpkg/status": STATUS_A, "var/lib/dpkg/status.d/x": STATUS_B},
        # the marker comes after the layer's own file: it still only hides the layers below
        {"var/lib/dpkg/status": STATUS_B, "var/lib/dpkg/.wh..wh..opq": b""},
    )
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert [(p.name, p.version, p.location) for p in inv.packages] == [
        ("base-files", "12.5", "/var/lib/dpkg/status")
    ]


def test_a_whiteout_never_hides_its_own_layer(tmp_path: Path) -> None:
    layout, desc = image(tmp_path, {"var/lib/dpkg/.wh.status": b"", "var/lib/dpkg/status": STATUS_B})
    assert debs(inventory(layout, desc)) == {"base-files": "12.5"}  # type: ignore[arg-type]


def test_a_file_replacing_a_directory_hides_what_was_below_it(tmp_path: Path) -> None:
    layout, desc = image(tmp_path, {"var/lib/dpkg/status": STATUS_A}, {"var/lib/dpkg": b"not a dir"})
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert debs(inv) == {}


def test_distroless_status_d_and_a_hard_link(tmp_path: Path) -> None:
    layout, desc = image(
        tmp_path,
        {
            "var/lib/dpkg/status.d/base-files": STATUS_B,
            "var/lib/dpkg/status.d/base-files.md5sums": b"d41d8cd98f00b204e9800998ecf8427e  etc/x\n",
            "var/lib/dpkg/status.d/libc6": "=>var/lib/dpkg/status.d/base-files",
        },
    )
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert [(p.name, p.location) for p in inv.packages] == [
        ("base-files", "/var/lib/dpkg/status.d/base-files"),
        ("base-files", "/var/lib/dpkg/status.d/libc6"),
    ]
    assert inv.skipped == []


def test_alpine_apk_database(tmp_path: Path) -> None:
    layout, desc = image(tmp_path, {"etc/os-release": ALPINE_RELEASE, "lib/apk/db/installed": APK_DB})
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert inv.skipped == []
    by_name = {p.name: p for p in inv.packages}
    assert sorted(by_name) == ["busybox-binsh", "musl"]
    musl = by_name["musl"]
    assert (musl.type, musl.version, musl.licenses) == ("apk", "1.2.4-r2", ("MIT",))
    assert musl.purl == "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.18.4"
    assert musl.supplier == "Timo Teräs <timo.teras@iki.fi>"
    assert by_name["busybox-binsh"].purl == (
        "pkg:apk/alpine/busybox-binsh@1.36.1-r5?arch=x86_64&distro=alpine-3.18.4&upstream=busybox"
    )


def test_python_dist_info_and_egg_info(tmp_path: Path) -> None:
    layout, desc = image(
        tmp_path,
        {
            f"{SITE}/requests_toolbelt-1.0.0.dist-info/METADATA": METADATA,
            "usr/lib/python3/dist-packages/six-1.16.0.egg-info": PKG_INFO,
            "opt/app/lib/python3.11/site-packages/six-1.16.0.egg-info/PKG-INFO": PKG_INFO,
            # not under site-packages or dist-packages: not an installed distribution
            "src/vendored/thing-1.0.dist-info/METADATA": METADATA,
        },
    )
    inv = inventory(layout, desc)  # type: ignore[arg-type]
    py = [(p.name, p.version, p.purl, p.location) for p in inv.packages if p.type == "python"]
    assert py == [
        (
            "Requests_Toolbelt",
            "1.0.0",
            "pkg:pypi/requests-toolbelt@1.0.0",
            f"/{SITE}/requests_toolbelt-1.0.0.dist-info/METADATA",
        ),
        (
            "six",
            "1.16.0",
            "pkg:pypi/six@1.16.0",
            "/opt/app/lib/python3.11/site-packages/six-1.16.0.egg-info/PKG-INFO",
        ),
        ("six", "1.16.0", "pkg:pypi/six@1.16.0", "/usr/lib/python3/dist-packages/six-1.16.0.egg-info"),
    ]
    toolbelt = inv.packages[0]
    assert toolbelt.licenses == ("Apache 2.0",) and toolbelt.supplier == "Ian Cordasco, Cory Benfield"


def test_bad_input_is_skipped_with_one_line_each(tmp_path: Path) -> None:
    corrupt = b"\x00\x01\x02 garbage\xff\xfe\nPackage libc6 without a colon\n\n" + STATUS_B
    layout, desc = image(
        tmp_path,
        {
            "var/lib/dpkg/status": corrupt,
            f"{SITE}/bad-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bad\nVersion: not a!\n",
            f"{SITE}/noname-1.0.dist-info/METADATA": b"\x00\x01 not metadata at all",
            f"{SITE}/good-2.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: good\nVersion: 2.0\n",
        },
    )
    with collect_warnings() as warned:
        inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert warned == inv.skipped  # each skipped line is also one warning
    assert [(p.type, p.name) for p in inv.packages] == [("deb", "base-files"), ("python", "good")]
    assert len(inv.skipped) == 3, inv.skipped
    status, bad, noname = sorted(inv.skipped, key=lambda x: ("status" not in x, "noname" in x))
    assert status.startswith("/var/lib/dpkg/status: corrupt: 1 of 2 paragraphs skipped (line 1:")
    assert bad.startswith(f"/{SITE}/bad-1.0.dist-info/METADATA: bad metadata (")
    assert "'not a!' is invalid for 'version'" in bad
    assert noname.startswith(f"/{SITE}/noname-1.0.dist-info/METADATA: bad metadata (")
    assert all("\n" not in line for line in inv.skipped)


def test_status_file_with_nothing_readable(tmp_path: Path) -> None:
    layout, desc = image(tmp_path, {"var/lib/dpkg/status": b"\x89PNG\r\n\x1a\n\x00\x00binary"})
    with pytest.warns(PybuildWarning, match="corrupt: 1 of 1 paragraphs skipped"):
        inv = inventory(layout, desc)  # type: ignore[arg-type]
    assert inv.packages == []
    assert inv.skipped == [
        "/var/lib/dpkg/status: corrupt: 1 of 1 paragraphs skipped (line 1: not a 'Field: value' line)"
    ]


def test_image_without_any_package_database(busybox_layout: Path) -> None:
    layout = Layout.open(busybox_layout)
    with pytest.warns(PybuildWarning, match="no package database"):
        inv = inventory(layout, layout.resolve("latest"))
    assert inv.packages == []
    assert inv.skipped == [
        (
            "no package database (/var/lib/dpkg/status, /var/lib/dpkg/status.d/*, /lib/apk/db/installed): "
            "no OS packages listed"
        )
    ]
    assert len(inv.layers) == 1


def test_size_limits_keep_memory_bounded(tmp_path: Path) -> None:
    layout, desc = image(tmp_path, {"var/lib/dpkg/status": STATUS_A, "big/file": b"x" * 5000})
    files = read_image_files(
        layout,
        load_image(layout, desc).layers,  # type: ignore[arg-type]
        lambda path: 100 if path in ("var/lib/dpkg/status", "big/file") else None,
    )
    assert set(files.files) == {"var/lib/dpkg/status", "big/file"}
    assert files.read("var/lib/dpkg/status") is None
    assert files.skipped == [
        f"/var/lib/dpkg/status: {len(STATUS_A)} bytes, over the 100-byte limit: not read",
        "/big/file: 5000 bytes, over the 100-byte limit: not read",
    ]


def test_corrupt_layer_blob_is_an_error(tmp_path: Path) -> None:
    layout, desc = image(tmp_path, {"var/lib/dpkg/status": STATUS_A})
    blob = load_image(layout, desc).layers[0]  # type: ignore[arg-type]
    path = tmp_path / "oci" / "blobs" / "sha256" / blob.digest.encoded
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PybuildError) as info:
        inventory(layout, desc)  # type: ignore[arg-type]
    assert str(blob.digest) in str(info.value) and "corrupt" in str(info.value)
