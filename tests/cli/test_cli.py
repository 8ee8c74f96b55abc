"""The CLI end to end: the real console script, real layouts, real peer tools."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import Layout, check_layout, load_image
from tests.fixtures.tools import run, validate_documents, validate_layout


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert not [line for line in lines[1:] if not line.startswith("hint: ")], proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_version(pybuild_cli: Any) -> None:
    assert pybuild_cli("--version").stdout.startswith("pybuild ")


def test_tag_inspect_images_rm(pybuild_cli: Any, busybox_layout: Path) -> None:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    pybuild_cli("tag", "busybox", "localhost/mine:v1")
    listed = json.loads(pybuild_cli("images", "--json").stdout)
    assert sorted(i["name"] for i in listed) == ["docker.io/library/busybox:latest", "localhost/mine:v1"]
    assert len({i["id"] for i in listed}) == 1
    info = json.loads(pybuild_cli("inspect", "--json", "docker.io/library/busybox").stdout)
    assert info["runtime"]["Cmd"] == ["/bin/sh"]
    assert info["id"] == listed[0]["id"]
    by_id = json.loads(pybuild_cli("inspect", "--json", info["id"][:12]).stdout)
    assert by_id["digest"] == info["digest"]
    raw = pybuild_cli("inspect", "--raw", "busybox").stdout.encode()
    assert (pybuild_cli.store / "blobs" / "sha256" / info["digest"].split(":")[1]).read_bytes() == raw
    text = pybuild_cli("images").stdout
    assert "docker.io/library/busybox" in text and info["id"][:12] in text
    pybuild_cli("rm", "localhost/mine:v1")
    assert [i["name"] for i in json.loads(pybuild_cli("images", "--json").stdout)] == [
        "docker.io/library/busybox:latest"
    ]
    validate_layout(pybuild_cli.store)
    validate_documents(pybuild_cli.store)


def test_copy_shares_blobs_and_other_tools_read_it(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}:latest", "busybox")
    out = pybuild_cli("copy", "busybox", f"oci:{tmp_path}/out:v1").stdout
    assert "copied 3 of 3 blobs" in out
    src = sorted(p.name for p in (busybox_layout / "blobs" / "sha256").iterdir())
    assert sorted(p.name for p in (tmp_path / "out" / "blobs" / "sha256").iterdir()) == src
    validate_layout(tmp_path / "out", "v1")
    validate_documents(tmp_path / "out")
    assert run(["umoci", "ls", "--layout", str(tmp_path / "out")]).stdout.split() == ["v1"]
    skopeo = json.loads(run(["skopeo", "inspect", f"oci:{tmp_path}/out:v1"]).stdout)
    assert skopeo["Digest"] == str(Layout.open(tmp_path / "out").resolve("v1").digest)
    run(["umoci", "unpack", "--image", f"{tmp_path}/out:v1", str(tmp_path / "bundle")])
    assert os.path.islink(tmp_path / "bundle" / "rootfs" / "bin" / "sh")
    # copying again copies nothing
    assert "copied 0 of 3" in pybuild_cli("copy", "busybox", f"oci:{tmp_path}/out:v2").stdout


def test_config_makes_a_new_image_sharing_layers(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    pybuild_cli(
        "config",
        "busybox",
        "-t",
        "localhost/app",
        "--entrypoint",
        "/bin/echo",
        "--cmd",
        "hello",
        "--cmd",
        "world",
        "--env",
        "A=1",
        "--env",
        "PATH=/bin",
        "--workdir",
        "/srv",
        "--user",
        "nobody",
        "--label",
        "org.example=yes",
        "--volume",
        "/data",
        "--expose",
        "8080",
        "--expose",
        "53/udp",
        "--stopsignal",
        "SIGINT",
        "--author",
        "kilroy",
        env={"SOURCE_DATE_EPOCH": "1700000000"},
    )
    store = Layout.open(pybuild_cli.store)
    old = load_image(store, store.resolve("docker.io/library/busybox:latest"))
    new = load_image(store, store.resolve("localhost/app:latest"))
    assert new.layers == old.layers
    rt = new.config.runtime
    assert rt["Entrypoint"] == ["/bin/echo"] and rt["Cmd"] == ["hello", "world"]
    assert rt["Env"] == ["A=1", "PATH=/bin"]
    assert rt["WorkingDir"] == "/srv" and rt["User"] == "nobody" and rt["StopSignal"] == "SIGINT"
    assert rt["Labels"] == {"org.example": "yes"}
    assert rt["Volumes"] == {"/data": {}}
    assert rt["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert new.config.author == "kilroy"
    assert new.config.created == "2023-11-14T22:13:20Z"
    last = new.config.history[-1]
    assert last["empty_layer"] is True and last["created_by"].startswith("pybuild config busybox")
    assert len(new.config.history) == len(old.config.history) + 1
    validate_layout(pybuild_cli.store)
    validate_documents(pybuild_cli.store)
    # umoci reads the result
    pybuild_cli("copy", "localhost/app", f"oci:{tmp_path}/o:app")
    umoci = json.loads(run(["umoci", "stat", "--image", f"{tmp_path}/o:app", "--json"]).stdout)
    assert len(umoci["history"]) == 2


def test_umoci_and_skopeo_layouts_are_read(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    # umoci makes an image from scratch, with a layer of its own
    lay = tmp_path / "umoci"
    run(["umoci", "init", "--layout", str(lay)])
    run(["umoci", "new", "--image", f"{lay}:base"])
    run(["umoci", "unpack", "--rootless", "--image", f"{lay}:base", str(tmp_path / "b")])
    (tmp_path / "b" / "rootfs" / "hello.txt").write_text("hi\n")
    run(["umoci", "repack", "--image", f"{lay}:one", str(tmp_path / "b")])
    run(["umoci", "config", "--image", f"{lay}:one", "--config.cmd", "/hello", "--tag", "two"])
    pybuild_cli("copy", f"oci:{lay}:two", "localhost/from-umoci")
    info = json.loads(pybuild_cli("inspect", "--json", "localhost/from-umoci").stdout)
    assert info["runtime"]["Cmd"] == ["/hello"]
    assert len(info["layers"]) == 1
    assert pybuild_cli("check", f"oci:{lay}").returncode == 0
    # skopeo copies ours, then we read skopeo's layout
    sk = tmp_path / "skopeo"
    run(["skopeo", "copy", f"oci:{busybox_layout}:latest", f"oci:{sk}:bb"])
    pybuild_cli("copy", f"oci:{sk}:bb", "localhost/from-skopeo")
    ours = Layout.open(busybox_layout).resolve("latest").digest
    assert json.loads(pybuild_cli("inspect", "--json", "localhost/from-skopeo").stdout)["digest"] == str(ours)
    # skopeo writing Docker schema 2 into a layout: read too
    run(["skopeo", "copy", "--format", "v2s2", f"oci:{busybox_layout}:latest", f"oci:{tmp_path}/d2:bb"])
    info = json.loads(pybuild_cli("inspect", "--json", f"oci:{tmp_path}/d2:bb").stdout)
    assert info["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert check_layout(Layout.open(tmp_path / "d2")) == []


@pytest.mark.parametrize("which", ["manifest", "config", "layer"])
def test_flipped_byte_is_reported_everywhere(pybuild_cli: Any, busybox_layout: Path, which: str) -> None:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    store = Layout.open(pybuild_cli.store)
    image = load_image(store, store.resolve("docker.io/library/busybox:latest"))
    digest = {"manifest": image.descriptor, "config": image.manifest.config, "layer": image.layers[0]}[
        which
    ].digest
    path = pybuild_cli.store / "blobs" / "sha256" / digest.encoded
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    want = f"blob {digest} in store {pybuild_cli.store} is corrupt"
    proc = pybuild_cli("check", check=False)
    assert proc.returncode == 1 and want in proc.stdout
    readers = [("copy", "busybox", f"oci:{pybuild_cli.store.parent}/out")]
    if which != "layer":
        readers += [("inspect", "busybox"), ("config", "busybox", "--cmd", "x")]
        # the list still works: the broken image is named in a warning, the others are listed
        listed = pybuild_cli("images")
        assert listed.stderr.startswith("warning: docker.io/library/busybox:latest is broken: ")
        assert want in listed.stderr and "Traceback" not in listed.stderr
    for args in readers:
        assert_one_line_error(pybuild_cli(*args, check=False), want)
    assert (
        not (pybuild_cli.store.parent / "out" / "index.json").exists()
        or not Layout.open(pybuild_cli.store.parent / "out").tags()
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("inspect", "nosuch"), "image 'docker.io/library/nosuch:latest' is not in store"),
        (("inspect", "Bad Name"), "invalid image name 'Bad Name'"),
        (("inspect", "oci:/nonexistent/dir:x"), "oci:/nonexistent/dir does not exist"),
        (("copy", "ftp://x/y", "z"), "unknown transport in 'ftp://x/y'"),
        (("config", "busybox", "--env", "NOEQUALS"), "--env 'NOEQUALS': expected KEY=VALUE"),
        (("config", "busybox", "--expose", "http"), "--expose 'http'"),
        (("frobnicate",), "No such command"),
        (("inspect",), "Missing argument"),
        (("gc", "/tmp"), "expected oci:DIR"),
    ],
)
def test_errors_are_one_line(
    pybuild_cli: Any, busybox_layout: Path, args: tuple[str, ...], fragment: str
) -> None:
    pybuild_cli("tag", f"oci:{busybox_layout}", "busybox")
    assert_one_line_error(pybuild_cli(*args, check=False), fragment)


def test_debug_shows_traceback(pybuild_cli: Any) -> None:
    proc = pybuild_cli("inspect", "nosuch", check=False, env={"PYBUILD_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ImageNotFound" in proc.stderr


def test_corrupt_index_json_is_named(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(busybox_layout, bad)
    (bad / "index.json").write_text(
        '{"schemaVersion":2,"manifests":[{"mediaType":"a/b","size":1,"digest":"sha256:../../x"}]}'
    )
    assert_one_line_error(
        pybuild_cli("inspect", f"oci:{bad}", check=False), f"index.json of oci:{bad}", "manifests[0]"
    )


def test_eight_processes_tag_into_one_store(pybuild_cli: Any, busybox_layout: Path) -> None:
    exe = Path(sys.executable).parent / "pybuild"
    env = {**os.environ, "PYBUILD_STORE": str(pybuild_cli.store)}
    procs = [
        subprocess.Popen(
            [str(exe), "tag", f"oci:{busybox_layout}", f"localhost/p{i}:t"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    names = sorted(i["name"] for i in json.loads(pybuild_cli("images", "--json").stdout))
    assert names == [f"localhost/p{i}:t" for i in range(8)]
    assert pybuild_cli("check").returncode == 0
    validate_layout(pybuild_cli.store)


CHURN = """
import sys, os, itertools
from pybuild.layout import Layout, load_image, commit_image
layout = Layout.open(sys.argv[1])
base = load_image(layout, layout.resolve("base"))
for i in itertools.count():
    cfg = base.config.changed(lambda d: d.setdefault("config", {}).update(Cmd=[str(i)]))
    with layout.writing():
        layout.blobs.put(os.urandom(300_000))  # an unreferenced blob too, as a failed build leaves
        desc = commit_image(layout, cfg, base.layers)
        layout.set_tag(f"t{i % 5}", desc)
"""


@pytest.mark.slow
def test_sigkill_at_any_point_leaves_a_clean_layout(busybox_layout: Path, tmp_path: Path) -> None:
    lay = tmp_path / "lay"
    shutil.copytree(busybox_layout, lay)
    Layout.open(lay).set_tag("base", Layout.open(lay).resolve("latest"))
    rng = random.Random(42)
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", CHURN, str(lay)], cwd=Path(__file__).parent.parent)
        time.sleep(0.25 + rng.random() * 0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert check_layout(Layout.open(lay)) == []
    validate_layout(lay)
    from pybuild.layout import gc

    result = gc(Layout.open(lay))
    assert result.removed  # the stray blobs
    validate_layout(lay)
    assert len(Layout.open(lay).tags()) >= 2


def test_shell_completion(pybuild_cli: Any) -> None:
    assert "_pybuild_completion" in pybuild_cli("--show-completion", "bash").stdout
    proc = pybuild_cli(
        env={"_PYBUILD_COMPLETE": "complete_bash", "COMP_WORDS": "pybuild ins", "COMP_CWORD": "1"}
    )
    assert proc.stdout.split() == ["inspect"]
