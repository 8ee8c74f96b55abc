from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybuild.errors import InvalidDigest
from pybuild.layout import Digest
from pybuild.layout.store import BlobStore

GOOD = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "A" * 64,  # uppercase hex
        "sha256:" + "0" * 63,  # short
        "sha256:" + "0" * 65,  # long
        "sha512:" + "0" * 64,  # wrong length for sha512
        "sha256:../../etc/passwd",
        "sha256/../x:" + "0" * 64,
        "../sha256:" + "0" * 64,
        "sha256",
        ":" + "0" * 64,
        "",
        "md5:" + "0" * 32,  # grammatical but not accepted by default
        "sha256:" + "0" * 64 + "\n",
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


def test_rejects_non_strings() -> None:
    for value in (None, 5, b"sha256:" + b"0" * 64):
        with pytest.raises(InvalidDigest):
            Digest.parse(value)


def test_unregistered_algorithm_never_becomes_a_path(tmp_path: object) -> None:
    digest = Digest.parse("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", any_algorithm=True)
    assert not digest.registered
    with pytest.raises(InvalidDigest, match="unsupported digest"):
        BlobStore(tmp_path).exists(digest)  # type: ignore[arg-type]


def test_constructor_validates() -> None:
    with pytest.raises(InvalidDigest):
        Digest("sha256", "zz")
    assert str(Digest("sha512", "f" * 128)) == "sha512:" + "f" * 128


@given(st.binary(max_size=256), st.sampled_from(["sha256", "sha512"]))
def test_round_trip(data: bytes, algorithm: str) -> None:
    digest = Digest.of_bytes(data, algorithm)
    assert digest.encoded == hashlib.new(algorithm, data).hexdigest()
    assert Digest.parse(str(digest)) == digest


@given(st.text(max_size=80))
def test_parse_never_raises_anything_else(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except InvalidDigest:
        return
    assert str(digest) == text
    assert "/" not in digest.encoded and ".." not in digest.encoded
