"""The Containerfile parser: text -> a flat list of instruction nodes, as BuildKit's parser makes them.

The rules follow BuildKit's ``frontend/dockerfile/parser`` package so that a Containerfile means the
same thing to pybuild as to ``docker build``:

* parser directives (``# syntax=``, ``# escape=``, ``# check=``) only before anything else;
* line continuations with the escape character, comments and empty lines inside continuations;
* per-instruction argument parsing (JSON or shell form, ENV/LABEL pairs, HEALTHCHECK, ONBUILD...);
* heredocs (``<<EOF``, ``<<-EOF``, quoted delimiters) for RUN, COPY and ADD.

Unknown instructions are kept (BuildKit's parser keeps them too); the builder rejects them. No
variable is expanded here: that is :mod:`pybuild.builder.shell`'s job once the build knows the values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pybuild.builder.shell import Lexer, go_quote, go_trim_space, is_go_space
from pybuild.errors import ContainerfileError

__all__ = ["Containerfile", "Heredoc", "Node", "chomp_heredoc_content", "dump", "parse"]


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


class _ParseError(Exception):
    """A parse error before the line it belongs to is known."""


_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_HEREDOC = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_VALID_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC_INSTRUCTIONS = ("add", "copy", "run")


def chomp_heredoc_content(content: str) -> str:
    """Strip leading tabs from every line, as ``<<-EOF`` asks."""
    return _LEADING_TABS.sub("", content)


# -- directives and lines ----------------------------------------------------------------------


class _Directives:
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
            raise _ParseError(f"invalid escape token '{token}' does not match ` or \\")
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
        match = _DIRECTIVE.match(rest, i)
        if match is None:
            self.done = True
            return
        key = match.group(1).lower()
        if key not in _VALID_DIRECTIVES:
            self.done = True
            return
        if key in self.seen:
            raise _ParseError(f"only one {key} parser directive can be used")
        self.seen[key] = match.group(2)
        if key == "escape":
            self.set_escape(match.group(2))

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Remove a trailing continuation token; the flag is True when the instruction ends here."""
        match = self.continuation.search(line)
        if match is None:
            return line, True
        return line[: match.start()] + (match.group(1) or ""), False


