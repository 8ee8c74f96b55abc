"""The build context's ignore file (.containerignore / .dockerignore) and walking the context with it.

The rules follow moby's patternmatcher as docker, buildah and podman use it:

- one pattern per line; a line whose first character is ``#`` is a comment; blank lines are skipped;
  surrounding whitespace is trimmed (also after a leading ``!``);
- each pattern is cleaned like Go's ``filepath.Clean`` and a leading ``/`` is dropped, so ``/a``,
  ``./a`` and ``a/`` all mean ``a``;
- Go ``filepath.Match`` syntax (``*``, ``?``, ``[...]`` with ``^`` negation and ranges, ``\\``
  escapes), where none of these cross a ``/``; ``**`` stands for any number of directories;
- a pattern that matches a directory matches everything below it;
- ``!pattern`` re-includes, and the last pattern that matches a path decides.

Walking the context prunes an excluded directory unless an exception pattern names a path inside it
*literally* (its text starts with the directory's path). That is what buildah's copier does: with
``subdir`` and ``!*/sub1*`` the whole of ``subdir`` stays out, although ``subdir/sub1.txt`` on its own
is not excluded (see buildah's ``bud with .dockerignore #1`` test).

The Containerfile and the ignore file get no special treatment: like buildah, a COPY of the context
leaves them out when a pattern excludes them (Docker only keeps them for sending the context).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pybuild.errors import ContainerfileError, UsageError
from pybuild.run.paths import resolve_in_root

__all__ = [
    "IgnoreRules",
    "PathFilter",
    "clean_path",
    "glob_to_regex",
    "has_glob_meta",
    "walk_context",
]

_IGNORE_NAMES = (".containerignore", ".dockerignore")


class BadPattern(ValueError):
    """A pattern breaks Go's filepath.Match syntax (internal; callers turn it into ContainerfileError)."""


# --- patterns ----------------------------------------------------------------------------------


def clean_path(path: str) -> str:
    """Go's ``path.Clean``: one slash between names, no ``.``, ``..`` folded where it can be."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def has_glob_meta(text: str) -> bool:
    """Whether Go's filepath.Glob would treat ``text`` as a pattern rather than a plain name."""
    return any(c in text for c in "*?[\\")


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """One character of a ``[...]`` class at ``i`` (escapes allowed); returns it and the next index."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise BadPattern(pattern)
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise BadPattern(pattern)
    return pattern[i], i + 1


def _translate_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate the class starting after ``[`` at ``i``; returns the regex and the index after ``]``."""
    negated = False
    if i < len(pattern) and pattern[i] == "^":
        negated = True
        i += 1
    ranges: list[tuple[str, str]] = []
    count = 0
    while True:
        if i < len(pattern) and pattern[i] == "]" and count > 0:
            i += 1
            break
        lo, i = _class_char(pattern, i)
        hi = lo
        if i < len(pattern) and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
        count += 1
        if lo <= hi:  # Go accepts an empty range; it just never matches
            ranges.append((lo, hi))
    body = "".join(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in ranges)
    if negated:
        return f"[^/{body}]", i
    if not body:
        return "(?!)", i
    return f"(?!/)[{body}]", i


