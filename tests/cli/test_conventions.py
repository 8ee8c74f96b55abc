"""CLI conventions of buildah, podman and skopeo: exit status 2 for a bad command line on every
command, image ID prefixes that name one image, `<none>` for untagged images, `pybuild history`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import ImageConfig, Layout, check_layout, commit_image
from tests.fixtures.cli import assert_fails
from tests.fixtures.images import make_config, put_layer, tar_tree
from tests.fixtures.tools import validate_layout

# every command, with a malformed value for each flag that takes one
BAD_COMMAND_LINES = [
    (["build", "--build-arg", "=V", "."], "--build-arg '=V'"),
    (["build", "--secret", "bogus", "."], "--secret 'bogus'"),
    (["build", "--secret", "id=x,src=/no/such/file", "."], "/no/such/file is not a file"),
    (["build", "--label", "novalue", "."], "--label 'novalue': expected KEY=VALUE"),
    (["build", "--annotation", "novalue", "."], "--annotation 'novalue'"),
    (["build", "--platform", "linux", "."], "invalid platform 'linux'"),
    (["build", "--format", "tarball", "."], "--format 'tarball'"),
    (["build", "--pull", "sometimes", "."], "--pull 'sometimes'"),
    (["build", "--network", "bridge", "."], "--network 'bridge'"),
    (["build", "--compression", "lz4", "."], "--compression 'lz4'"),
    (["build", "--timestamp", "yesterday", "."], "--timestamp"),
    (["build", "-t", "Bad Name", "."], "invalid image name"),
    (["build", "--target", "nowhere", "CTX"], "--target 'nowhere'"),
    (["build", "/no/such/context"], "is not a directory"),
    (["build", "--ignorefile", "/no/such/ignore", "CTX"], "ignore file /no/such/ignore"),
    (["copy", "--platform", "x/y/z/w", "busybox", "localhost/c"], "invalid platform 'x/y/z/w'"),
    (["copy", "--compression", "lz4", "busybox", "oci:OUT:t"], "lz4"),
    (["copy", "busybox", "nosuchtransport://x"], "nosuchtransport"),
    (["pull", "--platform", "linux", "127.0.0.1:9/x"], "invalid platform 'linux'"),
    (["push", "busybox", "docker://Bad Host/x"], "invalid"),
    (["tag", "busybox", "Bad Name"], "invalid image name"),
    (["config", "busybox", "--env", "novalue"], "--env 'novalue'"),
    (["config", "busybox", "--label", "novalue"], "--label 'novalue'"),
    (["config", "busybox", "--expose", "http"], "--expose 'http'"),
    (["config", "busybox", "--clear", "everything"], "--clear 'everything'"),
    (["config", "busybox", "--volume", "relative"], "--volume 'relative'"),
    (["run", "--env", "novalue", "busybox", "--", "true"], "--env 'novalue'"),
    (["run", "--volume", "nocolon", "busybox", "--", "true"], "--volume 'nocolon'"),
    (["run", "--network", "bridge", "busybox", "--", "true"], "--network 'bridge'"),
    (["repack", "--compression", "lz4", "-t", "x", "BUNDLE"], "--compression 'lz4'"),
    (["login", "-p", "x", "127.0.0.1:9"], "login needs --username"),
    (["gc", "notalayout"], "expected oci:DIR"),
    (["inspect"], "Missing argument"),
    (["images", "--bogus"], "No such option"),
    (["history", "--bogus", "busybox"], "No such option"),
    (["nosuchcommand"], "No such command"),
]


@pytest.mark.parametrize(
    ("args", "fragment"), BAD_COMMAND_LINES, ids=[" ".join(a) for a, _ in BAD_COMMAND_LINES]
)
def test_a_bad_command_line_exits_2(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path, args: list[str], fragment: str
) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\n")
    bundle = tmp_path / "bundle"
    pybuild_cli("unpack", "busybox", str(bundle))
    subst = {"CTX": str(ctx), "BUNDLE": str(bundle), "oci:OUT:t": f"oci:{tmp_path / 'out'}:t"}
    args = [subst.get(a, a) for a in args]
    proc = pybuild_cli(*args, check=False)
    if args[0] == "build" and args[-1] == ".":
        proc = pybuild_cli(*args[:-1], str(ctx), check=False)
    assert_fails(proc, 2, fragment)
    assert [i["name"] for i in json.loads(pybuild_cli("images", "--json").stdout)] == [
        "docker.io/library/busybox:latest"
    ]


def test_states_that_are_not_a_bad_command_line_exit_1(pybuild_cli: Any, tmp_path: Path) -> None:
    assert_fails(pybuild_cli("inspect", "localhost/nothing-here", check=False), 1, "is not in")
    assert_fails(pybuild_cli("logout", "127.0.0.1:9", check=False), 1, "not logged in to 127.0.0.1:9")


# --- image references -----------------------------------------------------------------------------
def test_an_id_prefix_names_one_image_across_manifests(
    pybuild_cli: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    """A build and its copy through an OCI layout (layers gzipped on the way, as a push does): two
    manifests, one config, so one image for an ID prefix."""
    pybuild_cli("copy", f"oci:{busybox_layout}", "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    image_id = pybuild_cli("build", "-q", "-t", "localhost/built", str(ctx)).stdout.strip()
    out = tmp_path / "out"
    pybuild_cli("copy", "localhost/built", f"oci:{out}:v1")
    pybuild_cli("copy", f"oci:{out}:v1", "localhost/pulled")
    built, pulled = (
        json.loads(pybuild_cli("inspect", "--json", n).stdout)
        for n in ("localhost/built", "localhost/pulled")
    )
    assert built["digest"] != pulled["digest"] and built["id"] == pulled["id"] == image_id
    found = json.loads(pybuild_cli("inspect", "--json", image_id[:12]).stdout)
    assert found["id"] == image_id
    assert pybuild_cli("run", image_id[:8], "--", "cat", "/built").stdout == "built\n"
    validate_layout(out, "v1")


def colliding_configs(diff_id: str, n: int = 6) -> tuple[ImageConfig, ImageConfig]:
    """Two image configs over one layer whose digests share the first ``n`` hex digits (a birthday
    search: about 16**(n/2) tries)."""
    seen: dict[str, ImageConfig] = {}
    i = 0
    while True:
        i += 1
        doc = json.loads(make_config([], {"Labels": {"n": str(i)}}).to_bytes())
        doc["rootfs"]["diff_ids"] = [diff_id]
        doc["history"] = [{"created": doc["created"], "created_by": f"try {i}"}]
        config = ImageConfig.new(doc)
        prefix = hashlib.sha256(config.to_bytes()).hexdigest()[:n]
        if prefix in seen:
            return seen[prefix], config
        seen[prefix] = config


def test_only_different_images_are_ambiguous(pybuild_cli: Any, busybox_rootfs: Path, tmp_path: Path) -> None:
    store = Layout.create(tmp_path / "store")
    layer, diff_id = put_layer(store, tar_tree(busybox_rootfs))
    first, second = colliding_configs(str(diff_id))
    with store.writing():
        for name, config in (("localhost/first:latest", first), ("localhost/second:latest", second)):
            store.set_tag(name, commit_image(store, config, [layer]))
    ids = [
        json.loads(pybuild_cli("inspect", "--json", f"localhost/{n}").stdout)["id"]
        for n in ("first", "second")
    ]
    assert ids[0][:6] == ids[1][:6] and ids[0] != ids[1]
    proc = pybuild_cli("inspect", ids[0][:6], check=False)
    line = assert_fails(proc, 1, f"image ID prefix {ids[0][:6]!r} is ambiguous")
    assert f"{ids[0][:12]} (localhost/first:latest)" in line
    assert f"{ids[1][:12]} (localhost/second:latest)" in line
    # more of the ID names one
    assert json.loads(pybuild_cli("inspect", "--json", ids[1][:20]).stdout)["id"] == ids[1]
    assert check_layout(store) == []
    validate_layout(store.root, "localhost/first:latest")


def test_untagged_images_are_listed_as_none(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\nRUN echo untagged > /u\n")
    image_id = pybuild_cli("build", "-q", str(ctx)).stdout.strip()
    listed = json.loads(pybuild_cli("images", "--json").stdout)
    assert [(i["name"], i["id"]) for i in listed if i["id"] == image_id] == [(None, image_id)]
    rows = [line.split() for line in pybuild_cli("images").stdout.splitlines()]
    assert rows[0][:3] == ["REPOSITORY", "TAG", "IMAGE"]
    assert [r[:3] for r in rows if r[2] == image_id[:12]] == [["<none>", "<none>", image_id[:12]]]
    # the same image, named: listed once, under its name
    pybuild_cli("build", "-q", "-t", "localhost/named", str(ctx))
    rows = [line.split() for line in pybuild_cli("images").stdout.splitlines()]
    assert [r[:2] for r in rows if r[2] == image_id[:12]] == [["localhost/named", "latest"]]
    assert pybuild_cli("run", image_id[:12], "--", "cat", "/u").stdout == "untagged\n"
    pybuild_cli("rm", "localhost/named")
    assert json.loads(pybuild_cli("inspect", "--json", image_id[:12]).stdout)["name"] is None


HISTORY = """FROM busybox
ENV A=1
RUN echo one > /one
RUN head -c 5000 /dev/zero > /zeros && echo "a long command line, on past forty-five characters"
LABEL done=yes
"""


def test_history(pybuild_cli: Any, busybox_layout: Path, tmp_path: Path) -> None:
    pybuild_cli("copy", f"oci:{busybox_layout}", "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(HISTORY)
    pybuild_cli("build", "-q", "-t", "localhost/hist", str(ctx))
    info = json.loads(pybuild_cli("inspect", "--json", "localhost/hist").stdout)
    entries = json.loads(pybuild_cli("history", "--json", "localhost/hist").stdout)
    assert len(entries) == len(info["history"]) == 5  # the base's layer, then four steps
    assert [e["created_by"] for e in entries] == [h["created_by"] for h in reversed(info["history"])]
    assert entries[0]["id"] == info["id"] and all(e["id"] is None for e in entries[1:])
    sizes = {layer["digest"]: layer["size"] for layer in info["layers"]}
    for entry in entries:
        if entry["empty_layer"]:
            assert entry["size"] == 0 and entry["layer"] is None
        else:
            assert entry["size"] == sizes[entry["layer"]] > 0
    assert [e["layer"] for e in reversed(entries) if e["layer"]] == [
        layer["digest"] for layer in info["layers"]
    ]
    assert entries[1]["size"] > 5000  # the layer with /zeros
    text = pybuild_cli("history", "localhost/hist").stdout.splitlines()
    assert text[0].split() == ["ID", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert len(text) == 6
    assert text[1].startswith(info["id"][:12] + " ") and all(
        line.startswith("<missing>") for line in text[2:]
    )
    long_line = text[2]
    assert "..." in long_line and "forty-five characters" not in long_line
    full = pybuild_cli("history", "--no-trunc", "localhost/hist").stdout.splitlines()
    assert full[1].startswith(info["id"] + " ") and "forty-five characters" in full[2]
    assert_fails(pybuild_cli("history", "localhost/nothing", check=False), 1, "is not in")
