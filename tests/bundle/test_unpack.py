"""`pybuild unpack` and `pybuild repack` against umoci and runc, as root and rootless."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import Layout, load_image
from tests.fixtures.rootless import TEST_USER, as_test_user
from tests.fixtures.tools import require, run, runtime_schema_errors, validate_layout
from tests.fixtures.trees import tree, tree_differences

PROJECT = Path(__file__).resolve().parents[2]


def test_unpack_busybox_matches_umoci(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    pybuild_cli("unpack", f"oci:{busybox_layout}", str(tmp_path / "ours"))
    run(["umoci", "unpack", "--image", f"{busybox_layout}:latest", str(tmp_path / "umoci")])
    assert tree_differences(tree(tmp_path / "ours" / "rootfs"), tree(tmp_path / "umoci" / "rootfs")) == []
    spec = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert runtime_schema_errors(spec) == []
    assert spec["process"]["args"] == ["/bin/sh"]


@pytest.mark.slow
def test_unpack_debian_matches_umoci(pybuild_cli: Any, debian_layout: Path, tmp_path: Path) -> None:
    pybuild_cli("unpack", f"oci:{debian_layout}", str(tmp_path / "ours"))
    run(["umoci", "unpack", "--image", f"{debian_layout}:latest", str(tmp_path / "umoci")])
    ours, theirs = tree(tmp_path / "ours" / "rootfs"), tree(tmp_path / "umoci" / "rootfs")
    assert len(ours) > 5000
    assert tree_differences(ours, theirs) == []


def test_unpack_twice_is_identical(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        pybuild_cli("unpack", f"oci:{busybox_layout}", str(tmp_path / name))
    assert tree(tmp_path / "a" / "rootfs") == tree(tmp_path / "b" / "rootfs")
    assert (tmp_path / "a" / "config.json").read_bytes() == (tmp_path / "b" / "config.json").read_bytes()


def test_unpack_refuses_non_empty_bundle(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("mine")
    proc = pybuild_cli("unpack", f"oci:{busybox_layout}", str(tmp_path / "b"), check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(
        f"error: bundle {tmp_path / 'b'} exists and is not empty"
    )
    assert (tmp_path / "b" / "keep").read_text() == "mine"


def _echo_image(pybuild_cli: Any, busybox_layout: Path) -> str:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    pybuild_cli(
        "config", "busybox", "-t", "localhost/echo",
        "--entrypoint", "/bin/sh", "--cmd", "-c", "--cmd", 'echo "hello $GREETING"; id -u; pwd',
        "--env", "GREETING=runc", "--workdir", "/tmp",
    )  # fmt: skip
    return "localhost/echo"


def test_runc_runs_the_bundle_as_root(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    runc = require("runc")
    image = _echo_image(pybuild_cli, busybox_layout)
    pybuild_cli("unpack", image, str(tmp_path / "b"))
    proc = subprocess.run(
        [runc, "--root", str(tmp_path / "runc"), "run", "--bundle", str(tmp_path / "b"), f"pb-{os.getpid()}"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["hello runc", "0", "/tmp"]


@pytest.mark.rootless
def test_runc_runs_the_bundle_rootless(pybuild_cli: Any, busybox_layout: Path, user_home: Path) -> None:
    image = _echo_image(pybuild_cli, busybox_layout)
    oci = user_home / "oci"
    pybuild_cli("copy", image, f"oci:{oci}:echo")
    subprocess.run(["chown", "-R", TEST_USER, str(oci)], check=True)
    pybuild = str(Path(sys.executable).parent / "pybuild")
    proc = as_test_user(
        [pybuild, "--store", str(user_home / "store"), "unpack", f"oci:{oci}:echo", "b"], user_home
    )
    assert proc.returncode == 0, proc.stderr
    spec = json.loads((user_home / "b" / "config.json").read_text())
    assert spec["linux"]["uidMappings"][0]["hostID"] == int(subprocess.check_output(["id", "-u", TEST_USER]))
    proc = as_test_user(
        ["runc", "--root", str(user_home / "run" / "runc"), "run", "-b", "b", "pb-rootless"], user_home
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["hello runc", "0", "/tmp"]


def test_repack_commits_changes_as_one_layer(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    b = tmp_path / "b"
    pybuild_cli("unpack", "busybox", str(b))
    rootfs = b / "rootfs"
    (rootfs / "etc" / "motd").write_text("new file\n")
    (rootfs / "etc" / "passwd").write_text(
        (rootfs / "etc" / "passwd").read_text() + "app:x:1000:1000::/:/bin/sh\n"
    )
    (rootfs / "bin" / "ls").unlink()
    shutil.rmtree(rootfs / "var")
    (rootfs / "srv" / "data").mkdir(parents=True)
    os.chmod(rootfs / "srv" / "data", 0o700)
    os.link(rootfs / "etc" / "motd", rootfs / "srv" / "motd-link")
    pybuild_cli("repack", str(b), "-t", "localhost/changed", env={"SOURCE_DATE_EPOCH": "1700000000"})
    store = Layout.open(pybuild_cli.store)
    old = load_image(store, store.resolve("docker.io/library/busybox:latest"))
    new = load_image(store, store.resolve("localhost/changed:latest"))
    assert new.layers[:-1] == old.layers and len(new.layers) == len(old.layers) + 1
    assert new.config.history[-1]["created_by"] == "pybuild repack"
    assert len(new.config.diff_ids) == len(new.layers)
    validate_layout(pybuild_cli.store)
    # the result, unpacked by pybuild and by umoci, is the changed tree
    pybuild_cli("unpack", "localhost/changed", str(tmp_path / "again"))
    want = tree(rootfs)
    assert tree_differences(tree(tmp_path / "again" / "rootfs"), want) == []
    pybuild_cli("copy", "localhost/changed", f"oci:{tmp_path}/out:changed")
    run(["umoci", "unpack", "--image", f"{tmp_path}/out:changed", str(tmp_path / "umoci")])
    assert tree_differences(tree(tmp_path / "umoci" / "rootfs"), want) == []


def test_repack_without_changes_adds_no_layer(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    pybuild_cli("unpack", "busybox", str(tmp_path / "b"))
    pybuild_cli("repack", str(tmp_path / "b"), "-t", "localhost/same")
    store = Layout.open(pybuild_cli.store)
    new = load_image(store, store.resolve("localhost/same:latest"))
    assert len(new.layers) == 1 and new.config.history[-1]["empty_layer"] is True


def test_repack_of_a_plain_directory_is_refused(pybuild_cli: Any, tmp_path: Path) -> None:
    (tmp_path / "plain" / "rootfs").mkdir(parents=True)
    proc = pybuild_cli("repack", str(tmp_path / "plain"), "-t", "x", check=False)
    assert (
        proc.returncode == 1
        and "was not unpacked by pybuild" in proc.stderr
        and "Traceback" not in proc.stderr
    )


@pytest.mark.rootless
def test_rootless_unpack_keeps_real_owners(user_home: Path, busybox_tar: bytes) -> None:
    import io
    import tarfile

    from tests.fixtures.images import make_image

    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("owned")
        info.uid, info.gid, info.size, info.mode = 123, 456, 2, 0o640
        tar.addfile(info, io.BytesIO(b"x\n"))
    oci = user_home / "oci"
    make_image(Layout.create(oci), [busybox_tar, extra.getvalue()], "owned")
    subprocess.run(["chown", "-R", TEST_USER, str(oci)], check=True)
    pybuild = str(Path(sys.executable).parent / "pybuild")
    proc = as_test_user(
        [pybuild, "--store", str(user_home / "s"), "unpack", f"oci:{oci}:owned", "b"], user_home
    )
    assert proc.returncode == 0, proc.stderr
    sub = subprocess.check_output(["grep", f"^{TEST_USER}:", "/etc/subuid"], text=True).split(":")
    subgid = subprocess.check_output(["grep", f"^{TEST_USER}:", "/etc/subgid"], text=True).split(":")
    st = os.lstat(user_home / "b" / "rootfs" / "owned")
    assert (st.st_uid, st.st_gid) == (int(sub[1]) + 122, int(subgid[1]) + 455)
    uid = int(subprocess.check_output(["id", "-u", TEST_USER]))
    assert os.lstat(user_home / "b" / "rootfs" / "bin" / "busybox").st_uid == uid  # container root = the user


def test_unpack_of_a_corrupt_layer_fails_cleanly(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    lay = tmp_path / "lay"
    shutil.copytree(busybox_layout, lay)
    image = load_image(Layout.open(lay), Layout.open(lay).resolve("latest"))
    blob = lay / "blobs" / "sha256" / image.layers[0].digest.encoded
    data = bytearray(blob.read_bytes())
    data[len(data) - 100] ^= 0x55  # inside the gzip stream, near its end
    blob.write_bytes(bytes(data))
    proc = pybuild_cli("unpack", f"oci:{lay}", str(tmp_path / "b"), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert str(image.layers[0].digest) in proc.stderr or "corrupt" in proc.stderr
    assert not (tmp_path / "b").exists(), "a half-written bundle was left behind"


def test_digest_with_path_characters_is_refused(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    lay = tmp_path / "lay"
    shutil.copytree(busybox_layout, lay)
    index = json.loads((lay / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    (lay / "index.json").write_text(json.dumps(index))
    proc = pybuild_cli("unpack", f"oci:{lay}", str(tmp_path / "b"), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "invalid digest" in proc.stderr and "index.json" in proc.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.rootless
def test_rootless_repack(user_home: Path, busybox_layout: Path, tmp_path: Path) -> None:
    import io
    import tarfile

    oci = user_home / "oci"
    shutil.copytree(busybox_layout, oci)
    subprocess.run(["chown", "-R", TEST_USER, str(oci)], check=True)
    pybuild = [str(Path(sys.executable).parent / "pybuild"), "--store", str(user_home / "s")]
    proc = as_test_user([*pybuild, "unpack", f"oci:{oci}:latest", "b"], user_home)
    assert proc.returncode == 0, proc.stderr
    proc = as_test_user(["sh", "-c", "echo hi > b/rootfs/etc/motd && rm b/rootfs/bin/ls"], user_home)
    assert proc.returncode == 0, proc.stderr
    proc = as_test_user([*pybuild, "repack", "b", "-t", f"oci:{oci}:changed"], user_home)
    assert proc.returncode == 0, proc.stderr
    layout = Layout.open(oci)
    image = load_image(layout, layout.resolve("changed"))
    assert len(image.layers) == 2
    with (
        layout.blobs.open(image.layers[1].digest) as blob,
        tarfile.open(fileobj=io.BytesIO(blob.read())) as tar,
    ):
        members = {m.name: m for m in tar.getmembers()}
    assert "bin/.wh.ls" in members and "etc/motd" in members
    assert (members["etc/motd"].uid, members["etc/motd"].gid) == (0, 0)  # container ids, not the host's
    validate_layout(oci)
