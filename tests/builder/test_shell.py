"""BuildKit's shell lexer corpus: envVarTest (ProcessWord) and wordsTest (ProcessWords)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybuild.builder.shell import Lexer, expand, expand_words, go_quote
from pybuild.errors import ContainerfileError

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
SHELL = CORPUS / "buildkit-parser" / "frontend" / "dockerfile" / "shell"

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_var_cases() -> list[tuple[int, str, str]]:
    # A missing corpus fails collection: read_text raises.
    cases = []
    for number, line in enumerate((SHELL / "envVarTest").read_text(encoding="utf-8").split("\n"), 1):
        if line.startswith("#") or not line.strip():
            continue
        platform, source, expected = (part.strip() for part in line.strip().split("|"))
        if platform in ("A", "U"):
            cases.append((number, source, expected))
    return cases


def _words_cases() -> list[tuple[int, str, dict[str, str], list[str]]]:
    cases = []
    env: dict[str, str] = {}
    for number, line in enumerate((SHELL / "wordsTest").read_text(encoding="utf-8").split("\n"), 1):
        if line.startswith("#") or line == "":
            continue
        if line.startswith("ENV "):
            key, _, value = line[3:].lstrip(" ").partition("=")
            env[key] = value
            continue
        source, expected = line.split("|")
        cases.append((number, source.strip(), dict(env), expected.lstrip(" ").split(",")))
    return cases


ENV_VAR_CASES = _env_var_cases()
WORDS_CASES = _words_cases()


def test_corpus_is_complete() -> None:
    assert len(ENV_VAR_CASES) >= 200
    assert len(WORDS_CASES) == 24


@pytest.mark.parametrize(
    ("source", "expected"), [c[1:] for c in ENV_VAR_CASES], ids=[str(c[0]) for c in ENV_VAR_CASES]
)
def test_env_var(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ContainerfileError) as info:
            expand(source, ENV)
        assert info.value.file is None and info.value.line is None
    else:
        assert expand(source, ENV) == expected


@pytest.mark.parametrize(
    ("source", "env", "expected"), [c[1:] for c in WORDS_CASES], ids=[str(c[0]) for c in WORDS_CASES]
)
def test_words(source: str, env: dict[str, str], expected: list[str]) -> None:
    try:
        result = expand_words(source, env)
    except ContainerfileError:
        result = ["error"]
    assert result == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("${v#*/}", "b/c.tar.gz"),
        ("${v##*/}", "c.tar.gz"),
        ("${v%.*}", "a/b/c.tar"),
        ("${v%%.*}", "a/b/c"),
        ("${v/b/X}", "a/X/c.tar.gz"),
        ("${v//\\//-}", "a-b-c.tar.gz"),
        ("${v//?/x}", "xxxxxxxxxxxx"),
        ("${v/nomatch/x}", "a/b/c.tar.gz"),
        ("${u-default}", "default"),
        ("${e-default}", ""),
        ("${e:-default}", "default"),
        ("${u+alt}", ""),
        ("${e+alt}", "alt"),
        ("${e:+alt}", ""),
        ("${e?}", ""),
    ],
)
def test_modifiers(word: str, expected: str) -> None:
    assert expand(word, {"v": "a/b/c.tar.gz", "e": ""}) == expected


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${u?}", "u: is not allowed to be unset"),
        ("${u:?custom $v}", "u: custom x"),
        ("${e:?}", "e: is not allowed to be empty"),
        ("${v:#x}", "unsupported modifier (:#)"),
        ("${v/x", "missing '/'"),
        ("${v#\\x}", "invalid escape"),
    ],
)
def test_modifier_errors(word: str, message: str) -> None:
    with pytest.raises(ContainerfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expand(word, {"v": "x", "e": ""})


def test_backtick_escape() -> None:
    assert expand('a`$b `"c', {"b": "x"}, escape="`") == 'a$b "c'
    assert expand_words("a` b c", {}, escape="`") == ["a b", "c"]


def test_matches_and_skip_unset() -> None:
    result = Lexer().process("$a ${b:-x} $c", {"a": "1", "b": ""})
    assert result.result == "1 x "
    assert result.matched == {"a", "b"} and result.unmatched == {"c"}
    lexer = Lexer(skip_unset_env=True, raw_quotes=True)
    assert lexer.process_word("'$a' $b ${b} ${b:-x}", {}) == "'$a' $b ${b} ${b:-x}"


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\t\x00é\u00a0\U0001f600') == '"a\\"b\\\\c\\n\\t\\x00é\\u00a0😀"'
    assert go_quote(b"\xff".decode("utf-8", "surrogateescape")) == '"\\xff"'


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([*"ab${}:-+?#%/*\\'\" \t`<é", "${", "$a", "${a"]), max_size=40).map("".join))
def test_random_words_only_raise_containerfile_error(word: str) -> None:
    for escape in ("\\", "`"):
        try:
            expand(word, {"a": "a*b", "b": ""}, escape=escape)
            expand_words(word, {"a": "x y"}, escape=escape)
        except ContainerfileError:
            pass


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    try:
        expand("${a:-" * 3000 + "}" * 3000, {})
    except ContainerfileError:
        pass