def glob_to_regex(pattern: str, *, doublestar: bool) -> str:
    """Translate a Go filepath.Match pattern into a Python regex body (no anchors).

    With ``doublestar`` (ignore files), ``**`` matches any number of directories the way moby's
    patternmatcher does. Raises :class:`BadPattern` for a malformed pattern.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if doublestar and i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(?:.*/)?")
                continue
            while i + 1 < n and pattern[i + 1] == "*" and not doublestar:
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            regex, i = _translate_class(pattern, i + 1)
            out.append(regex)
            continue
        elif c == "\\":
            if i + 1 >= n:
                raise BadPattern(pattern)
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without the '!'
    exclusion: bool
    regex: re.Pattern[str]


def _compile(raw: str, source: str | None) -> _Pattern | None:
    """Compile one pattern as patternmatcher would; None for a pattern that is empty after trimming."""
    text = raw.strip()
    if not text:
        return None
    exclusion = text.startswith("!")
    if exclusion:
        text = text[1:].strip()
        if not text:
            where = f" in {source}" if source else ""
            raise ContainerfileError(f'illegal exclusion pattern "!"{where}')
    text = clean_path(text)
    if len(text) > 1 and text.startswith("/"):
        text = text[1:]
    try:
        body = glob_to_regex(text, doublestar=True)
        regex = re.compile(f"(?:{body})(?:/.*)?", re.DOTALL)
    except (BadPattern, re.error) as exc:
        where = f" in {source}" if source else ""
        raise ContainerfileError(f"syntax error in pattern {raw.strip()!r}{where}") from exc
    return _Pattern(text=text, exclusion=exclusion, regex=regex)


def _parse_lines(text: str) -> tuple[str, ...]:
    patterns: list[str] = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return tuple(patterns)


# --- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRules:
    """The patterns of one ignore file; ``IgnoreRules(())`` excludes nothing.

    Building one checks every pattern: a malformed one raises :class:`ContainerfileError`.
    """

    patterns: tuple[str, ...] = ()
    source: str | None = None
    _compiled: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        compiled = [_compile(p, self.source) for p in self.patterns]
        object.__setattr__(self, "_compiled", tuple(p for p in compiled if p is not None))

    @classmethod
    def parse(cls, text: str, source: str | None = None) -> IgnoreRules:
        """Rules from the text of an ignore file."""
        return cls(_parse_lines(text), source)

    @classmethod
    def load(
        cls, context: Path, containerfile: Path | None = None, ignorefile: Path | None = None
    ) -> IgnoreRules:
        """Find and read the ignore file for a build.

        ``ignorefile`` (--ignorefile) wins; then ``<containerfile>.containerignore`` or
        ``<containerfile>.dockerignore`` beside the Containerfile; then ``.containerignore``, then
        ``.dockerignore`` in the context (a symlink there that leads out of the context is ignored).
        """
        if ignorefile is not None:
            try:
                text = Path(ignorefile).read_bytes()
            except FileNotFoundError:
                raise UsageError(f"ignore file {ignorefile}: no such file or directory") from None
            except OSError as exc:
                raise UsageError(f"ignore file {ignorefile}: {exc.strerror or exc}") from None
            return cls.parse(_decode(text), str(ignorefile))
        if containerfile is not None:
            for suffix in _IGNORE_NAMES:
                candidate = Path(f"{containerfile}{suffix}")
                if candidate.is_file():
                    return cls._read(candidate)
        for name in _IGNORE_NAMES:
            rel = resolve_in_root(context, name)
            if rel is None:
                continue
            candidate = Path(context, rel) if rel else Path(context)
            try:
                st = candidate.stat()
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            return cls._read(candidate)
        return cls((), None)

    @classmethod
    def _read(cls, path: Path) -> IgnoreRules:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ContainerfileError(f"reading ignore file {path}: {exc.strerror or exc}") from None
        return cls.parse(_decode(data), str(path))

    def excluded(self, rel: str) -> bool:
        """Whether ``rel`` (slash-separated, relative to the context) is left out; the last match wins."""
        rel = rel.strip("/")
        if rel in ("", "."):
            return False
        for pattern in reversed(self._compiled):
            if pattern.regex.fullmatch(rel):
                return not pattern.exclusion
        return False

    def reincludes_below(self, rel: str) -> bool:
        """Whether an exception pattern names something inside directory ``rel`` literally."""
        prefix = rel.strip("/") + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self._compiled)

    @property
    def has_exceptions(self) -> bool:
        return any(p.exclusion for p in self._compiled)

    def digest(self) -> str:
        """A stable ``sha256:`` digest of the patterns (part of the build cache key)."""
        data = json.dumps(list(self.patterns), ensure_ascii=False, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(data.encode("utf-8", "surrogateescape")).hexdigest()

    def __bool__(self) -> bool:
        return bool(self._compiled)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class PathFilter:
    """Several rule sets at once (the ignore file and COPY --exclude): excluded if any excludes."""

    def __init__(self, *rules: IgnoreRules) -> None:
        self.rules = tuple(r for r in rules if r)

    def excluded(self, rel: str) -> bool:
        return any(r.excluded(rel) for r in self.rules)

    def descend(self, rel: str) -> bool:
        """For an excluded directory: whether something inside it may still be included."""
        return all(r.reincludes_below(rel) for r in self.rules if r.excluded(rel))


# --- the context -------------------------------------------------------------------------------


def _list_dir(root: str, rel: str) -> list[tuple[str, os.stat_result]]:
    path = os.path.join(root, rel) if rel else root
    entries: list[tuple[str, os.stat_result]] = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    entries.append((entry.name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue  # vanished while we looked
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise ContainerfileError(
            f'reading "{rel or "."}" in the build context: {exc.strerror or exc}'
        ) from None
    entries.sort(key=lambda e: e[0])
    return entries


def walk_context(
    context: Path, rules: IgnoreRules | PathFilter, start: str = ""
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(rel, lstat)`` for every included entry below ``start`` (not ``start`` itself).

    Depth first, names sorted within a directory, parents before children; symlinks are not
    followed. An excluded directory is skipped whole unless an exception pattern names something in
    it; then it is yielded only if something below it is included, just before that entry.
    """
    root = os.fspath(context)
    filt = rules if isinstance(rules, PathFilter) else PathFilter(rules)
    base = clean_path("/" + start).lstrip("/")
    try:
        top = os.lstat(os.path.join(root, base) if base else root)
    except (OSError, ValueError):
        return
    if not stat.S_ISDIR(top.st_mode):
        return
    stack: list[tuple[str, Iterator[tuple[str, os.stat_result]]]] = [(base, iter(_list_dir(root, base)))]
    pending: list[tuple[str, os.stat_result]] = []  # excluded directories waiting for a child
    while stack:
        dir_rel, entries = stack[-1]
        item = next(entries, None)
        if item is None:
            stack.pop()
            if pending and pending[-1][0] == dir_rel:
                pending.pop()
            continue
        name, st = item
        rel = f"{dir_rel}/{name}" if dir_rel else name
        is_dir = stat.S_ISDIR(st.st_mode)
        if filt.excluded(rel):
            if is_dir and filt.descend(rel):
                pending.append((rel, st))
                stack.append((rel, iter(_list_dir(root, rel))))
            continue
        if pending:
            yield from pending
            pending.clear()
        yield rel, st
        if is_dir:
            stack.append((rel, iter(_list_dir(root, rel))))
