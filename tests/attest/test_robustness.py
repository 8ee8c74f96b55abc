"""Whatever bytes an image holds, the parsers say what they skipped and never raise; whatever license
text a package states, the SBOMs still validate (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.attest import Inventory, Layer, Package, cyclonedx_document, spdx_document
from pybuild.attest.apk import parse_installed
from pybuild.attest.dpkg import copyright_licenses, parse_status
from pybuild.attest.licenses import spdx_license
from pybuild.attest.pydist import parse_metadata
from pybuild.layout import Descriptor, Digest, Platform, mediatype
from tests.fixtures.packages import APK_DB, COPYRIGHT, METADATA, STATUS_A

WORDS = [
    "GPL-2+",
    "MIT",
    "Expat",
    "or",
    "and",
    "with",
    "OpenSSL",
    "exception",
    "(",
    ")",
    ",",
    "+",
    "BSD-3-clause",
    "public-domain",
    "Apache 2.0",
    "Classpath-exception-2.0",
    "WITH",
    "LicenseRef-x",
]


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """``seed`` with random bytes spliced in and cut out."""
    return st.tuples(st.integers(0, len(seed)), st.integers(0, 40), st.binary(max_size=40)).map(
        lambda t: seed[: t[0]] + t[2] + seed[t[0] + t[1] :]
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), *(mutated(s) for s in (STATUS_A, APK_DB, METADATA, COPYRIGHT))))
def test_parsers_never_raise(data: bytes) -> None:
    debs, skipped = parse_status(data, "/s")
    assert all(d.name and d.version for d in debs)
    assert all("\n" not in line for line in skipped) and len(skipped) <= 1
    apks, skipped = parse_installed(data, "/a")
    assert all(a.name and a.version for a in apks)
    assert all("\n" not in line for line in skipped) and len(skipped) <= 1
    dist, problem = parse_metadata(data, "/m")
    assert (dist is None) == (problem is not None)
    for text in copyright_licenses(data):
        assert spdx_license(text).expression


LICENSES = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join), max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(LICENSES, st.sampled_from([None, "A B <a@b.c>", "Team (x) <t@y>", "a, b"])), max_size=4
    )
)
def test_documents_validate_whatever_the_license_text(packages: list[tuple[list[str], str | None]]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    digest = Digest.of_bytes(b"image")
    inventory = Inventory(
        image=Descriptor(mediatype.OCI_MANIFEST, digest, 10),
        config=digest,
        platform=Platform("amd64", "linux"),
        layers=[Layer(digest, mediatype.OCI_LAYER, 10, digest)],
        packages=[
            Package(
                "deb",
                f"p{i}",
                "1.0",
                f"pkg:deb/debian/p{i}@1.0",
                "/var/lib/dpkg/status",
                supplier,
                tuple(lic),
            )
            for i, (lic, supplier) in enumerate(packages)
        ],
    )
    created = datetime(2024, 1, 1, tzinfo=UTC)
    spdx_document(inventory, name="x", created=created)  # validates with spdx-tools, raises if not
    data = cyclonedx_document(inventory, name="x", created=created)
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(data.decode()) is None
