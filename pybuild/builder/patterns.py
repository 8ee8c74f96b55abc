"""The patterns of ``${VAR#...}``, ``${VAR%...}`` and ``${VAR/.../...}`` as BuildKit's lexer reads
them (shell globs turned into regular expressions), and Go's regexp template expansion."""

from __future__ import annotations

import re

from .gostrings import is_letter

REGEX_SPECIALS = frozenset("[]{}.+()|^$")


class LexError(Exception):
    pass


def pattern_to_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """Turn a shell wildcard pattern (``*`` and ``?``, no brackets) into a regular expression."""
    out: list[str] = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            following = pattern[i] if i < len(pattern) else None
            if following in ("}", "/"):
                continue
            if following not in ("*", "?", "\\"):
                shown = following if following is not None else "\ufffd"
                raise LexError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'")
            out.append("\\" + following)
            i += 1
            continue
        out.append("\\" + tok if tok in REGEX_SPECIALS else tok)
    return re.compile("".join(out))


def trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = pattern_to_regex(pattern, greedy=greedy, anchored=True).search(value)
    if match is not None:
        return value[match.end() :]
    return value


def reverse_pattern(pattern: str) -> str:
    chars = list(pattern)
    last = len(chars) - 1
    out = [""] * len(chars)
    i = 0
    while i <= last:
        tok = chars[i]
        at = last - i
        if tok == "\\" and i != last:
            out[at - 1] = tok
            out[at] = chars[i + 1]
            i += 2
        else:
            out[at] = tok
            i += 1
    return "".join(out)


def trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # Reverse both so the rightmost shortest match becomes a leftmost one.
    return trim_prefix(reverse_pattern(pattern), value[::-1], greedy)[::-1]


def go_expand_template(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.Expand`` for a pattern with no groups: ``$0``/``${0}`` is the match, ``$$`` a ``$``."""
    out: list[str] = []
    i = 0
    n = len(template)
    while i < n:
        ch = template[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if i + 1 < n and template[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        name, end = template_name(template, i + 1)
        if name is None:
            out.append("$")
            i += 1
            continue
        if name.isascii() and name.isdigit() and int(name) == 0 and len(name) <= 8:
            out.append(match.group(0))
        i = end
    return "".join(out)


def template_name(template: str, start: int) -> tuple[str | None, int]:
    def name_char(c: str) -> bool:
        return c == "_" or is_letter(c) or ("0" <= c <= "9")

    n = len(template)
    if start < n and template[start] == "{":
        j = start + 1
        while j < n and name_char(template[j]):
            j += 1
        if j == start + 1 or j >= n or template[j] != "}":
            return None, start
        return template[start + 1 : j], j + 1
    j = start
    while j < n and name_char(template[j]):
        j += 1
    if j == start:
        return None, start
    return template[start:j], j


# -- the two calls the builder uses ------------------------------------------------------------
