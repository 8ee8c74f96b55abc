"""The one tree comparison (diff/trees.py): a tree against a record of itself (repack, the copy
fallback, a later in-place build) or against another tree (diff_trees), and its changeset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pybuild.diff import Change, Difference, TreeRecord, changes_of, compare, diff_trees
from pybuild.diff.trees import DirTree


def kinds(differences: list[Difference]) -> list[tuple[str, str]]:
    return [(d.path, d.kind) for d in differences]


@pytest.fixture
def tree_root(tmp_path: Path) -> Path:
    root = tmp_path / "t"
    for d in ("keep/sub", "gone/deep", "recreated", "dir2file", "x"):
        (root / d).mkdir(parents=True)
    for f, text in {
        "keep/a": "a",
        "keep/sub/b": "b",
        "gone/deep/c": "c",
        "recreated/old": "o",
        "dir2file/in": "i",
        "file2dir": "f",
        "same-size": "1234",
        "x/meta": "m",
    }.items():
        (root / f).write_text(text)
    os.symlink("keep/a", root / "link")
    return root


def test_a_tree_against_its_own_record(tree_root: Path) -> None:
    record = TreeRecord.of(tree_root)
    assert list(compare(record, tree_root)) == []
    r = tree_root
    shutil.rmtree(r / "gone")
    shutil.rmtree(r / "recreated")
    (r / "recreated").mkdir()
    (r / "recreated" / "fresh").write_text("f")
    shutil.rmtree(r / "dir2file")
    (r / "dir2file").write_text("now a file")
    os.unlink(r / "file2dir")
    (r / "file2dir").mkdir()
    (r / "file2dir" / "inner").write_text("i")
    st = os.stat(r / "same-size")
    (r / "same-size").write_text("abcd")  # same size, and the same mtime given back: the ctime tells
    os.utime(r / "same-size", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(r / "x" / "meta", 0o600)
    os.unlink(r / "link")
    os.symlink("keep/sub/b", r / "link")
    (r / "keep" / "new").write_text("n")
    got = kinds(list(compare(record, r)))
    assert sorted(got) == sorted(
        [
            ("dir2file", "replaced"),
            ("file2dir", "replaced"),
            ("file2dir/inner", "added"),
            ("keep", "changed"),  # its mtime moved (a new entry)
            ("keep/new", "added"),
            ("link", "changed"),
            ("recreated", "replaced"),  # not the recorded inode: new, whatever it holds
            ("recreated/fresh", "added"),
            ("same-size", "changed"),
            ("x/meta", "changed"),
            ("gone", "deleted"),  # the top of the deleted subtree only
        ]
    )
    differences = {d.path: d for d in compare(record, r)}
    assert differences["dir2file"].was_dir and not differences["file2dir"].was_dir
    assert differences["recreated"].was_dir
    changes = changes_of(compare(record, r))
    assert Change("dir2file", "delete") in changes and Change("dir2file", "add") in changes
    assert Change("recreated", "delete") in changes  # nothing of the old directory shows through
    assert Change("file2dir", "delete") not in changes and Change("gone", "delete") in changes
    assert not [c for c in changes if c.path.startswith("gone/") or c.path == "recreated/old"]


def test_metadata_that_moves_only_the_ctime(tree_root: Path) -> None:
    """A record without xattrs and without the old content (the bundle's) cannot tell what a moved
    ctime means: changed. One with xattrs (an in-place build's) can, except for a file's content."""
    plain = TreeRecord.of(tree_root)
    full = TreeRecord.of(tree_root, xattrs=True)
    os.setxattr(tree_root / "keep", "user.note", b"1")  # a directory: only its ctime moves
    for path in (tree_root / "x", tree_root / "x" / "meta"):
        os.chmod(path, os.stat(path).st_mode)  # the same mode: only the ctime moves
    everything = [("keep", "changed"), ("x", "changed"), ("x/meta", "changed")]
    assert kinds(list(compare(plain, tree_root))) == everything
    assert kinds(list(compare(full, tree_root))) == [("keep", "changed"), ("x/meta", "changed")]
    # with the old content still readable (the copy fallback's layer directories), a file tells too
    copy = tree_root.parent / "copy"
    shutil.copytree(tree_root, copy, symlinks=True)
    sourced = TreeRecord(full.entries, {rel: f"{copy}/{rel}" for rel in full.entries})
    assert kinds(list(compare(sourced, tree_root))) == [("keep", "changed")]


def test_record_json_is_the_bundle_format(tree_root: Path) -> None:
    record = TreeRecord.of(tree_root)
    doc = record.to_json()
    st = os.lstat(tree_root / "link")
    assert doc["link"] == [
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        "keep/a",
    ]
    assert doc["keep/a"][7] is None
    again = TreeRecord.from_json(doc)
    assert again.to_json() == doc and list(compare(again, tree_root)) == []
    assert list(again.paths()) == sorted(doc)  # parents first
    for bad in ({"a": [1, 2, 3]}, {"a": "x"}, {"a": ["1", 0, 0, 0, 0, 0, 0, None]}):
        with pytest.raises(ValueError, match="bad tree record entry for 'a'"):
            TreeRecord.from_json(bad)


def test_a_tree_against_another_tree(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for root in (lower, upper):
        (root / "d").mkdir(parents=True)
        (root / "d" / "same").write_text("same")
        (root / "content").write_text("abcd")
        os.utime(root / "d" / "same", (1_700_000_000, 1_700_000_000))
        os.utime(root / "content", (1_700_000_000, 1_700_000_000))
        os.utime(root / "d", (1_700_000_000, 1_700_000_000))
    (lower / "gone").write_text("g")
    (upper / "content").write_text("wxyz")  # same size and mtime, other bytes
    os.utime(upper / "content", (1_700_000_000, 1_700_000_000))
    os.utime(upper / "d" / "same", ns=(0, 1_700_000_000_500_000_000))  # the same second
    assert kinds(list(compare(DirTree(lower), upper))) == [
        ("content", "changed"),
        ("d/same", "changed"),
        ("gone", "deleted"),
    ]
    assert diff_trees(lower, upper) == [Change("content", "add"), Change("gone", "delete")]
    # nothing to tell apart: no difference, whether the files are the same inode or equal copies
    os.unlink(upper / "content")
    os.link(lower / "content", upper / "content")
    assert diff_trees(lower, upper) == [Change("gone", "delete")]
    # a symlink in the lower tree where the upper has a directory: never followed, everything added
    shutil.rmtree(lower / "d")
    os.symlink(str(upper / "d"), lower / "d")
    assert diff_trees(lower, upper) == [Change("d", "add"), Change("d/same", "add"), Change("gone", "delete")]
