"""``Layout``: opening and creating a layout, index.json updates, tags."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.errors import ImageNotFound, LayoutError
from pybuild.layout import Descriptor, Digest, Layout
from tests.fixtures.images import make_image
from tests.fixtures.tools import validate_documents, validate_layout


def test_layout_errors_name_the_layout(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"^oci:.*/nope does not exist$"):
        Layout.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(LayoutError, match="oci-layout is missing"):
        Layout.open(tmp_path / "plain")
    bad = Layout.create(tmp_path / "bad")
    (tmp_path / "bad" / "index.json").write_text(
        '{"schemaVersion": 2, "manifests": [{"digest": "sha256:../x"}]}'
    )
    with pytest.raises(LayoutError, match=r"index.json of oci:.*manifests\[0\]"):
        bad.read_index()


def test_tags(tmp_path: Path, busybox_tar: bytes) -> None:
    layout = Layout.create(tmp_path / "l")
    desc = make_image(layout, [busybox_tar], "v1")
    assert layout.resolve("v1") == desc
    layout.set_tag("v2", desc)
    layout.set_tag("v1", desc)  # re-tagging replaces, never duplicates
    assert sorted(t for t, _ in layout.tags()) == ["v1", "v2"]
    layout.remove_tag("v1")
    with pytest.raises(ImageNotFound):
        layout.resolve("v1")
    validate_layout(tmp_path / "l", "v2")
    validate_documents(tmp_path / "l")


_tags = st.sampled_from(["a", "b", "c", "d"])
_ops = st.lists(st.tuples(st.sampled_from(["set", "rm"]), _tags, st.integers(0, 2)), max_size=15)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_index_updates_match_a_model(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:  # type: ignore[type-arg]
    layout = Layout.create(tmp_path_factory.mktemp("idx"))
    targets = [
        Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of_bytes(bytes([i])), i + 1)
        for i in range(3)
    ]
    model: dict[str, Descriptor] = {}
    for op, tag, n in ops:
        if op == "set":
            layout.set_tag(tag, targets[n])
            model[tag] = targets[n]
        elif tag in model:
            layout.remove_tag(tag)
            del model[tag]
        else:
            with pytest.raises(ImageNotFound):
                layout.remove_tag(tag)
    assert dict(layout.tags()) == model
    names = [t for t, _ in layout.tags()]
    assert len(names) == len(set(names))
