"""BuildKit's shell lexer: variable expansion and word splitting for Containerfile arguments.

The rules follow BuildKit's ``frontend/dockerfile/shell`` package, which mimics a small part of a
POSIX shell: single and double quotes, the escape character (backslash, or backtick after
``# escape=```), ``$VAR``, ``${VAR}`` and the modifiers ``:-  -  :+  +  :?  ?  #  ##  %  %%  /  //``.
Nothing is executed: ``$(...)`` and backticks stay text.

:func:`expand` is BuildKit's ``ProcessWord`` (one string out, spaces kept) and :func:`expand_words`
its ``ProcessWords`` (split on unquoted white space after expansion). Errors raise
:class:`~pybuild.errors.ContainerfileError` with no file or line; the caller adds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ContainerfileError
from .gostrings import go_quote, is_digit, is_go_space, is_letter
from .patterns import LexError, go_expand_template, pattern_to_regex, trim_prefix, trim_suffix

__all__ = ["Expansion", "Lexer", "expand", "expand_words", "go_quote", "is_go_space"]


class _Words:
    """Collects the words of ProcessWords: unquoted white space ends a word."""

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_go_space(ch):
            if self.in_word and any(self.buf):
                self.words.append("".join(self.buf))
                self.buf = []
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf.append(ch)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        self.buf.append(text)
        self.in_word = True

    def result(self) -> list[str]:
        if self.buf:
            word = "".join(self.buf)
            if word:
                self.words.append(word)
            self.buf = []
            self.in_word = False
        return self.words


@dataclass
class Expansion:
    """The outcome of one expansion: the string, its words and the variables it looked up."""

    result: str
    words: list[str]
    matched: set[str] = field(default_factory=set)
    unmatched: set[str] = field(default_factory=set)


_SPECIAL_PARAMS = frozenset("@*#?-$!0")
REGEX_SPECIALS = frozenset("[]{}.+()|^$")


class Lexer:
    """A configurable lexer; the options match BuildKit's ``Lex`` fields.

    ``raw_quotes`` keeps quote characters in the output, ``raw_escapes`` keeps escape characters,
    ``skip_process_quotes`` treats quotes as plain characters, ``skip_unset_env`` leaves references to
    unset variables as they were written.
    """

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_process_quotes: bool = False,
        skip_unset_env: bool = False,
    ) -> None:
        if escape not in ("\\", "`"):
            raise ContainerfileError(f"invalid escape token {escape!r} does not match ` or \\")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_process_quotes = skip_process_quotes
        self.skip_unset_env = skip_unset_env
        # per-call state
        self._text = ""
        self._pos = 0
        self._env: Mapping[str, str] = {}
        self._raw = False
        self._matched: set[str] = set()
        self._unmatched: set[str] = set()

    # -- public ---------------------------------------------------------------------------------

    def process(self, word: str, env: Mapping[str, str]) -> Expansion:
        """Expand ``word``; the result holds both the joined string and the split words."""
        self._text = word
        self._pos = 0
        if word.startswith("\ufeff"):  # Go's text/scanner skips a leading byte-order mark
            self._pos = 1
        self._env = env
        self._raw = self.raw_escapes
        self._matched = set()
        self._unmatched = set()
        try:
            result, words = self._stop_on(None, self.raw_escapes)
        except LexError as exc:
            raise ContainerfileError(f"failed to process {go_quote(word)}: {exc}") from None
        except RecursionError:
            raise ContainerfileError(f"failed to process {go_quote(word)}: too deeply nested") from None
        return Expansion(result, words, self._matched, self._unmatched)

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self.process(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return self.process(word, env).words

    # -- scanner --------------------------------------------------------------------------------

    def _peek(self) -> str | None:
        return self._text[self._pos] if self._pos < len(self._text) else None

    def _next(self) -> str | None:
        if self._pos >= len(self._text):
            return None
        ch = self._text[self._pos]
        self._pos += 1
        return ch

    def _get_env(self, name: str) -> tuple[str, bool]:
        value = self._env.get(name)
        if value is None:
            self._unmatched.add(name)
            return "", False
        self._matched.add(name)
        return value, True

    # -- the grammar ----------------------------------------------------------------------------

    def _stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        saved = self._raw
        self._raw = raw_escapes
        try:
            while (ch := self._peek()) is not None:
                if stop is not None and ch == stop:
                    self._next()
                    return "".join(result), words.result()
                if ch == "$":
                    tmp = self._dollar()
                    result.append(tmp)
                    words.add_string(tmp)
                elif ch == "<":
                    tmp = self._possible_heredoc()
                    result.append(tmp)
                    words.add_raw_string(tmp)
                elif ch in "'\"" and not self.skip_process_quotes:
                    tmp = self._single_quote() if ch == "'" else self._double_quote()
                    result.append(tmp)
                    words.add_raw_string(tmp)
                else:
                    self._next()
                    if ch == self.escape:
                        if self._raw:
                            words.add_raw_char(ch)
                            result.append(ch)
                        nxt = self._next()
                        if nxt is None:
                            break
                        words.add_raw_char(nxt)
                        result.append(nxt)
                    else:
                        words.add_char(ch)
                        result.append(ch)
            if stop is not None:
                raise LexError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.result()
        finally:
            self._raw = saved

    def _single_quote(self) -> str:
        out: list[str] = []
        ch = self._next()
        if self.raw_quotes and ch is not None:
            out.append(ch)
        while True:
            ch = self._next()
            if ch is None:
                raise LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        out: list[str] = []
        ch = self._next()
        if self.raw_quotes and ch is not None:
            out.append(ch)
        while True:
            peek = self._peek()
            if peek is None:
                raise LexError("unexpected end of statement while looking for matching double-quote")
            if peek == '"':
                self._next()
                if self.raw_quotes:
                    out.append(peek)
                return "".join(out)
            if peek == "$":
                out.append(self._dollar())
                continue
            ch = self._next()
            assert ch is not None
            if ch == self.escape:
                if self._raw:
                    out.append(ch)
                following = self._peek()
                if following is None:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self._next()
                    assert ch is not None
            out.append(ch)

    def _name(self) -> str:
        name: list[str] = []
        while (ch := self._peek()) is not None:
            if not name and is_digit(ch):
                while (ch := self._peek()) is not None and is_digit(ch):
                    name.append(ch)
                    self._next()
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                self._next()
                return ch
            if not (is_letter(ch) or is_digit(ch) or ch == "_"):
                break
            name.append(ch)
            self._next()
        return "".join(name)

    def _dollar(self) -> str:
        self._next()  # the $
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value, found = self._get_env(name)
            if not found and self.skip_unset_env:
                return "$" + name
            return value

        self._next()  # the {
        peek = self._peek()
        if peek is None:
            raise LexError("syntax error: missing '}'")
        if peek in "{}:":
            raise LexError("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        modifier = ch if ch is not None else "\ufffd"
        null_is_unset = False

        if ch == "}":
            value, found = self._get_env(name)
            if not found and self.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._replace(name)
        if ch == ":":
            null_is_unset = True
            ch = self._next()
            modifier += ch if ch is not None else "\ufffd"
        elif ch not in ("+", "-", "?", "#", "%"):
            raise LexError(f"unsupported modifier ({modifier}) in substitution")

        raw = ch in ("#", "%")
        if null_is_unset and raw:
            raise LexError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word, _ = self._stop_on("}", raw)
        except LexError:
            if self._peek() is None:
                raise LexError("syntax error: missing '}'") from None
            raise

        value, found = self._get_env(name)
        if self.skip_unset_env and not found:
            return "${" + name + modifier + word + "}"

        if ch == "-":
            if not found or (null_is_unset and value == ""):
                return word
            return value
        if ch == "+":
            if not found or (null_is_unset and value == ""):
                return ""
            return word
        if ch == "?":
            if not found:
                raise LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in ("%", "#"):
            greedy = False
            if word and word[0] == ch:
                greedy = True
                word = word[1:]
            if ch == "%":
                return trim_suffix(word, value, greedy)
            return trim_prefix(word, value, greedy)
        raise LexError(f"unsupported modifier ({modifier}) in substitution")

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self._next()
        try:
            pattern, _ = self._stop_on("/", True)
        except LexError:
            if self._peek() is None:
                raise LexError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self._stop_on("}", True)
        except LexError:
            if self._peek() is None:
                raise LexError("syntax error: missing '}'") from None
            raise

        value, found = self._get_env(name)
        if self.skip_unset_env and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"

        regex = pattern_to_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda m: go_expand_template(replacement, m), value)
        match = regex.search(value)
        if match is None:
            return value
        return value[: match.start()] + replacement + value[match.end() :]

    def _possible_heredoc(self) -> str:
        self._next()
        if self._peek() != "<":
            return "<"
        self._next()
        spaces: list[str] = []
        while (ch := self._peek()) is not None and ch in "\t\r ":
            spaces.append(ch)
            self._next()
        return "<<" + "".join(spaces)


# -- patterns for # % / ------------------------------------------------------------------------


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand variables in ``word`` and remove quotes, keeping white space (BuildKit's ProcessWord)."""
    return Lexer(escape).process(word, env).result


def expand_words(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """Expand variables in ``text`` and split it into words on unquoted white space (ProcessWords)."""
    return Lexer(escape).process(text, env).words
