"""pybuild's own store (layout/imagestore.py): where it is, and looking images up by name or ID."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pybuild.errors import ImageNotFound
from pybuild.layout import ImageStore, Layout, default_store_path, load_image
from tests.fixtures.images import make_image
from tests.fixtures.tools import validate_layout


def test_store_location(busybox_layout: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "pybuild"
    env = {k: v for k, v in os.environ.items() if k != "PYBUILD_STORE"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    subprocess.run([str(exe), "tag", f"oci:{busybox_layout}", "bb"], env=env, check=True)
    assert Layout.open(tmp_path / "xdg" / "pybuild").resolve("docker.io/library/bb:latest")
    subprocess.run(
        [str(exe), "--store", str(tmp_path / "other"), "tag", f"oci:{busybox_layout}", "x"],
        env=env,
        check=True,
    )
    assert [t for t, _ in Layout.open(tmp_path / "other").tags()] == ["docker.io/library/x:latest"]


def test_default_store_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYBUILD_STORE", str(tmp_path / "explicit"))
    assert default_store_path() == tmp_path / "explicit"
    monkeypatch.delenv("PYBUILD_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "pybuild"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / ".local" / "share" / "pybuild"


def test_lookup_by_name_and_id_prefix(tmp_path: Path, busybox_tar: bytes) -> None:
    store = ImageStore.at(tmp_path / "store")
    first = make_image(store, [busybox_tar], "docker.io/library/busybox:latest")
    second = make_image(store, [busybox_tar[:-1024] + bytes(1024)], "localhost/app:v1")
    assert store.lookup("busybox") == ("docker.io/library/busybox:latest", first)
    assert store.lookup("localhost/app:v1") == ("localhost/app:v1", second)
    image_id = load_image(store, second).manifest.config.digest.encoded
    assert store.image_id(second) == image_id
    assert store.lookup(image_id[:12]) == ("localhost/app:v1", second)
    assert store.lookup("sha256:" + image_id) == ("localhost/app:v1", second)
    assert store.lookup(second.digest.encoded[:12])[1] == second  # a manifest digest prefix too
    with pytest.raises(ImageNotFound, match=r"image 'docker\.io/library/nothing:latest' is not in store"):
        store.lookup("nothing")
    store.set_tag("localhost/again:v1", second)  # one image under two tags is still one image
    assert store.lookup(image_id[:12])[1] == second
    validate_layout(tmp_path / "store", "localhost/app:v1")
