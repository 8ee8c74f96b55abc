"""The parse tree of a Containerfile, as BuildKit's parser makes it: nodes, heredocs, the file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WHITESPACE = re.compile(r"[\t\v\f\r ]+")


@dataclass
class Heredoc:
    """A here-document attached to RUN, COPY or ADD."""

    name: str  # the delimiter, quotes removed
    content: str  # the body as written (tabs not yet chomped), each line with its newline
    expand: bool  # False when the delimiter was quoted ('EOF' or "EOF"): no variable expansion
    chomp: bool  # <<-EOF: leading tabs are to be stripped from body lines (chomp_heredoc_content)
    file_descriptor: int = 0  # 3<<EOF gives 3


@dataclass
class Node:
    """One instruction."""

    value: str  # the instruction keyword, lower case: "from", "run", "copy", ...
    args: list[str]  # BuildKit's Next chain as strings; ENV/LABEL give key, value, separator triples
    flags: list[str]  # the leading --flags as written (quotes removed), e.g. ["--from=build"]
    json: bool  # exec (JSON array) form
    original: str  # the instruction's text, continuation lines joined as BuildKit does
    heredocs: list[Heredoc]
    start_line: int
    end_line: int
    children: list[Node] = field(default_factory=list)  # ONBUILD: the parsed trigger instruction


@dataclass
class Containerfile:
    nodes: list[Node]
    directives: dict[str, str]  # parser directives seen: syntax, escape, check
    escape: str  # "\\" or "`"
    warnings: list[str]
    filename: str


class ParseError(Exception):
    """A parse error before the line it belongs to is known."""
