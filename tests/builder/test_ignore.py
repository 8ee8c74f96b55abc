"""Ignore files: which file is read, pattern semantics (moby patternmatcher), walking the context."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybuild.builder.ignore import IgnoreRules, clean_path, walk_context
from pybuild.errors import ContainerfileError, UsageError
from tests.fixtures.trees import make_tree


def walked(root: Path, rules: IgnoreRules, start: str = "") -> list[str]:
    return [rel for rel, _ in walk_context(root, rules, start)]


def rules(*patterns: str) -> IgnoreRules:
    return IgnoreRules.parse("\n".join(patterns))


# --- the buildah corpus ----------------------------------------------------------------------


@pytest.fixture
def dockerignore_context(corpora: Path, tmp_path: Path) -> Path:
    src = corpora / "buildah-bud" / "dockerignore"
    dst = tmp_path / "ctx"
    shutil.copytree(src, dst)
    return dst


def test_buildah_dockerignore_succeed_keeps_only_test2(dockerignore_context: Path) -> None:
    # bud.bats "bud with .dockerignore #1": COPY ./ ./ leaves out test1.txt, sub1.txt, sub2.txt, subdir/
    loaded = IgnoreRules.load(dockerignore_context, dockerignore_context / "Dockerfile.succeed")
    assert loaded.source == str(dockerignore_context / ".dockerignore")
    assert loaded.patterns == ("*", "test*", "!test2*", "subdir", "!*/sub1*")
    assert walked(dockerignore_context, loaded) == ["test2.txt"]


def test_buildah_dockerignore_pattern_answers(dockerignore_context: Path) -> None:
    loaded = IgnoreRules.load(dockerignore_context)
    assert loaded.excluded("test1.txt")
    assert not loaded.excluded("test2.txt")
    assert loaded.excluded("subdir")
    assert loaded.excluded("subdir/sub2.txt")
    assert loaded.excluded("Dockerfile")  # like buildah, no special case for the Containerfile
    assert loaded.excluded(".dockerignore")
    # the exception matches the file on its own; the walk still prunes subdir (buildah)
    assert not loaded.excluded("subdir/sub1.txt")


def test_buildah_ignorefile_flag(dockerignore_context: Path, tmp_path: Path) -> None:
    # bud.bats "bud --ignorefile containerignore"
    moved = tmp_path / "containerignore"
    (dockerignore_context / ".dockerignore").rename(moved)
    assert IgnoreRules.load(dockerignore_context).patterns == ()
    loaded = IgnoreRules.load(dockerignore_context, ignorefile=moved)
    assert loaded.source == str(moved)
    assert walked(dockerignore_context, loaded) == ["test2.txt"]


# --- which file ------------------------------------------------------------------------------


def test_no_ignore_file_excludes_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a", "d/b"])
    loaded = IgnoreRules.load(tmp_path, tmp_path / "Containerfile")
    assert loaded.patterns == () and loaded.source is None
    assert walked(tmp_path, loaded) == ["a", "d", "d/b"]


def test_containerignore_preferred_over_dockerignore(tmp_path: Path) -> None:
    (tmp_path / ".containerignore").write_text("from-containerignore\n")
    (tmp_path / ".dockerignore").write_text("from-dockerignore\n")
    assert IgnoreRules.load(tmp_path).patterns == ("from-containerignore",)
    (tmp_path / ".containerignore").unlink()
    assert IgnoreRules.load(tmp_path).patterns == ("from-dockerignore",)


@pytest.mark.parametrize("suffix", [".containerignore", ".dockerignore"])
def test_per_containerfile_ignore_beats_context_files(tmp_path: Path, suffix: str) -> None:
    (tmp_path / ".containerignore").write_text("ctx-c\n")
    (tmp_path / ".dockerignore").write_text("ctx-d\n")
    (tmp_path / "Dockerfile.test").write_text("FROM scratch\n")
    (tmp_path / f"Dockerfile.test{suffix}").write_text("per-file\n")
    loaded = IgnoreRules.load(tmp_path, tmp_path / "Dockerfile.test")
    assert loaded.patterns == ("per-file",)
    assert loaded.source == str(tmp_path / f"Dockerfile.test{suffix}")
    # another Containerfile in the same context does not use it
    assert IgnoreRules.load(tmp_path, tmp_path / "Containerfile").patterns == ("ctx-c",)


def test_per_containerfile_ignore_outside_context(tmp_path: Path) -> None:
    ctx = make_tree(tmp_path / "ctx", ["a"])
    cf = tmp_path / "elsewhere" / "Containerfile"
    cf.parent.mkdir()
    cf.write_text("FROM scratch\n")
    (tmp_path / "elsewhere" / "Containerfile.containerignore").write_text("a\n")
    assert IgnoreRules.load(ctx, cf).patterns == ("a",)


def test_ignorefile_flag_beats_everything(tmp_path: Path) -> None:
    (tmp_path / ".containerignore").write_text("ctx\n")
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    (tmp_path / "Containerfile.containerignore").write_text("per-file\n")
    flag = tmp_path / "my.ignore"
    flag.write_text("flag\n")
    assert IgnoreRules.load(tmp_path, tmp_path / "Containerfile", flag).patterns == ("flag",)


def test_missing_ignorefile_flag_is_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ignore"
    with pytest.raises(UsageError, match=r"nope\.ignore"):
        IgnoreRules.load(tmp_path, ignorefile=missing)


def test_ignore_symlink_leaving_context_is_not_followed(tmp_path: Path) -> None:
    # bud.bats "bud with ignoresymlink on default file"
    (tmp_path / "private_file").write_text("hello\n")
    ctx = make_tree(tmp_path / "ctx", ["hello"])
    (ctx / ".dockerignore").symlink_to(tmp_path / "private_file")
    assert IgnoreRules.load(ctx).patterns == ()


def test_ignore_symlink_inside_context_is_followed(tmp_path: Path) -> None:
    make_tree(tmp_path, ["conf/ignore"])
    (tmp_path / "conf" / "ignore").write_text("x\n")
    (tmp_path / ".dockerignore").symlink_to("conf/ignore")
    assert IgnoreRules.load(tmp_path).patterns == ("x",)


# --- pattern syntax --------------------------------------------------------------------------


def test_comments_blank_lines_and_whitespace() -> None:
    text = "\ufeff# a comment\n\n   \n  spaced.txt  \n # not a comment\n!  keep.txt\n#another\n"
    parsed = IgnoreRules.parse(text)
    assert parsed.patterns == ("spaced.txt", "# not a comment", "!keep.txt")
    assert parsed.excluded("spaced.txt")
    assert not parsed.excluded("a comment")
    assert not parsed.excluded("#another")


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("/a", "a"),
        ("./a", "a"),
        ("a/", "a"),
        ("a//b/./c", "a/b/c"),
        ("a/../b", "b"),
        ("/", "/"),
        ("!/x", "!x"),
    ],
)
def test_patterns_are_cleaned(raw: str, cleaned: str) -> None:
    assert IgnoreRules.parse(raw).patterns == (cleaned,)


def test_clean_path() -> None:
    assert clean_path("") == "."
    assert clean_path("/../a") == "/a"
    assert clean_path("../a") == "../a"
    assert clean_path("a/b/../..") == "."


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "d/a.txt", False),  # * does not cross /
        ("*/a.txt", "d/a.txt", True),
        ("test?.txt", "test1.txt", True),
        ("test?.txt", "test10.txt", False),
        ("[ab].txt", "a.txt", True),
        ("[ab].txt", "c.txt", False),
        ("[^ab].txt", "c.txt", True),
        ("[^ab].txt", "a.txt", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
        ("a.txt", "aXtxt", False),  # '.' is literal
        ("**/*.go", "main.go", True),
        ("**/*.go", "a/b/c/main.go", True),
        ("**/*.go", "a/b/main.c", False),
        ("a/**/z", "a/z", True),
        ("a/**/z", "a/b/c/z", True),
        ("a/**/z", "b/z", False),
        ("a/**", "a/b/c", True),
        ("**", "anything/at/all", True),
        ("dir", "dir/deep/file", True),  # a directory excludes what is below it
        ("dir", "dirx", False),
        (".", "a", False),
        ("/", "a", False),
    ],
)
def test_pattern_matching(pattern: str, path: str, expected: bool) -> None:
    assert rules(pattern).excluded(path) is expected


def test_last_matching_pattern_wins() -> None:
    r = rules("*.txt", "!keep*.txt", "keep-not.txt")
    assert r.excluded("a.txt")
    assert not r.excluded("keep.txt")
    assert r.excluded("keep-not.txt")
    assert not r.excluded("other.md")


def test_context_root_is_never_excluded() -> None:
    assert not rules("*", "**", ".").excluded("")


@pytest.mark.parametrize("bad", ["[", "a[", "[]", "[a-]", "[-a]", "a\\", "!", "[^]", "x/[z"])
def test_malformed_patterns_are_containerfile_errors(bad: str) -> None:
    with pytest.raises(ContainerfileError):
        IgnoreRules.parse(bad, "ctx/.dockerignore")


def test_malformed_pattern_message_names_file(tmp_path: Path) -> None:
    (tmp_path / ".containerignore").write_text("ok\n[bad\n")
    with pytest.raises(ContainerfileError, match=r"\[bad.*\.containerignore"):
        IgnoreRules.load(tmp_path)


def test_digest_is_stable_and_follows_patterns() -> None:
    assert rules("a", "!b").digest() == rules("a", "!b").digest()
    assert rules("a", "!b").digest().startswith("sha256:")
    assert rules("a", "!b").digest() != rules("!b", "a").digest()
    assert rules("a").digest() != rules("a", "b").digest()
    assert rules("a b").digest() != rules("a", "b").digest()
    assert IgnoreRules.parse("# only a comment\n").digest() == IgnoreRules().digest()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(alphabet="ab/.*?[]^-\\!x", max_size=12))
def test_any_pattern_only_raises_containerfile_error(text: str, path: str) -> None:
    try:
        parsed = IgnoreRules.parse(text)
    except ContainerfileError:
        return
    parsed.excluded(path)
    parsed.digest()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab/.*?[]^-\\! \n#", max_size=30))
def test_any_pattern_from_glob_alphabet_only_raises_containerfile_error(text: str) -> None:
    try:
        IgnoreRules.parse(text).excluded("a/b")
    except ContainerfileError:
        pass


# --- walking ---------------------------------------------------------------------------------


def test_walk_is_sorted_with_parents_first(tmp_path: Path) -> None:
    make_tree(tmp_path, ["b", "a/z", "a/y/x", "c/"])
    assert walked(tmp_path, IgnoreRules()) == ["a", "a/y", "a/y/x", "a/z", "b", "c"]


def test_walk_below_start(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a/z", "a/y/x", "b"])
    assert walked(tmp_path, IgnoreRules(), "a") == ["a/y", "a/y/x", "a/z"]
    assert walked(tmp_path, IgnoreRules(), "b") == []
    assert walked(tmp_path, IgnoreRules(), "missing") == []


def test_walk_does_not_follow_symlinks(tmp_path: Path) -> None:
    make_tree(tmp_path, ["d/f"])
    (tmp_path / "link").symlink_to("d")
    out = dict(walk_context(tmp_path, IgnoreRules()))
    assert sorted(out) == ["d", "d/f", "link"]


def test_reinclude_file_inside_excluded_directory(tmp_path: Path) -> None:
    # bud.bats "bud copy with .dockerignore #1"
    make_tree(tmp_path, ["stuff/huge/usr/bin/file1", "stuff/huge/usr/bin/file2", "stuff/huge/usr/file3"])
    r = rules("stuff/huge/*", "!stuff/huge/usr/bin/*")
    files = [p for p, s in walk_context(tmp_path, r) if not (tmp_path / p).is_dir()]
    assert files == ["stuff/huge/usr/bin/file1", "stuff/huge/usr/bin/file2"]
    # the excluded parents are still yielded so the tree can be made
    assert walked(tmp_path, r) == [
        "stuff",
        "stuff/huge",
        "stuff/huge/usr",
        "stuff/huge/usr/bin",
        "stuff/huge/usr/bin/file1",
        "stuff/huge/usr/bin/file2",
    ]


def test_excluded_directory_without_exception_is_pruned(tmp_path: Path) -> None:
    # bud.bats "bud copy with .dockerignore #2"
    make_tree(tmp_path, ["stuff/huge/usr/bin/file1", "stuff/huge/usr/bin/file2"])
    assert walked(tmp_path, rules("stuff/huge/*")) == ["stuff", "stuff/huge"]


def test_excluded_directory_with_exception_but_nothing_included_is_not_yielded(tmp_path: Path) -> None:
    make_tree(tmp_path, ["d/a", "d/b", "e"])
    assert walked(tmp_path, rules("d", "!d/keep")) == ["e"]


def test_exclude_everything_but_one(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a", "b", "src/main.py", "src/skip.py"])
    assert walked(tmp_path, rules("*", "!src/main.py")) == ["src", "src/main.py"]


def test_doublestar_excludes_at_any_depth(tmp_path: Path) -> None:
    make_tree(tmp_path, ["x.pyc", "a/y.pyc", "a/b/z.pyc", "a/b/keep.py"])
    assert walked(tmp_path, rules("**/*.pyc")) == ["a", "a/b", "a/b/keep.py"]


def test_dockerignore_unmatched_pattern_keeps_everything(tmp_path: Path) -> None:
    # bud.bats "bud with .dockerignore - unmatched": dangling and circular links are kept as entries
    make_tree(tmp_path, ["Dockerfile", "subdir/sub1.txt", "subdir/subsubdir/subsub1.txt"])
    (tmp_path / ".dockerignore").write_text("unmatched\n")
    (tmp_path / "symlink").symlink_to("subdir")
    (tmp_path / "subdir" / "circular-link").symlink_to("circular-link")
    (tmp_path / "subdir" / "dangling-link").symlink_to("no-such-file")
    assert walked(tmp_path, IgnoreRules.load(tmp_path)) == [
        ".dockerignore",
        "Dockerfile",
        "subdir",
        "subdir/circular-link",
        "subdir/dangling-link",
        "subdir/sub1.txt",
        "subdir/subsubdir",
        "subdir/subsubdir/subsub1.txt",
        "symlink",
    ]
