"""Heredocs (``<<EOF``, ``<<-EOF``, quoted delimiters) for RUN, COPY and ADD, as BuildKit's parser
finds them in an instruction's line; the parser reads their bodies."""

from __future__ import annotations

import re

from ..errors import ContainerfileError
from .parsetree import Heredoc, Node, ParseError
from .shell import Lexer

HEREDOC = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")
LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
HEREDOC_INSTRUCTIONS = ("add", "copy", "run")


def chomp_heredoc_content(content: str) -> str:
    """Strip leading tabs from every line, as ``<<-EOF`` asks."""
    return LEADING_TABS.sub("", content)


def can_contain_heredoc(node: Node) -> bool:
    if node.value == "onbuild" and node.children:
        node = node.children[0]
    return node.value in HEREDOC_INSTRUCTIONS and not node.json


def heredoc_from_word(word: str) -> Heredoc | None:
    match = HEREDOC.match(word)
    if match is None:
        return None
    digits, dash, rest = match.groups()
    if not rest:
        return None
    fd = int(digits) if digits else 0
    if fd >= 1 << 64:
        fd = (1 << 64) - 1
    try:
        words = Lexer("\\", skip_unset_env=True).process_words(rest, {})
    except ContainerfileError as exc:
        raise ParseError(exc.reason) from None
    if len(words) != 1:
        return None
    try:
        raw_words = Lexer("\\", raw_quotes=True, skip_unset_env=True).process_words(rest, {})
    except ContainerfileError as exc:
        raise ParseError(exc.reason) from None
    if len(raw_words) != len(words):
        raise ParseError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw_words[0].count("'") + raw_words[0].count('"')
    return Heredoc(name=name, content="", expand=quotes == raw_quotes, chomp=dash == "-", file_descriptor=fd)


def heredocs_from_line(line: str) -> list[Heredoc]:
    lexer = Lexer("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lexer.process_words(line, {})
    except ContainerfileError:
        return []  # BuildKit ignores lexing errors here: no heredocs then
    docs: list[Heredoc] = []
    for word in words:
        doc = heredoc_from_word(word)
        if doc is not None:
            docs.append(doc)
    return docs
