from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.errors import UsageError
from pybuild.layout import parse_name, parse_reference


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.19", "docker.io/library/alpine:3.19"),
        ("library/alpine", "docker.io/library/alpine:latest"),
        ("user/app", "docker.io/user/app:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:v1", "localhost:5000/app:v1"),
        ("quay.io/org/sub/app:1.0-rc_1", "quay.io/org/sub/app:1.0-rc_1"),
        ("a.b/c@sha256:" + "0" * 64, "a.b/c@sha256:" + "0" * 64),
        ("my-app__x.y", "docker.io/library/my-app__x.y:latest"),
    ],
)
def test_normalise(text: str, normal: str) -> None:
    assert str(parse_name(text)) == normal
    assert str(parse_name(normal)) == normal


@pytest.mark.parametrize(
    "text",
    ["", "Alpine", "alpine:", "alpine:-x", "a//b", "-a", "a@sha256:zz", "a b", "alpine:" + "t" * 129, "/abs"],
)
def test_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid image name"):
        parse_name(text)


def test_oci_references() -> None:
    ref = parse_reference("oci:/tmp/lay:v1")
    assert (ref.transport, ref.path, ref.name) == ("oci", Path("/tmp/lay"), "v1")
    ref = parse_reference("oci:/tmp/lay")
    assert (ref.path, ref.name) == (Path("/tmp/lay"), "latest")
    ref = parse_reference("oci:rel/dir:tag")
    assert (ref.path, ref.name) == (Path("rel/dir"), "tag")
    with pytest.raises(UsageError):
        parse_reference("oci:")
    with pytest.raises(UsageError, match="bad tag"):
        parse_reference("oci:/x:bad tag")
    with pytest.raises(UsageError, match="unknown transport"):
        parse_reference("ftp://x/y")
