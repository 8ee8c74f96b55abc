"""scan_upperdir against a real overlay mount; the applier's overlay output format."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pybuild.diff import Change, apply_layer, scan_upperdir, write_layer, write_tree
from pybuild.errors import LayerError
from tests.fixtures.trees import tree, tree_differences


@pytest.fixture
def overlay(tmp_path: Path, busybox_rootfs: Path) -> Any:
    if os.geteuid() != 0:
        pytest.fail("this test mounts overlay directly and runs as root (CI does)")
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    shutil.copytree(busybox_rootfs, lower, symlinks=True)
    (lower / "data" / "keep").mkdir(parents=True)
    (lower / "data" / "keep" / "a").write_text("a\n")
    (lower / "data" / "gone").mkdir()
    (lower / "data" / "gone" / "b").write_text("b\n")
    (lower / "data" / "opaque").mkdir()
    (lower / "data" / "opaque" / "old").write_text("old\n")
    for d in (upper, work, merged):
        d.mkdir()
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}",
            str(merged),
        ],
        check=True,
    )
    try:
        yield lower, upper, merged
    finally:
        subprocess.run(["umount", str(merged)], check=False)


def test_upperdir_changeset_reproduces_the_merged_tree(overlay: Any, tmp_path: Path) -> None:
    lower, upper, merged = overlay
    (merged / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")  # modified (copy-up)
    (merged / "etc" / "new.conf").write_text("new\n")
    os.unlink(merged / "bin" / "ls")  # whiteout
    shutil.rmtree(merged / "data" / "gone")  # whiteout of a directory
    shutil.rmtree(merged / "data" / "opaque")
    (merged / "data" / "opaque").mkdir()  # recreated: opaque
    (merged / "data" / "opaque" / "fresh").write_text("fresh\n")
    os.chmod(merged / "tmp", 0o1770)
    os.chown(merged / "etc" / "new.conf", 123, 456)
    os.rename(merged / "data" / "keep" / "a", merged / "data" / "keep" / "renamed")
    want = tree(merged, mtimes=True)
    subprocess.run(["umount", str(merged)], check=True)
    changes = scan_upperdir(upper, [lower])
    kinds = {(c.path, c.kind) for c in changes}
    assert ("bin/ls", "delete") in kinds and ("data/gone", "delete") in kinds
    assert ("data/opaque", "opaque") in kinds
    assert ("bin", "add") in kinds  # its mtime changed with the whiteout
    assert ("usr", "add") not in kinds  # never touched
    out = io.BytesIO()
    write_layer(changes, upper, out, compression="gzip")
    result = tmp_path / "result"
    shutil.copytree(lower, result, symlinks=True)
    from pybuild.diff import open_layer

    apply_layer(open_layer(io.BytesIO(out.getvalue())), result)
    assert tree_differences(tree(result, mtimes=True), want) == []


def test_a_file_copied_up_without_a_change_is_not_in_the_changeset(overlay: Any) -> None:
    """Opening a lower file for writing copies it up (lckpwdf does it with /etc/.pwd.lock): with its
    metadata, xattrs and content unchanged it changes nothing, and is left out, as the copy and
    in-place modes (which compare trees) leave it out. Written with the same bytes and its mtime
    put back, it is still compared by content; a changed byte makes it a change."""
    lower, upper, merged = overlay
    os.close(os.open(merged / "etc" / "passwd", os.O_WRONLY))
    group = merged / "etc" / "group"
    st = os.stat(group)
    group.write_text(group.read_text().replace("root", "ROOT"))  # same size, other bytes
    os.utime(group, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (upper / "etc" / "passwd").is_file() and (upper / "etc" / "group").is_file()  # both copied up
    assert scan_upperdir(upper, [lower]) == [Change("etc/group", "add")]


def test_overlay_output_format(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("f")
    out = io.BytesIO()
    write_layer(
        [Change("d", "add"), Change("d", "opaque"), Change("d/f", "add"), Change("gone", "delete")],
        src,
        out,
        compression="none",
    )
    layer_dir = tmp_path / "layer"
    layer_dir.mkdir()
    apply_layer(io.BytesIO(out.getvalue()), layer_dir, overlay=True)
    st = os.lstat(layer_dir / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(layer_dir / "d", "user.overlay.opaque") == b"y"
    # and that directory stacks as an overlay lowerdir: "gone" hidden, "d" opaque
    lower2 = tmp_path / "below"
    (lower2 / "d").mkdir(parents=True)
    (lower2 / "d" / "hidden").write_text("h")
    (lower2 / "gone").write_text("g")
    merged = tmp_path / "m"
    merged.mkdir()
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={layer_dir}:{lower2},userxattr", str(merged)],
        check=True,
    )
    try:
        assert sorted(os.listdir(merged)) == ["d"]
        assert sorted(os.listdir(merged / "d")) == ["f"]
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_redirect_dir_is_refused(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/orig")
    with pytest.raises(LayerError, match="redirect_dir and metacopy are not supported"):
        scan_upperdir(upper, [])


def test_memory_does_not_grow_with_layer_size(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    with open(root / "blob", "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    tracemalloc.start()
    with open(os.devnull, "wb") as sink:
        stats = write_tree(root, sink, compression="zstd")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats.size > 200 << 20  # random data does not compress
    assert peak < 24 << 20, f"peak {peak >> 20} MiB for a 200 MiB layer"


# --- property test through a real overlay mount ----------------------------------------------------


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["write", "append", "delete", "mkdir", "rmtree", "chmod", "symlink", "replace_dir", "link"]
        ),
        st.sampled_from(["a", "b", "d", "d/x", "d/y", "e", "e/f", "e/f/g"]),
    ),
    max_size=10,
)


def _lower_tree(root: Path) -> None:
    (root / "d").mkdir(parents=True)
    (root / "d" / "x").write_text("x\n")
    (root / "e" / "f").mkdir(parents=True)
    (root / "e" / "f" / "g").write_text("g\n")
    (root / "a").write_text("a\n")
    os.symlink("a", root / "b")
    # old times, far from now: a directory whose mtime the applier moves shows at once, not only
    # when a second boundary falls between making the tree and applying the layer
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            os.utime(os.path.join(dirpath, entry), (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    os.utime(root, (1_600_000_000, 1_600_000_000))


def _apply_op(merged: Path, op: str, name: str) -> None:
    path = merged / name
    try:
        if op == "write":
            path.write_text(f"new {name}\n")
        elif op == "append":
            with open(path, "a") as f:
                f.write("more\n")
        elif op == "delete":
            os.unlink(path)
        elif op == "mkdir":
            path.mkdir()
        elif op == "rmtree":
            shutil.rmtree(path)
        elif op == "chmod":
            os.chmod(path, 0o700)
        elif op == "symlink":
            os.symlink("target", path)
        elif op == "replace_dir":  # a directory removed and made again: opaque
            shutil.rmtree(path)
            path.mkdir()
            (path / "fresh").write_text("fresh\n")
        elif op == "link":
            os.link(merged / "a", path)
    except OSError:
        pass  # the operation does not fit the tree as it is now: skip it


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
@example(ops=[("link", "d/y")])  # an unchanged file copied up by a new hard link keeps its links
def test_upperdir_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str]]
) -> None:
    base = tmp_path_factory.mktemp("ovl")
    lower, upper, work, merged = (base / n for n in ("lower", "upper", "work", "merged"))
    _lower_tree(lower)
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        for op, name in ops:
            _apply_op(merged, op, name)
        want = tree(merged, mtimes=True)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    out = io.BytesIO()
    write_layer(scan_upperdir(upper, [lower]), upper, out, compression="none")
    result = base / "result"
    shutil.copytree(lower, result, symlinks=True)
    apply_layer(io.BytesIO(out.getvalue()), result)
    assert tree_differences(tree(result, mtimes=True), want) == []


def test_directory_changed_within_the_same_second_is_written(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "data" / "gone").mkdir(parents=True)
    (upper / "data").mkdir(parents=True)
    os.mknod(upper / "data" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlay's whiteout
    second = 1_700_000_000 * 1_000_000_000
    os.utime(lower / "data", ns=(second + 100, second + 100))
    os.utime(upper / "data", ns=(second + 900, second + 900))  # changed later in the same second
    changes = scan_upperdir(upper, [lower])
    assert Change("data", "add") in changes and Change("data/gone", "delete") in changes
    os.utime(upper / "data", ns=(second + 100, second + 100))  # exactly as copied up: unchanged
    assert Change("data", "add") not in scan_upperdir(upper, [lower])


# --- the format rules (diff/overlay.py) and the stacking of layer directories ----------------------


def _stack_layers(tmp_path: Path) -> list[Path]:
    """Three layer directories (top first) that use every rule."""
    from pybuild.diff.overlay import make_whiteout, mark_opaque

    top, mid, bottom, hidden = (tmp_path / n for n in ("top", "mid", "bottom", "hidden"))
    for d in (top, mid, bottom, hidden):
        d.mkdir()
    # a whiteout hides the name below it
    assert make_whiteout(str(top / "gone"))
    (mid / "gone").write_text("g")
    # an opaque directory hides the lower content of that directory only
    (top / "o").mkdir()
    mark_opaque(top / "o")
    (top / "o" / "new").write_text("n")
    (mid / "o" / "old").mkdir(parents=True)
    # anything but a directory hides what lies below it
    (top / "f").write_text("file")
    (mid / "f").mkdir()
    (mid / "f" / "x").write_text("x")
    # a layer without the name does not interrupt the stack; one with a non-directory ends it
    (top / "m").mkdir()
    (top / "m" / "a").write_text("a")
    (bottom / "m").mkdir()
    (bottom / "m" / "c").write_text("c")
    (mid / "s").mkdir()
    (mid / "s" / "a").write_text("a")
    (bottom / "s").write_text("not a directory")
    (bottom / "only-bottom").write_text("b")
    # overlay ignores an opaque marker on a layer's root: the layers below still show
    mark_opaque(bottom)
    (hidden / "never").write_text("h")
    return [top, mid, bottom, hidden]


EXPECTED_VIEW = ["f", "m", "m/a", "m/c", "never", "o", "o/new", "only-bottom", "s", "s/a"]


def test_lower_stack_view_and_entries(tmp_path: Path) -> None:
    from pybuild.diff.overlay import LowerStack

    layers = _stack_layers(tmp_path)
    stack = LowerStack(layers)
    view = stack.view()
    assert sorted(view) == EXPECTED_VIEW
    order = list(view)
    assert all(order.index(p.rpartition("/")[0]) < order.index(p) for p in order if "/" in p)  # parents first
    assert view["f"].source == str(layers[0] / "f") and stat.S_ISREG(view["f"].st.st_mode)
    assert view["m/c"].source == str(layers[2] / "m" / "c")
    for rel, entry in view.items():
        found = stack.entry(rel)
        assert found is not None and found.source == entry.source, rel
    for hidden in ("gone", "o/old", "f/x", "m/b", "nothing/at/all", "s/a/below"):
        assert stack.entry(hidden) is None, hidden
    assert stack.dir_layers("m") == [str(layers[0] / "m"), str(layers[2] / "m")]
    assert stack.dir_layers("f") is None


def test_lower_stack_agrees_with_kernel_overlay(tmp_path: Path) -> None:
    from pybuild.diff.overlay import LowerStack

    if os.geteuid() != 0:
        pytest.fail("this test mounts overlay directly and runs as root (CI does)")
    layers = _stack_layers(tmp_path)
    merged = tmp_path / "merged"
    merged.mkdir()
    lowers = ":".join(str(p) for p in layers)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowers},userxattr", str(merged)], check=True
    )
    try:
        seen = sorted(
            os.path.relpath(os.path.join(d, n), merged)
            for d, dirs, files in os.walk(merged)
            for n in dirs + files
        )
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert seen == EXPECTED_VIEW == sorted(LowerStack(layers).view())


def test_tar_spelling() -> None:
    from pybuild.diff.overlay import tar_marker, tar_whiteout

    assert tar_whiteout("x") == ".wh.x"
    assert tar_marker(".wh.x") == ("whiteout", "x")
    assert tar_marker(".wh..wh..opq") == ("opaque", "")
    assert tar_marker("x.wh.") is None and tar_marker("plain") is None


def test_whiteout_and_opaque_forms(tmp_path: Path) -> None:
    from pybuild.diff.overlay import (
        is_opaque,
        is_whiteout,
        is_whiteout_entry,
        make_whiteout,
        mark_opaque,
        opaque_in,
    )

    assert make_whiteout(str(tmp_path / "w"))
    st = os.lstat(tmp_path / "w")
    assert is_whiteout(st) and stat.S_IMODE(st.st_mode) == 0 and is_whiteout_entry(st, {})
    (tmp_path / "f").write_text("")
    assert not is_whiteout(os.lstat(tmp_path / "f"))
    assert is_whiteout_entry(os.lstat(tmp_path / "f"), {"trusted.overlay.whiteout": b"y"})
    (tmp_path / "d").mkdir()
    assert not is_opaque(tmp_path / "d")
    mark_opaque(tmp_path / "d")
    assert is_opaque(tmp_path / "d") and os.getxattr(tmp_path / "d", "user.overlay.opaque") == b"y"
    assert opaque_in({"trusted.overlay.opaque": b"y"}) and not opaque_in({"user.overlay.opaque": b"n"})
