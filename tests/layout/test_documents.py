"""Document parsers against the image-spec's 65 schema vectors, byte preservation, round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybuild.errors import InvalidDocument
from pybuild.layout import Descriptor, Digest, ImageConfig, Index, Manifest, OciLayoutFile, dump_json
from tests.fixtures.tools import CORPORA, schema_errors

VECTORS = json.loads((CORPORA / "image-spec" / "image_spec_schema_vectors.json").read_text())
PARSERS: dict[str, Any] = {
    "descriptor": lambda raw: Descriptor.from_dict(json.loads(raw)),
    "manifest": Manifest.parse,
    "index": Index.parse,
    "config": ImageConfig.parse,
    "layout": OciLayoutFile.parse,
}


def _vector_id(i: int, v: dict[str, Any]) -> str:
    return f"{i:02d}-{v['kind']}-{'bad' if v['fail'] else 'ok'}"


def test_there_are_65_vectors() -> None:
    assert len(VECTORS) == 65


@pytest.mark.parametrize("vector", VECTORS, ids=[_vector_id(i, v) for i, v in enumerate(VECTORS)])
def test_schema_vector(vector: dict[str, Any]) -> None:
    raw = vector["document"].encode()
    parse = PARSERS[vector["kind"]]
    if vector["fail"]:
        with pytest.raises(InvalidDocument) as info:
            parse(raw)
        message = str(info.value)
        assert "\n" not in message and message, message
    else:
        doc = parse(raw)
        if hasattr(doc, "to_bytes"):
            assert doc.to_bytes() == raw  # kept byte for byte


def test_invalid_vectors_named_in_error() -> None:
    bad = Manifest.parse.__func__  # type: ignore[attr-defined]
    with pytest.raises(InvalidDocument, match=r"^manifest in x: layers\[0\]: size must be"):
        bad(
            Manifest,
            b'{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
            b'"size":1,"digest":"sha256:' + b"a" * 64 + b'"},"layers":[{"mediaType":"a/b","size":"1",'
            b'"digest":"sha256:' + b"a" * 64 + b'"}]}',
            "manifest in x",
        )


def test_unchanged_document_is_not_reserialised() -> None:
    raw = b'{ "schemaVersion" : 2,  "manifests": [], "zzz": {"keep": [1, 2]} }'
    index = Index.parse(raw)
    assert index.to_bytes() == raw
    assert index.digest == Digest.of_bytes(raw)
    changed = index.with_manifests([])
    assert changed.to_bytes() == b'{"manifests":[],"schemaVersion":2,"zzz":{"keep":[1,2]}}'


def test_new_json_is_deterministic() -> None:
    a = dump_json({"b": 1, "a": {"d": [1, "é"], "c": None}})
    b = dump_json({"a": {"c": None, "d": [1, "é"]}, "b": 1})
    assert a == b == '{"a":{"c":null,"d":[1,"é"]},"b":1}'.encode()


def test_config_changes_keep_unknown_fields() -> None:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "x-custom": {"a": 1},
    }
    config = ImageConfig.parse(json.dumps(doc).encode())
    new = config.changed(lambda d: d.setdefault("config", {}).update(Cmd=["sh"]))
    assert json.loads(new.to_bytes())["x-custom"] == {"a": 1}
    assert new.runtime["Cmd"] == ["sh"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["config"].update(Env=["NOEQUALS"]), "not KEY=VALUE"),
        (lambda d: d["config"].update(Cmd="sh"), "config.Cmd must be an array of strings"),
        (lambda d: d.update(created="yesterday"), "not an RFC 3339 time"),
        (lambda d: d["rootfs"].update(diff_ids=["sha256:xyz"]), "rootfs.diff_ids"),
        (lambda d: d.update(history=[{"empty_layer": "yes"}]), "empty_layer must be a boolean"),
    ],
)
def test_config_rejects(change: Any, message: str) -> None:
    doc: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    change(doc)
    with pytest.raises(InvalidDocument, match=message):
        ImageConfig.parse(json.dumps(doc).encode())


# --- property tests ------------------------------------------------------------------------------

_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**31), 2**31), st.text(max_size=8))
_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_hex = st.text("0123456789abcdef", min_size=64, max_size=64)
_token = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,20}", fullmatch=True)
_media = st.builds(lambda a, b: f"{a}/{b}", _token, _token)


@st.composite
def descriptors(draw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "mediaType": draw(_media),
        "digest": "sha256:" + draw(_hex),
        "size": draw(st.integers(0, 2**63 - 1)),
    }
    if draw(st.booleans()):
        doc["annotations"] = draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3))
    if draw(st.booleans()):
        doc["platform"] = {"architecture": draw(_token), "os": draw(_token)}
        if draw(st.booleans()):
            doc["platform"]["variant"] = draw(_token)
    if draw(st.booleans()):
        doc["urls"] = [f"https://example.com/{draw(_token)}"]
    extras = draw(st.dictionaries(st.text(min_size=1, max_size=8).map(lambda k: "x-" + k), _json, max_size=3))
    doc.update(extras)
    return doc


@settings(deadline=None)  # the first example also loads the OCI schemas (hundreds of ms on a busy machine)
@given(descriptors())
def test_descriptor_round_trip_keeps_unknown_fields(doc: dict[str, Any]) -> None:
    desc = Descriptor.from_dict(doc)
    assert desc.to_dict() == doc
    assert Descriptor.from_dict(json.loads(dump_json(desc.to_dict()))) == desc
    assert schema_errors("descriptor", desc.to_dict()) == []


def test_written_manifest_and_index_pass_schema(tmp_path: Path) -> None:
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest("sha256", "a" * 64), 10)
    config = Descriptor("application/vnd.oci.image.config.v1+json", Digest("sha256", "b" * 64), 20)
    manifest = Manifest.build(config, [layer], annotations={"k": "v"})
    assert schema_errors("manifest", json.loads(manifest.to_bytes())) == []
    index = Index.build([manifest.descriptor()])
    assert schema_errors("index", json.loads(index.to_bytes())) == []
