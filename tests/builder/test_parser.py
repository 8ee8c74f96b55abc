"""The Containerfile parser against BuildKit's own parser corpus, plus heredocs and directives."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybuild.builder.parser import Containerfile, chomp_heredoc_content, dump, parse
from pybuild.errors import ContainerfileError

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
PARSER = CORPUS / "buildkit-parser" / "frontend" / "dockerfile" / "parser"


def _folders(name: str) -> list[Path]:
    # A missing corpus must fail the run, never skip it: listing a missing folder raises here.
    folders = sorted(p for p in (PARSER / name).iterdir() if p.is_dir())
    assert folders, f"no cases in {PARSER / name}"
    return folders


POSITIVE = _folders("testfiles")
NEGATIVE = _folders("testfiles-negative")


def test_corpus_is_complete() -> None:
    assert len(POSITIVE) == 33
    assert len(NEGATIVE) == 4


@pytest.mark.parametrize("folder", POSITIVE, ids=[p.name for p in POSITIVE])
def test_dump_matches_buildkit(folder: Path) -> None:
    cf = parse((folder / "Dockerfile").read_bytes(), filename="Dockerfile")
    assert dump(cf) == (folder / "result").read_text(encoding="utf-8")


@pytest.mark.parametrize("folder", NEGATIVE, ids=[p.name for p in NEGATIVE])
def test_rejected(folder: Path) -> None:
    with pytest.raises(ContainerfileError) as info:
        parse((folder / "Dockerfile").read_bytes(), filename="Dockerfile")
    assert info.value.file == "Dockerfile"
    assert isinstance(info.value.line, int) and info.value.line >= 1
    assert str(info.value).startswith(f"Dockerfile:{info.value.line}: ")


def test_line_numbers() -> None:
    cf = parse((PARSER / "testfile-line" / "Dockerfile").read_bytes())
    assert [(n.start_line, n.end_line) for n in cf.nodes] == [(5, 5), (11, 12), (17, 31)]
    assert cf.directives == {"escape": "\\"}
    assert len(cf.warnings) == 1  # the RUN has empty continuation lines


def _one(text: str) -> Containerfile:
    return parse(text)


# -- instructions ------------------------------------------------------------------------------


def test_node_fields() -> None:
    cf = parse('FROM alpine AS build\nCOPY --from=build --chown=1:1 ["a b", "/c"]\nRUN   echo hi\n')
    frm, copy, run = cf.nodes
    assert (frm.value, frm.args, frm.json) == ("from", ["alpine", "AS", "build"], False)
    assert copy.flags == ["--from=build", "--chown=1:1"]
    assert (copy.args, copy.json) == (["a b", "/c"], True)
    assert (run.args, run.original, run.start_line, run.end_line) == (["echo hi"], "RUN   echo hi", 3, 3)
    assert cf.escape == "\\" and cf.filename == "Containerfile"


def test_env_forms() -> None:
    cf = parse('FROM x\nENV a=1 b="2 3"\nENV legacy value with spaces\nLABEL k=v\nARG x y=1\n')
    assert cf.nodes[1].args == ["a", "1", "=", "b", '"2 3"', "="]
    assert cf.nodes[2].args == ["legacy", "value with spaces", ""]
    assert cf.nodes[3].args == ["k", "v", "="]
    assert cf.nodes[4].args == ["x", "y=1"]


def test_env_without_equals_in_later_word_is_an_error() -> None:
    with pytest.raises(ContainerfileError, match=r"^Containerfile:2: Syntax error"):
        parse("FROM x\nENV a=1 b\n")


def test_onbuild_and_healthcheck() -> None:
    cf = parse('FROM x\nONBUILD RUN ["echo", "hi"]\nHEALTHCHECK --interval=5s CMD curl -f http://x/\n')
    onbuild, health = cf.nodes[1], cf.nodes[2]
    assert onbuild.args == ['RUN ["echo", "hi"]']
    assert onbuild.children[0].value == "run" and onbuild.children[0].args == ["echo", "hi"]
    assert onbuild.children[0].json
    assert health.flags == ["--interval=5s"]
    assert health.args == ["CMD", "curl -f http://x/"]
    assert dump(cf).splitlines()[1:] == [
        '(onbuild (run "echo" "hi"))',
        '(healthcheck ["--interval=5s"] "CMD" "curl -f http://x/")',
    ]


def test_unknown_instruction_is_kept() -> None:
    cf = parse("FROM x\nRUNN foo\n")
    assert cf.nodes[1].value == "runn"
    assert dump(cf) == '(from "x")\n(runn "")\n'


def test_invalid_json_falls_back_to_shell_form() -> None:
    cf = parse("CMD ['a']\nCMD [\"a\"] x\nCMD [NaN]\nCMD [1e999]\n")
    assert [(n.args, n.json) for n in cf.nodes] == [
        (["['a']"], False),
        (['["a"] x'], False),
        (["[NaN]"], False),
        (["[1e999]"], False),
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "# syntax=x\n", "\ufeff  \n"])
def test_no_instructions(text: str) -> None:
    with pytest.raises(ContainerfileError, match="file with no instructions"):
        parse(text)


def test_lone_continuation_is_an_empty_instruction() -> None:
    # BuildKit keeps it as an instruction with an empty keyword; the builder rejects it later.
    cf = parse("  \\\n")
    assert [(n.value, n.args) for n in cf.nodes] == [("", [""])]


def test_bom_and_crlf() -> None:
    cf = parse(b"\xef\xbb\xbf# escape=`\r\nFROM x\r\nRUN a `\r\n  b\r\n")
    assert cf.escape == "`"
    assert [n.args for n in cf.nodes] == [["x"], ["a   b"]]


def test_comment_inside_continuation() -> None:
    cf = parse("RUN a \\\n# note\n  b\n")
    assert cf.nodes[0].args == ["a   b"]
    assert (cf.nodes[0].start_line, cf.nodes[0].end_line) == (1, 3)
    assert cf.warnings == []


# -- directives --------------------------------------------------------------------------------


def test_escape_backtick() -> None:
    cf = parse("# Escape = `\n# syntax=docker/dockerfile:1\nFROM x\nRUN dir c:\\ `\n  && echo\n")
    assert cf.escape == "`"
    assert cf.directives == {"escape": "`", "syntax": "docker/dockerfile:1"}
    assert cf.nodes[1].args == ["dir c:\\   && echo"]


def test_directives_only_at_the_top() -> None:
    cf = parse("FROM x\n# escape=`\nRUN a \\\n b\n")
    assert cf.escape == "\\" and cf.directives == {}
    assert cf.nodes[1].args == ["a  b"]


def test_check_directive() -> None:
    cf = parse("# check=skip=all\nFROM x\n")
    assert cf.directives == {"check": "skip=all"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("# escape=x\nFROM a\n", 1, "invalid escape token"),
        ("# escape=`\n# escape=`\nFROM a\n", 2, "only one escape parser directive"),
    ],
)
def test_bad_directives(text: str, line: int, message: str) -> None:
    with pytest.raises(ContainerfileError, match=message) as info:
        parse(text)
    assert info.value.line == line


# -- heredocs ----------------------------------------------------------------------------------


def test_heredoc_basic() -> None:
    cf = parse("FROM x\nRUN <<EOF\necho $HOME\necho two\nEOF\nRUN done\n")
    run = cf.nodes[1]
    assert len(run.heredocs) == 1
    doc = run.heredocs[0]
    assert (doc.name, doc.content, doc.expand, doc.chomp) == ("EOF", "echo $HOME\necho two\n", True, False)
    assert (run.start_line, run.end_line) == (2, 5)
    assert run.args == ["<<EOF"]
    assert cf.nodes[2].args == ["done"] and cf.nodes[2].start_line == 6


def test_heredoc_chomp() -> None:
    cf = parse("RUN <<-EOT\n\techo a\n\t\techo b\n\tEOT\n")
    doc = cf.nodes[0].heredocs[0]
    assert doc.chomp and doc.name == "EOT"
    assert doc.content == "\techo a\n\t\techo b\n"
    assert chomp_heredoc_content(doc.content) == "echo a\necho b\n"


@pytest.mark.parametrize("delimiter", ["'EOF'", '"EOF"', "E'O'F"])
def test_heredoc_quoted_delimiter(delimiter: str) -> None:
    cf = parse(f"RUN <<{delimiter}\necho $x\nEOF\n")
    doc = cf.nodes[0].heredocs[0]
    assert doc.name == "EOF" and not doc.expand and doc.content == "echo $x\n"


def test_two_heredocs_on_one_line() -> None:
    cf = parse("RUN <<A cat /dev/stdin 3<<B\nfirst\nA\nsecond\nB\nFROM y\n")
    run = cf.nodes[0]
    assert [(d.name, d.content, d.file_descriptor) for d in run.heredocs] == [
        ("A", "first\n", 0),
        ("B", "second\n", 3),
    ]
    assert run.end_line == 5 and cf.nodes[1].start_line == 6


def test_copy_heredoc() -> None:
    cf = parse('FROM x\nCOPY --chmod=755 <<"EOF" /run.sh\n#!/bin/sh\necho $1\nEOF\n')
    copy = cf.nodes[1]
    assert copy.flags == ["--chmod=755"]
    assert copy.args == ['<<"EOF"', "/run.sh"]
    doc = copy.heredocs[0]
    assert (doc.name, doc.content, doc.expand) == ("EOF", "#!/bin/sh\necho $1\n", False)


def test_heredoc_not_for_json_or_other_instructions() -> None:
    cf = parse('RUN ["cat", "<<EOF"]\nCMD <<EOF\nFROM x\n')
    assert [n.heredocs for n in cf.nodes] == [[], [], []]
    assert len(cf.nodes) == 3


def test_onbuild_heredoc() -> None:
    cf = parse("ONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert cf.nodes[0].heredocs[0].content == "echo hi\n"


def test_unterminated_heredoc() -> None:
    with pytest.raises(ContainerfileError, match="unterminated heredoc") as info:
        parse("FROM x\nRUN <<EOF\necho\n")
    assert info.value.line == 2


# -- robustness --------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    [
        *"RUNFROMCOPYENVLABELARGONBUILDHEALTHCHECK cmd <<-EOF'\"`\\$={}[],:#\t\r\n -_/x0123é\x00\u3000\x85",
        *["RUN ", "ONBUILD ", "ENV ", "COPY ", "<<EOF", "\nEOF\n", "# escape=`\n", "--from=", '["', "\\\n"],
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join))
def test_random_text_only_raises_containerfile_error(text: str) -> None:
    try:
        cf = parse(text)
    except ContainerfileError as exc:
        assert exc.file == "Containerfile" and exc.line is not None
        return
    dump(cf)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_containerfile_error(data: bytes) -> None:
    try:
        dump(parse(data))
    except ContainerfileError:
        pass


def test_deep_onbuild_nesting() -> None:
    text = "ONBUILD " * 5000 + "RUN x\n"
    try:
        parse(text)
    except ContainerfileError:
        pass
