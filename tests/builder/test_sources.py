"""COPY/ADD source matching and the digest of what the sources copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybuild.builder.ignore import IgnoreRules
from pybuild.builder.sources import match_all_sources, match_sources, source_rel, sources_digest
from pybuild.errors import ContainerfileError
from tests.fixtures.trees import make_tree

NONE = IgnoreRules()


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path / "ctx",
        ["test1.txt", "test2.txt", "test10.txt", "a", "b", "c", "notes.md", "d/x.txt", "d/e/y.txt", "empty/"],
    )


# --- matching --------------------------------------------------------------------------------


def test_plain_paths(ctx: Path) -> None:
    assert match_sources(ctx, "test1.txt", NONE) == ["test1.txt"]
    assert match_sources(ctx, "d/e", NONE) == ["d/e"]
    assert match_sources(ctx, "d/e/", NONE) == ["d/e"]
    assert match_sources(ctx, "./d//x.txt", NONE) == ["d/x.txt"]


def test_context_itself_is_empty_string(ctx: Path) -> None:
    assert match_sources(ctx, ".", NONE) == [""]
    assert match_sources(ctx, "./", NONE) == [""]
    assert match_sources(ctx, "/", NONE) == [""]
    # even when the ignore file leaves out everything
    assert match_sources(ctx, ".", IgnoreRules(("*",))) == [""]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*.txt", ["test1.txt", "test10.txt", "test2.txt"]),
        ("test?.txt", ["test1.txt", "test2.txt"]),
        ("[ab]", ["a", "b"]),
        ("[^ab]", ["c", "d"]),
        ("[a-c]", ["a", "b", "c"]),
        ("*/x.txt", ["d/x.txt"]),
        ("d/*", ["d/e", "d/x.txt"]),
        ("d/*/y.txt", ["d/e/y.txt"]),
        ("*", ["a", "b", "c", "d", "empty", "notes.md", "test1.txt", "test10.txt", "test2.txt"]),
    ],
)
def test_globs(ctx: Path, pattern: str, expected: list[str]) -> None:
    assert match_sources(ctx, pattern, NONE) == expected


def test_glob_matches_dotfiles(ctx: Path) -> None:
    (ctx / ".hidden").write_text("h")
    assert ".hidden" in match_sources(ctx, "*", NONE)


@pytest.mark.parametrize("pattern", ["../test1.txt", "/test1.txt", "../../../test1.txt", "d/../../test1.txt"])
def test_sources_are_confined_to_the_context(tmp_path: Path, ctx: Path, pattern: str) -> None:
    (tmp_path / "test1.txt").write_text("outside")
    assert match_sources(ctx, pattern, NONE) == ["test1.txt"]


def test_outside_file_is_not_reachable(tmp_path: Path, ctx: Path) -> None:
    (tmp_path / "secret").write_text("outside")
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        match_sources(ctx, "../secret", NONE)
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        match_sources(ctx, str(tmp_path / "secret"), NONE)


def test_symlinked_parent_resolves_inside_context(tmp_path: Path, ctx: Path) -> None:
    (ctx / "up").symlink_to("../..")  # points out of the context: clamped at its root
    (tmp_path / "secret").write_text("outside")
    assert match_sources(ctx, "up/test1.txt", NONE) == ["test1.txt"]
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        match_sources(ctx, "up/secret", NONE)
    (ctx / "dl").symlink_to("d")
    assert match_sources(ctx, "dl/x.txt", NONE) == ["d/x.txt"]
    assert match_sources(ctx, "dl/*.txt", NONE) == ["d/x.txt"]


def test_source_rel() -> None:
    assert source_rel(".") == ""
    assert source_rel("../x") == "x"
    assert source_rel("/x/") == "x"
    assert source_rel("a/./b/../c") == "a/c"


def test_missing_plain_path(ctx: Path) -> None:
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        match_sources(ctx, "nope.txt", NONE)
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        match_sources(ctx, "test1.txt/below", NONE)


def test_glob_matching_nothing(corpora: Path, tmp_path: Path) -> None:
    # bud.bats "bud with .dockerignore #3": Containerfile.bad has COPY *foo /testdir
    context = tmp_path / "copy-globs"
    shutil.copytree(corpora / "buildah-bud" / "copy-globs", context)
    rules = IgnoreRules.load(context, context / "Containerfile.bad")
    with pytest.raises(ContainerfileError, match="matched nothing") as info:
        match_sources(context, "*foo", rules)
    assert "*foo" in str(info.value)
    assert match_sources(context, "*.txt", rules) == ["test1.txt", "test2.txt"]
    # Containerfile.missing: COPY *foo *.txt /testdir succeeds
    assert match_all_sources(context, ["*foo", "*.txt"], rules) == [[], ["test1.txt", "test2.txt"]]
    with pytest.raises(ContainerfileError, match="matched nothing"):
        match_all_sources(context, ["*foo"], rules)
    with pytest.raises(ContainerfileError, match="matched nothing"):
        match_all_sources(context, ["*foo", "*bar"], rules)
    # a plain path must exist even next to a glob that matched
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        match_all_sources(context, ["*.txt", "missing"], rules)


def test_ignored_plain_path_is_not_found(corpora: Path, tmp_path: Path) -> None:
    # bud.bats "bud with .dockerignore #1": COPY subdir ./ fails
    context = tmp_path / "dockerignore"
    shutil.copytree(corpora / "buildah-bud" / "dockerignore", context)
    rules = IgnoreRules.load(context, context / "Dockerfile")
    with pytest.raises(ContainerfileError, match="no such file or directory") as info:
        match_sources(context, "subdir", rules)
    assert f"1 filtered out using {context / '.dockerignore'}" in str(info.value)
    assert match_sources(context, "test2.txt", rules) == ["test2.txt"]
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        match_sources(context, "test1.txt", rules)


def test_ignored_glob_matches_are_dropped(ctx: Path) -> None:
    rules = IgnoreRules(("test1*",), "ctx/.containerignore")
    assert match_sources(ctx, "test?.txt", rules) == ["test2.txt"]
    with pytest.raises(ContainerfileError, match=r"matched nothing") as info:
        match_sources(ctx, "test1*", rules)
    assert "2 filtered out using ctx/.containerignore" in str(info.value)


def test_excluded_directory_with_reincluded_child_is_kept(ctx: Path) -> None:
    rules = IgnoreRules(("d", "!d/e/y.txt"))
    assert match_sources(ctx, "d", rules) == ["d"]
    assert match_sources(ctx, "*", rules).count("d") == 1
    # an exception that re-includes nothing that exists leaves the directory out
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        match_sources(ctx, "d", IgnoreRules(("d", "!d/none")))


def test_copy_exclude(ctx: Path) -> None:
    assert match_sources(ctx, "*.txt", NONE, excludes=["test1*"]) == ["test2.txt"]
    assert match_sources(ctx, "*", NONE, excludes=["*.txt", "[abc]"]) == ["d", "empty", "notes.md"]
    with pytest.raises(ContainerfileError, match="--exclude"):
        match_sources(ctx, "notes.md", NONE, excludes=["*.md"])
    # an exception in --exclude re-includes only what --exclude left out
    assert match_sources(ctx, "*.txt", NONE, excludes=["*.txt", "!test2.txt"]) == ["test2.txt"]
    with pytest.raises(ContainerfileError, match="1 filtered out using the ignore patterns"):
        match_sources(ctx, "*.txt", IgnoreRules(("test2.txt",)), excludes=["*.txt", "!test2.txt"])


def test_bad_glob_is_containerfile_error(ctx: Path) -> None:
    for bad in ["[", "test[", "a\\", "[]x"]:
        with pytest.raises(ContainerfileError):
            match_sources(ctx, bad, NONE)


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(max_size=30), exclude=st.text(max_size=10))
def test_any_source_pattern_only_raises_containerfile_error(
    tmp_path_factory: pytest.TempPathFactory, pattern: str, exclude: str
) -> None:
    context = _shared_context(tmp_path_factory)
    try:
        match_sources(context, pattern, NONE, excludes=[exclude])
    except ContainerfileError:
        pass


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(alphabet="ab/.*?[]^-\\!", max_size=16))
def test_glob_alphabet_patterns_only_raise_containerfile_error(
    tmp_path_factory: pytest.TempPathFactory, pattern: str
) -> None:
    context = _shared_context(tmp_path_factory)
    try:
        rels = match_sources(context, pattern, NONE, excludes=[pattern])
    except ContainerfileError:
        return
    sources_digest(context, rels, NONE, excludes=[pattern])


_CONTEXTS: dict[int, Path] = {}


def _shared_context(factory: pytest.TempPathFactory) -> Path:
    key = id(factory)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = make_tree(factory.mktemp("fuzzctx"), ["a", "b/a", "b/c/d", "*", "[x]", "a.b"])
    return _CONTEXTS[key]


# --- digest ----------------------------------------------------------------------------------


def digest_of(ctx: Path, sources: list[str], rules: IgnoreRules = NONE, **kw: list[str]) -> str:
    return sources_digest(ctx, sources, rules, **kw)


def test_digest_is_stable(ctx: Path) -> None:
    first = digest_of(ctx, [""])
    assert first.startswith("sha256:") and len(first) == 7 + 64
    assert digest_of(ctx, [""]) == first


def test_digest_follows_content(ctx: Path) -> None:
    before = digest_of(ctx, ["d"])
    (ctx / "d" / "e" / "y.txt").write_text("changed")
    assert digest_of(ctx, ["d"]) != before


def test_digest_follows_content_of_same_size(ctx: Path) -> None:
    (ctx / "a").write_text("1234")
    before = digest_of(ctx, ["a"])
    (ctx / "a").write_text("4321")
    assert digest_of(ctx, ["a"]) != before


def test_digest_follows_mode(ctx: Path) -> None:
    before = digest_of(ctx, [""])
    os.chmod(ctx / "a", 0o755)
    after_x = digest_of(ctx, [""])
    assert after_x != before
    os.chmod(ctx / "a", 0o4755)
    assert digest_of(ctx, [""]) != after_x
    os.chmod(ctx / "d", 0o700)
    assert digest_of(ctx, [""]) != after_x


def test_digest_follows_added_and_removed_files(ctx: Path) -> None:
    before = digest_of(ctx, ["d"])
    (ctx / "d" / "new").write_text("")
    added = digest_of(ctx, ["d"])
    assert added != before
    (ctx / "d" / "new").unlink()
    assert digest_of(ctx, ["d"]) == before
    (ctx / "d" / "x.txt").unlink()
    assert digest_of(ctx, ["d"]) != before
    (ctx / "d" / "newdir").mkdir()


def test_digest_follows_empty_directory_and_symlink_target(ctx: Path) -> None:
    before = digest_of(ctx, [""])
    (ctx / "empty" / "sub").mkdir()
    with_dir = digest_of(ctx, [""])
    assert with_dir != before
    (ctx / "link").symlink_to("a")
    with_link = digest_of(ctx, [""])
    assert with_link != with_dir
    (ctx / "link").unlink()
    (ctx / "link").symlink_to("b")
    assert digest_of(ctx, [""]) != with_link


def test_digest_ignores_mtime_and_atime(ctx: Path) -> None:
    before = digest_of(ctx, [""])
    os.utime(ctx / "a", (1, 1))
    os.utime(ctx / "d" / "e", (12345, 12345))
    assert digest_of(ctx, [""]) == before


def test_digest_honours_ignore_rules_and_excludes(ctx: Path) -> None:
    rules = IgnoreRules(("*.md",))
    before = digest_of(ctx, [""], rules)
    (ctx / "notes.md").write_text("edited, but ignored")
    assert digest_of(ctx, [""], rules) == before
    before_ex = digest_of(ctx, ["d"], excludes=["**/y.txt"])
    (ctx / "d" / "e" / "y.txt").write_text("edited, but excluded")
    assert digest_of(ctx, ["d"], excludes=["**/y.txt"]) == before_ex
    assert digest_of(ctx, ["d"]) != before_ex


def test_digest_depends_on_which_sources(ctx: Path) -> None:
    assert digest_of(ctx, ["a"]) != digest_of(ctx, ["b"])
    assert digest_of(ctx, ["a", "b"]) != digest_of(ctx, ["a"])


def test_digest_of_missing_source_is_containerfile_error(ctx: Path) -> None:
    with pytest.raises(ContainerfileError, match="no such file or directory"):
        digest_of(ctx, ["gone"])


def test_digest_of_unreadable_file_is_containerfile_error(user_home: Path) -> None:
    # root reads everything: the unreadable file is only unreadable to an unprivileged user
    import shutil
    import sys

    from tests.fixtures.rootless import TEST_USER, as_test_user

    ctx = user_home / "ctx"
    ctx.mkdir()
    (ctx / "a").write_text("secret")
    shutil.chown(ctx, TEST_USER)
    os.chmod(ctx / "a", 0)
    code = (
        "import sys; from pathlib import Path\n"
        "from pybuild.builder.ignore import IgnoreRules\n"
        "from pybuild.builder.sources import sources_digest\n"
        "from pybuild.errors import ContainerfileError\n"
        "try:\n"
        f"    sources_digest(Path({str(ctx)!r}), ['a'], IgnoreRules())\n"
        "except ContainerfileError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    proc = as_test_user(
        [sys.executable, "-c", code], user_home, {"PYTHONPATH": str(Path(__file__).parents[2])}
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == 'reading "a" in the build context: Permission denied'
    assert "Traceback" not in proc.stderr


def test_digest_streams_large_file(ctx: Path) -> None:
    big = ctx / "big"
    with big.open("wb") as f:
        f.write(b"\0" * (3 * (1 << 20) + 17))
    before = digest_of(ctx, ["big"])
    with big.open("r+b") as f:
        f.seek(2 * (1 << 20) + 5)
        f.write(b"\1")
    assert digest_of(ctx, ["big"]) != before


def test_digest_of_ten_thousand_small_files(tmp_path: Path) -> None:
    context = tmp_path / "many"
    for d in range(100):
        sub = context / f"d{d:03}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"f{i:03}").write_bytes(b"x%d" % i)
    before = sources_digest(context, [""], NONE)
    (context / "d050" / "f050").write_bytes(b"y")
    assert sources_digest(context, [""], NONE) != before