def _split_lines(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _lstrip(line: str) -> str:
    i = 0
    while i < len(line) and is_go_space(line[i]):
        i += 1
    return line[i:]


def _is_comment(line: str) -> bool:
    return _lstrip(line).startswith("#")


# -- argument parsers --------------------------------------------------------------------------

_Parsed = tuple[list[str], bool, list[Node]]  # args, json form, children


def _parse_words(rest: str, escape: str) -> list[str]:
    """Split on white space, keeping quotes and escapes (they are removed later, by expansion)."""
    words: list[str] = []
    buf: list[str] = []
    in_word = False
    quote = ""
    blank_ok = False
    i = 0
    n = len(rest)
    while i < n:
        ch = rest[i]
        if not in_word and not quote:
            if is_go_space(ch):
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            if ch == escape and quote != "'" and ch != quote:
                if i + 1 == n:
                    i += 1
                    quote = ""
                    continue
                buf.append(ch)
                i += 1
                ch = rest[i]
            buf.append(ch)
            i += 1
            continue
        if is_go_space(ch):
            if blank_ok or buf:
                words.append("".join(buf))
            buf = []
            blank_ok = False
            in_word = False
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        if ch == escape:
            if i + 1 == n:
                i += 1
                continue
            buf.append(ch)
            i += 1
            ch = rest[i]
        buf.append(ch)
        i += 1
    if (in_word or quote) and (blank_ok or buf):
        words.append("".join(buf))
    return words


def _parse_name_val(rest: str, key: str, escape: str) -> _Parsed:
    words = _parse_words(rest, escape)
    if not words:
        return [], False, []
    if "=" not in words[0]:
        # the legacy form: KEY name value
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _ParseError(f"{key} must have two arguments")
        return [parts[0], parts[1], ""], False, []
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise _ParseError(
                f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value"
            )
        name, value = word.split("=", 1)
        args += [name, value, "="]
    return args, False, []


def _parse_env(rest: str, d: _Directives) -> _Parsed:
    return _parse_name_val(rest, "ENV", d.escape)


def _parse_label(rest: str, d: _Directives) -> _Parsed:
    return _parse_name_val(rest, "LABEL", d.escape)


def _parse_name_or_name_val(rest: str, d: _Directives) -> _Parsed:
    return _parse_words(rest, d.escape), False, []


def _parse_strings_whitespace_delimited(rest: str, d: _Directives) -> _Parsed:
    if rest == "":
        return [], False, []
    return _WHITESPACE.split(rest), False, []


def _parse_string(rest: str, d: _Directives) -> _Parsed:
    if rest == "":
        return [], False, []
    return [rest], False, []


class _NotJSON(Exception):
    pass


class _NotStringArray(Exception):
    pass


def _reject_constant(name: str) -> object:
    raise _NotJSON(name)


def _checked_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotJSON(text)  # Go's decoder rejects numbers out of float64 range
    return value


def _no_surrogates(text: str) -> str:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def _parse_json(rest: str) -> list[str]:
    rest = _lstrip(rest)
    if not rest.startswith("["):
        raise _NotJSON(rest)
    try:
        value = json.loads(rest, parse_constant=_reject_constant, parse_float=_checked_float)
    except (ValueError, RecursionError) as exc:
        raise _NotJSON(rest) from exc
    if not isinstance(value, list):
        raise _NotJSON(rest)
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise _NotStringArray()
        out.append(_no_surrogates(item))
    return out


_NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"


def _parse_maybe_json(rest: str, d: _Directives) -> _Parsed:
    if rest == "":
        return [], False, []
    try:
        return _parse_json(rest), True, []
    except _NotStringArray:
        raise _ParseError(_NOT_STRING_ARRAY) from None
    except _NotJSON:
        return [rest], False, []


def _parse_maybe_json_to_list(rest: str, d: _Directives) -> _Parsed:
    try:
        return _parse_json(rest), True, []
    except _NotStringArray:
        raise _ParseError(_NOT_STRING_ARRAY) from None
    except _NotJSON:
        return _parse_strings_whitespace_delimited(rest, d)


def _parse_health_config(rest: str, d: _Directives) -> _Parsed:
    sep = 0
    while sep < len(rest) and not is_go_space(rest[sep]):
        sep += 1
    nxt = sep
    while nxt < len(rest) and is_go_space(rest[nxt]):
        nxt += 1
    if sep == 0:
        return [], False, []
    args, is_json, _ = _parse_maybe_json(rest[nxt:], d)
    return [rest[:sep], *args], is_json, []


def _parse_sub_command(rest: str, d: _Directives) -> _Parsed:
    if rest == "":
        return [], False, []
    child = _node_from_line(rest, d)
    return [rest], False, [child]


def _parse_ignore(rest: str, d: _Directives) -> _Parsed:
    return [""], False, []


_DISPATCH: dict[str, Callable[[str, _Directives], _Parsed]] = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_val,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_strings_whitespace_delimited,
    "from": _parse_strings_whitespace_delimited,
    "healthcheck": _parse_health_config,
    "label": _parse_label,
    "maintainer": _parse_string,
    "onbuild": _parse_sub_command,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


# -- instructions ------------------------------------------------------------------------------


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Take the leading ``--flag`` words off ``line``; returns the rest and the flags."""
    flags: list[str] = []
    buf: list[str] = []
    in_word = False
    quote = ""
    blank_ok = False
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if not in_word:
            if is_go_space(ch):
                i += 1
                continue
            if ch != "-" or i + 1 == n or line[i + 1] != "-":
                return line[i:], flags
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
                i += 1
                continue
            if ch == escape:
                if i + 1 == n:
                    quote = ""
                    i += 1
                    continue
                i += 1
                ch = line[i]
            buf.append(ch)
            i += 1
            continue
        if is_go_space(ch):
            word = "".join(buf)
            in_word = False
            if word == "--":
                return line[i:], flags
            if blank_ok or word:
                flags.append(word)
            buf = []
            blank_ok = False
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
            i += 1
            continue
        if ch == escape:
            if i + 1 == n:
                i += 1
                continue
            i += 1
            ch = line[i]
        buf.append(ch)
        i += 1
    if in_word:
        word = "".join(buf)
        if word != "--" and (blank_ok or word):
            flags.append(word)
    return "", flags


def _node_from_line(line: str, d: _Directives) -> Node:
    parts = _WHITESPACE.split(go_trim_space(line), maxsplit=1)
    cmd = parts[0]
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, flags = _extract_flags(parts[1], d.escape)
        rest = go_trim_space(rest)
    keyword = cmd.lower()
    args, is_json, children = _DISPATCH.get(keyword, _parse_ignore)(rest, d)
    return Node(
        value=keyword,
        args=args,
        flags=flags,
        json=is_json,
        original=line,
        heredocs=[],
        start_line=0,
        end_line=0,
        children=children,
    )


def _can_contain_heredoc(node: Node) -> bool:
    if node.value == "onbuild" and node.children:
        node = node.children[0]
    return node.value in _HEREDOC_INSTRUCTIONS and not node.json


def _heredoc_from_word(word: str) -> Heredoc | None:
    match = _HEREDOC.match(word)
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
        raise _ParseError(exc.reason) from None
    if len(words) != 1:
        return None
    try:
        raw_words = Lexer("\\", raw_quotes=True, skip_unset_env=True).process_words(rest, {})
    except ContainerfileError as exc:
        raise _ParseError(exc.reason) from None
    if len(raw_words) != len(words):
        raise _ParseError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw_words[0].count("'") + raw_words[0].count('"')
    return Heredoc(name=name, content="", expand=quotes == raw_quotes, chomp=dash == "-", file_descriptor=fd)


def _heredocs_from_line(line: str) -> list[Heredoc]:
    lexer = Lexer("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lexer.process_words(line, {})
    except ContainerfileError:
        return []  # BuildKit ignores lexing errors here: no heredocs then
    docs: list[Heredoc] = []
    for word in words:
        doc = _heredoc_from_word(word)
        if doc is not None:
            docs.append(doc)
    return docs


# -- the parser --------------------------------------------------------------------------------


def parse(text: str | bytes, filename: str = "Containerfile") -> Containerfile:
    """Parse a Containerfile. Every problem raises :class:`ContainerfileError` naming the file and line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    d = _Directives()
    lines = _split_lines(text)
    nodes: list[Node] = []
    warnings: list[str] = []
    current = 0  # lines consumed so far: the 1-based number of the last line read
    i = 0

    def fail(message: str, line: int) -> ContainerfileError:
        return ContainerfileError(message, file=filename, line=max(line, 1))

    while i < len(lines):
        raw = lines[i]
        i += 1
        if current == 0 and raw.startswith("\ufeff"):
            raw = raw[1:]
        token = _lstrip(_trim_newline(raw))
        try:
            d.check(token)
        except _ParseError as exc:
            raise fail(str(exc), current + 1) from None
        if _is_comment(token):
            token = ""
        current += 1
        start = current

        token, end_of_line = d.trim_continuation(token)
        if end_of_line and token == "":
            continue
        buf = [token]
        empty_continuation = False
        while not end_of_line and i < len(lines):
            raw = lines[i]
            i += 1
            token = _trim_newline(raw)
            try:
                d.check(token)
            except _ParseError as exc:
                raise fail(str(exc), current + 1) from None
            current += 1
            if _is_comment(token):
                continue
            if _lstrip(token) == "":
                empty_continuation = True
                continue
            token, end_of_line = d.trim_continuation(token)
            buf.append(token)
        line = "".join(buf)
        if empty_continuation:
            warnings.append(f"{filename}:{current}: empty continuation line found in: {line}")

        try:
            node = _node_from_line(line, d)
        except _ParseError as exc:
            raise fail(str(exc), start) from None
        except RecursionError:
            raise fail("instruction nested too deeply", start) from None

        if _can_contain_heredoc(node) and "<<" in line:
            try:
                docs = _heredocs_from_line(line)
            except _ParseError as exc:
                raise fail(str(exc), start) from None
            for doc in docs:
                body: list[str] = []
                terminated = False
                while i < len(lines):
                    raw = lines[i]
                    i += 1
                    current += 1
                    candidate = _trim_newline(raw)
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    body.append(raw)
                if not terminated:
                    raise fail(f"unterminated heredoc {doc.name}", start)
                doc.content = "".join(body)
                node.heredocs.append(doc)

        node.start_line = start
        node.end_line = current
        for child in node.children:
            child.start_line, child.end_line = start, current
        nodes.append(node)

    if not nodes:
        raise fail("file with no instructions", current)
    return Containerfile(
        nodes=nodes,
        directives=dict(d.seen),
        escape=d.escape,
        warnings=warnings,
        filename=filename,
    )


# -- dump --------------------------------------------------------------------------------------


def _dump_node(node: Node) -> str:
    out = node.value
    if node.flags:
        out += " [" + " ".join(go_quote(f) for f in node.flags) + "]"
    if node.children:
        out += " " + "".join("(" + _dump_node(c) + ")" for c in node.children)
    else:
        for arg in node.args:
            out += " " + go_quote(arg)
    return go_trim_space(out)


def dump(cf: Containerfile) -> str:
    """The parse tree in BuildKit's ``Node.Dump()`` format, one ``(instruction "arg"...)`` per line.

    The text ends with a newline, so it equals the ``result`` files of BuildKit's parser tests.
    """
    return "".join("(" + _dump_node(node) + ")\n" for node in cf.nodes)
