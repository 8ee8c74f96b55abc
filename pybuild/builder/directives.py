"""Parser directives (``# syntax=``, ``# escape=``, ``# check=``, only before anything else), the
escape token, line continuations and the line helpers of the Containerfile parser (BuildKit's rules)."""

from __future__ import annotations

import re

from .gostrings import is_go_space
from .parsetree import ParseError

DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
VALID_DIRECTIVES = ("syntax", "escape", "check")


class Directives:
    def __init__(self) -> None:
        self.escape = "\\"
        self.continuation = self._continuation_regex("\\")
        self.done = False
        self.seen: dict[str, str] = {}

    @staticmethod
    def _continuation_regex(token: str) -> re.Pattern[str]:
        e = re.escape(token)
        # the escape token at the end of the line, unless it is escaped itself
        return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")

    def set_escape(self, token: str) -> None:
        if token not in ("`", "\\"):
            raise ParseError(f"invalid escape token '{token}' does not match ` or \\")
        self.escape = token
        self.continuation = self._continuation_regex(token)

    def check(self, line: str) -> None:
        """Look for a parser directive; any other line ends the directive block."""
        if self.done:
            return
        if not line.startswith("#"):
            self.done = True
            return
        rest = line[1:]
        i = 0
        while i < len(rest) and is_go_space(rest[i]):
            i += 1
        match = DIRECTIVE.match(rest, i)
        if match is None:
            self.done = True
            return
        key = match.group(1).lower()
        if key not in VALID_DIRECTIVES:
            self.done = True
            return
        if key in self.seen:
            raise ParseError(f"only one {key} parser directive can be used")
        self.seen[key] = match.group(2)
        if key == "escape":
            self.set_escape(match.group(2))

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Remove a trailing continuation token; the flag is True when the instruction ends here."""
        match = self.continuation.search(line)
        if match is None:
            return line, True
        return line[: match.start()] + (match.group(1) or ""), False


def split_lines(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def lstrip(line: str) -> str:
    i = 0
    while i < len(line) and is_go_space(line[i]):
        i += 1
    return line[i:]


def is_comment(line: str) -> bool:
    return lstrip(line).startswith("#")
