"""layout/mutate.py: ConfigChanges (validated when made, applied to a config's JSON), history entries
and created times, edit_image (a new config and manifest, layers shared, into another layout too)
and configure (what `pybuild config` does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.errors import UsageError
from pybuild.layout import (
    ConfigChanges,
    ImageStore,
    Layout,
    add_history,
    configure,
    created_time,
    edit_image,
    load_image,
    source_date_epoch,
)
from tests.fixtures.images import make_image, tar_entries
from tests.fixtures.tools import validate_layout


def config_doc() -> dict[str, object]:
    return {
        "config": {"Env": ["PATH=/bin", "A=1", "B=2"], "Cmd": ["sh"], "Labels": {"x": "1"}},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }


def test_changes_apply_in_place() -> None:
    doc = config_doc()
    ConfigChanges(
        clear=["cmd"],
        entrypoint=["/entry"],
        env={"A": "9", "C": "3"},
        workdir="/w",
        user="1:2",
        labels={"y": "2"},
        volumes=["/data"],
        exposed_ports=["80", "53/udp"],
        stop_signal="SIGINT",
        author="me",
    ).apply(doc)
    runtime = doc["config"]
    assert runtime == {
        "Env": ["PATH=/bin", "B=2", "A=9", "C=3"],
        "Entrypoint": ["/entry"],
        "Labels": {"x": "1", "y": "2"},
        "WorkingDir": "/w",
        "User": "1:2",
        "Volumes": {"/data": {}},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "StopSignal": "SIGINT",
    }
    assert doc["author"] == "me"
    empty = config_doc()
    ConfigChanges().apply(empty)
    assert empty == config_doc()  # nothing asked, nothing changed


def test_history_entries_and_times() -> None:
    doc = config_doc()
    add_history(doc, "2024-01-01T00:00:00Z", "pybuild repack", diff_id="sha256:" + "a" * 64, comment="c")
    add_history(doc, "2024-01-02T00:00:00Z", "pybuild config")
    assert doc["created"] == "2024-01-02T00:00:00Z"
    assert doc["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
    assert doc["history"] == [
        {"created": "2024-01-01T00:00:00Z", "created_by": "pybuild repack", "comment": "c"},
        {"created": "2024-01-02T00:00:00Z", "created_by": "pybuild config", "empty_layer": True},
    ]
    assert created_time(0) == "1970-01-01T00:00:00Z"
    assert created_time(None).endswith("Z") and "." in created_time(None)
    assert source_date_epoch({"SOURCE_DATE_EPOCH": " 10 "}) == 10
    assert source_date_epoch({"SOURCE_DATE_EPOCH": ""}) is None
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH 'soon' is not a number of seconds"):
        source_date_epoch({"SOURCE_DATE_EPOCH": "soon"})


def test_edit_image_into_another_layout_shares_layers(tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    desc = make_image(src, [tar_entries({"f": "x"})], "v1")
    image = load_image(src, desc)
    out = Layout.create(tmp_path / "out")
    new = edit_image(
        image, ConfigChanges(cmd=["/f"]), out, "v2", created_by="test", created="2024-01-01T00:00:00Z"
    )
    edited = load_image(out, out.resolve("v2"))
    assert edited.descriptor.digest == new.digest
    assert [layer.digest for layer in edited.layers] == [layer.digest for layer in image.layers]
    assert edited.config.runtime["Cmd"] == ["/f"]
    assert edited.config.history[-1] == {
        "created": "2024-01-01T00:00:00Z",
        "created_by": "test",
        "empty_layer": True,
    }
    validate_layout(tmp_path / "out", "v2")
    validate_layout(tmp_path / "src", "v1")  # the source is untouched


def test_configure_names_the_new_image(tmp_path: Path) -> None:
    store = ImageStore.at(tmp_path / "store")
    make_image(Layout.create(tmp_path / "src"), [tar_entries({"f": "x"})], "v1")
    desc = configure(store, f"oci:{tmp_path / 'src'}:v1", ConfigChanges(env={"K": "V"}), tag="localhost/c")
    _, found = store.lookup("localhost/c")
    assert found.digest == desc.digest
    assert "K=V" in load_image(store, found).config.runtime["Env"]
    # without -t the image keeps the name it was found under
    again = configure(store, "localhost/c", ConfigChanges(user="nobody"))
    assert store.lookup("localhost/c")[1].digest == again.digest != desc.digest
    validate_layout(tmp_path / "src", "v1")
    assert load_image(store, again).config.runtime["User"] == "nobody"
