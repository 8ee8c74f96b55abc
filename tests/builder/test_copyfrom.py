"""COPY --from in one pass (builder/copyfrom.py): what it copies from another stage or an image (files,
trees, globs, top-level symlinks, modes, times, hard links), its cache key (the content of what the
patterns match, so a change elsewhere in the source stage keeps the step cached), the match record
that lets a rebuild skip mounting the source at all, and its errors; as root and rootless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pybuild.layout import Layout, check_layout
from tests.fixtures.cli import Pybuild, assert_fails, build_as, context
from tests.fixtures.tools import validate_layout

pytestmark = pytest.mark.usefixtures("store_checked")

SOURCE = """FROM busybox AS src
ARG OTHER=1
RUN mkdir -p /data/tree/sub && echo one > /data/tree/a.txt && echo two > /data/tree/sub/b.txt \\
 && chmod 0750 /data/tree/sub && chmod 0604 /data/tree/a.txt && touch -d @1000000000 /data/tree/a.txt \\
 && ln /data/tree/a.txt /data/tree/hard && ln -s tree/a.txt /data/link && echo g1 > /data/g1.conf \\
 && echo g2 > /data/g2.conf
RUN echo $OTHER > /unrelated
FROM scratch
WORKDIR /data
COPY --from=src /data/tree /copied/tree
COPY --from=src /data/link /copied/
COPY --from=src /data/*.conf /copied/conf/
COPY --from=0 tree/sub /copied/relative
"""


def copy_steps(stdout: str) -> list[str]:
    """The COPY --from STEP lines followed by `--> Using cache`."""
    lines = stdout.splitlines()
    return [
        lines[i - 1]
        for i, line in enumerate(lines)
        if line.startswith("--> Using cache") and i > 0 and "COPY --from" in lines[i - 1]
    ]


def check_copied(root: Path) -> None:
    tree = root / "copied" / "tree"
    assert (tree / "a.txt").read_text() == "one\n"
    assert (tree / "sub" / "b.txt").read_text() == "two\n"
    assert (tree / "sub").stat().st_mode & 0o7777 == 0o750
    assert (tree / "a.txt").stat().st_mode & 0o7777 == 0o604
    assert int((tree / "a.txt").stat().st_mtime) == 1000000000
    assert (tree / "hard").stat().st_ino == (tree / "a.txt").stat().st_ino  # one file, two names
    # a top-level symlink is followed: the file it names is copied under the link's name
    assert not (root / "copied" / "link").is_symlink()
    assert (root / "copied" / "link").read_text() == "one\n"
    assert sorted(p.name for p in (root / "copied" / "conf").iterdir()) == ["g1.conf", "g2.conf"]
    # a relative source is taken from the WORKDIR
    assert (root / "copied" / "relative" / "b.txt").read_text() == "two\n"
    assert not (root / "unrelated").exists() and not (root / "bin").exists()


def validate_store_image(pb: Pybuild, store: Path, ref: str, out: Path) -> None:
    pb("--store", str(store), "copy", ref, f"oci:{out}:latest")
    validate_layout(out, "latest")


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_copy_from_copies_and_caches_by_content(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool
) -> None:
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", SOURCE)
    first = build_as(pb, ctx, "localhost/copy-from", rootless, user_home)
    assert copy_steps(first.proc.stdout) == []
    bundle = tmp_path / "bundle"
    pb("--store", str(first.store), "unpack", "localhost/copy-from", str(bundle))
    check_copied(bundle / "rootfs")
    digest = json.loads(pb("--store", str(first.store), "inspect", "--json", "localhost/copy-from").stdout)

    # nothing changed: every COPY --from is a cache hit and the image is the same
    again = build_as(pb, ctx, "localhost/copy-from", rootless, user_home)
    assert len(copy_steps(again.proc.stdout)) == 4
    # the source stage changes, but not what the patterns match: the copies stay cached
    other = build_as(pb, ctx, "localhost/copy-from", rootless, user_home, "--build-arg", "OTHER=2")
    assert len(copy_steps(other.proc.stdout)) == 4
    info = json.loads(pb("--store", str(first.store), "inspect", "--json", "localhost/copy-from").stdout)
    assert info["diff_ids"] == digest["diff_ids"]
    validate_store_image(pb, first.store, "localhost/copy-from", tmp_path / "oci")
    assert check_layout(Layout.open(first.store)) == []


def test_copy_from_reruns_when_the_matched_content_changes(pb: Pybuild, tmp_path: Path) -> None:
    text = "FROM busybox AS src\nARG V=1\nRUN echo $V > /v\nFROM scratch\nCOPY --from=src /v /v\n"
    ctx = context(tmp_path / "ctx", text)
    pb.build(ctx, None, "localhost/from-v")
    changed = pb.build(ctx, None, "localhost/from-v", "--build-arg", "V=2")
    assert copy_steps(changed.stdout) == []
    assert (pb.rootfs("localhost/from-v") / "v").read_text() == "2\n"
    back = pb.build(ctx, None, "localhost/from-v", "--build-arg", "V=1")
    assert copy_steps(back.stdout) == ["STEP 5/5: COPY --from=src /v /v"]
    pb.validate_oci("localhost/from-v")


def test_copy_from_an_image_and_the_match_record(pb: Pybuild, tmp_path: Path) -> None:
    """COPY --from=IMAGE reads the image's layers; what the patterns matched there is recorded by the
    source's diff_ids, so a rebuild with --no-cache still copies the same, from the record."""
    ctx = context(tmp_path / "ctx", "FROM scratch\nCOPY --from=busybox /bin/sh /bin/echo /out/\n")
    pb.build(ctx, None, "localhost/from-image")
    root = pb.rootfs("localhost/from-image")
    assert sorted(p.name for p in (root / "out").iterdir()) == ["echo", "sh"]
    records = [json.loads(p.read_bytes()) for p in (pb.store / ".pybuild" / "build-cache").iterdir()]
    matched = [r["copy_from"]["matches"] for r in records if "copy_from" in r]
    assert [["bin/busybox", "bin/sh"], ["bin/busybox", "bin/echo"]] in matched
    pb.build(ctx, None, "localhost/from-image", "--no-cache")
    assert (pb.rootfs("localhost/from-image") / "out" / "sh").read_bytes() == (
        root / "out" / "sh"
    ).read_bytes()
    pb.validate_oci("localhost/from-image")


def test_copy_from_with_a_heredoc(pb: Pybuild, tmp_path: Path) -> None:
    text = "FROM busybox AS src\nRUN echo s > /s\nFROM scratch\nCOPY --from=src /s <<EOF /out/\nhere\nEOF\n"
    ctx = context(tmp_path / "ctx", text)
    pb.build(ctx, None, "localhost/from-heredoc")
    root = pb.rootfs("localhost/from-heredoc")
    assert (root / "out" / "s").read_text() == "s\n"
    assert (root / "out" / "EOF").read_text() == "here\n"
    pb.validate_oci("localhost/from-heredoc")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("COPY --from=src /nosuch /x", "COPY --from: /nosuch: no such file or directory"),
        ("COPY --from=src /dangling /x", "COPY --from: /dangling: dangling symbolic link"),
        ("COPY --from=src /no*match /x", "COPY --from: /no*match: no such file or directory"),
    ],
)
def test_copy_from_errors(pb: Pybuild, tmp_path: Path, line: str, fragment: str) -> None:
    text = f"FROM busybox AS src\nRUN ln -s /gone /dangling\nFROM scratch\n{line}\n"
    ctx = context(tmp_path / "ctx", text)
    before = pb("images", "--json").stdout
    proc = pb.build(ctx, None, "localhost/from-error", check=False)
    assert_fails(proc, 1, fragment)
    assert pb("images", "--json").stdout == before  # nothing tagged


def test_copy_from_leaves_no_workspace(pb: Pybuild, tmp_path: Path) -> None:
    """The view of the source and the step's root are gone after the step: no workspace is left."""
    text = "FROM busybox AS src\nRUN echo x > /x\nFROM scratch\nCOPY --from=src /x /x\n"
    pb.build(context(tmp_path / "ctx", text), None, "localhost/from-clean")
    workspaces = Layout.open(pb.store).private.workspaces
    assert sorted(p.name for p in workspaces.iterdir()) == []
    assert (pb.rootfs("localhost/from-clean") / "x").read_text() == "x\n"
    pb.validate_oci("localhost/from-clean")


@pytest.mark.parametrize("mode", ["fuse", "copy"])
@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_copy_from_in_every_overlay_mode(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool, mode: str
) -> None:
    """The source's view and the step's root in fuse-overlayfs or a copied rootfs give the same copy."""
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", SOURCE)
    env = {"PYBUILD_RUN_MODE": mode}
    built = build_as(pb, ctx, f"localhost/copy-from-{mode}", rootless, user_home, "--no-cache", env=env)
    bundle = tmp_path / "bundle"
    pb("--store", str(built.store), "unpack", f"localhost/copy-from-{mode}", str(bundle))
    check_copied(bundle / "rootfs")
    validate_store_image(pb, built.store, f"localhost/copy-from-{mode}", tmp_path / "oci")
