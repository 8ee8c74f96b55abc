"""The per-instruction argument parsing of the Containerfile parser, as BuildKit's: shell or JSON
(exec) form, ENV/LABEL pairs, HEALTHCHECK, ONBUILD's trigger, and the leading --flags."""

from __future__ import annotations

import json
from collections.abc import Callable

from .directives import Directives, lstrip
from .gostrings import go_quote, go_trim_space, is_go_space
from .parsetree import WHITESPACE, Node, ParseError

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
            if ch == escape and quote not in ("'", ch):
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
        parts = WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ParseError(f"{key} must have two arguments")
        return [parts[0], parts[1], ""], False, []
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise ParseError(
                f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value"
            )
        name, value = word.split("=", 1)
        args += [name, value, "="]
    return args, False, []


def _parse_env(rest: str, d: Directives) -> _Parsed:
    return _parse_name_val(rest, "ENV", d.escape)


def _parse_label(rest: str, d: Directives) -> _Parsed:
    return _parse_name_val(rest, "LABEL", d.escape)


def _parse_name_or_name_val(rest: str, d: Directives) -> _Parsed:
    return _parse_words(rest, d.escape), False, []


def _parse_strings_whitespace_delimited(rest: str, d: Directives) -> _Parsed:
    if rest == "":
        return [], False, []
    return WHITESPACE.split(rest), False, []


def _parse_string(rest: str, d: Directives) -> _Parsed:
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
    rest = lstrip(rest)
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


def _parse_maybe_json(rest: str, d: Directives) -> _Parsed:
    if rest == "":
        return [], False, []
    try:
        return _parse_json(rest), True, []
    except _NotStringArray:
        raise ParseError(_NOT_STRING_ARRAY) from None
    except _NotJSON:
        return [rest], False, []


def _parse_maybe_json_to_list(rest: str, d: Directives) -> _Parsed:
    try:
        return _parse_json(rest), True, []
    except _NotStringArray:
        raise ParseError(_NOT_STRING_ARRAY) from None
    except _NotJSON:
        return _parse_strings_whitespace_delimited(rest, d)


def _parse_health_config(rest: str, d: Directives) -> _Parsed:
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


def _parse_sub_command(rest: str, d: Directives) -> _Parsed:
    if rest == "":
        return [], False, []
    child = node_from_line(rest, d)
    return [rest], False, [child]


def _parse_ignore(rest: str, d: Directives) -> _Parsed:
    return [""], False, []


_DISPATCH: dict[str, Callable[[str, Directives], _Parsed]] = {
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


def node_from_line(line: str, d: Directives) -> Node:
    parts = WHITESPACE.split(go_trim_space(line), maxsplit=1)
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
