"""COPY/ADD sources: which paths of the build context a source names, and a digest of what they copy.

A source is relative to the context root; ``..`` and absolute paths are cleaned against ``/`` the
way Docker does, so ``../x`` and ``/x`` both mean ``x`` in the context. Each path component may be a
Go filepath.Match pattern. Symlinks in the directories leading to a source are followed inside the
context (never out of it); the last component is not followed.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from pybuild.builder.ignore import (
    BadPattern,
    IgnoreRules,
    PathFilter,
    clean_path,
    glob_to_regex,
    has_glob_meta,
    walk_context,
)
from pybuild.errors import ContainerfileError
from pybuild.run.paths import resolve_in_root

__all__ = ["match_all_sources", "match_sources", "source_rel", "sources_digest"]

CHUNK = 1 << 20


def source_rel(pattern: str) -> str:
    """The source as a clean path relative to the context: ``../x`` and ``/x`` are ``x``, ``.`` is ``""``."""
    return clean_path("/" + pattern).lstrip("/")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def _exists(root: str, rel: str) -> os.stat_result | None:
    try:
        return os.lstat(os.path.join(root, rel) if rel else root)
    except OSError:
        return None


def _expand(context: Path, rel: str, pattern: str) -> list[str]:
    """Every context path the (cleaned) source names, symlinked parents resolved in the context."""
    root = os.fspath(context)
    parts = rel.split("/") if rel else []
    current = [""]
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        found: list[str] = []
        if has_glob_meta(part):
            try:
                regex = re.compile(glob_to_regex(part, doublestar=False), re.DOTALL)
            except (BadPattern, re.error):
                raise ContainerfileError(f'syntax error in pattern "{pattern}"') from None
        for parent in current:
            if has_glob_meta(part):
                try:
                    with os.scandir(os.path.join(root, parent) if parent else root) as it:
                        names = sorted(e.name for e in it if regex.fullmatch(e.name))
                except OSError:
                    names = []
            else:
                names = [part]
            for name in names:
                child = f"{parent}/{name}" if parent else name
                if last:
                    if _exists(root, child) is not None:
                        found.append(child)
                    continue
                resolved = resolve_in_root(context, child)
                if resolved is None:
                    raise ContainerfileError(f'"{pattern}": too many levels of symbolic links')
                st = _exists(root, resolved)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    found.append(resolved)
        current = sorted(set(found))
        if not current:
            return []
    return current


def _filtered_out_using(rules: IgnoreRules, excludes: IgnoreRules, rels: Sequence[str]) -> str:
    by_rules = sum(1 for r in rels if rules.excluded(r))
    by_excludes = len(rels) - by_rules
    reasons = []
    if by_rules:
        reasons.append(f"{by_rules} filtered out using {rules.source or 'the ignore patterns'}")
    if by_excludes:
        reasons.append(f"{by_excludes} filtered out by --exclude")
    return ", ".join(reasons)


def match_sources(
    context: Path,
    pattern: str,
    rules: IgnoreRules,
    *,
    excludes: Sequence[str] = (),
    allow_empty: bool = False,
) -> list[str]:
    """The context paths (sorted, ``""`` for the context itself) that a COPY/ADD source names.

    Paths left out by ``rules`` or by the COPY ``--exclude`` patterns are dropped (an excluded
    directory stays when something inside it is re-included). A source that names nothing raises
    :class:`ContainerfileError`; with ``allow_empty`` a glob that matches nothing returns ``[]``
    (buildah accepts ``COPY *foo *.txt /d`` when ``*.txt`` matches).
    """
    exclude_rules = IgnoreRules(tuple(excludes), "--exclude")
    filt = PathFilter(rules, exclude_rules)
    if "\0" in pattern:
        raise ContainerfileError(f"source {pattern!r}: a path cannot contain a NUL byte")
    rel = source_rel(pattern)
    is_glob = has_glob_meta(rel)
    matched = _expand(context, rel, pattern)
    kept: list[str] = []
    dropped: list[str] = []
    for path in matched:
        if path and filt.excluded(path):
            st = _exists(os.fspath(context), path)
            if (
                st is not None
                and stat.S_ISDIR(st.st_mode)
                and filt.descend(path)
                and next(walk_context(context, filt, path), None) is not None
            ):
                kept.append(path)
            else:
                dropped.append(path)
            continue
        kept.append(path)
    if kept:
        return sorted(kept)
    if is_glob:
        if allow_empty and not dropped:
            return []
        if dropped:
            why = _filtered_out_using(rules, exclude_rules, dropped)
            raise ContainerfileError(f'no items matching glob "{pattern}" copied ({why}): matched nothing')
        raise ContainerfileError(f'glob "{pattern}" matched nothing in the build context')
    if dropped:
        why = _filtered_out_using(rules, exclude_rules, dropped)
        raise ContainerfileError(f'"{pattern}" not copied ({why}): no such file or directory')
    raise ContainerfileError(f'"{pattern}" in the build context: no such file or directory')


def match_all_sources(
    context: Path, patterns: Sequence[str], rules: IgnoreRules, *, excludes: Sequence[str] = ()
) -> list[list[str]]:
    """Match every source of one instruction: a glob may match nothing if another source matched."""
    results = [match_sources(context, p, rules, excludes=excludes, allow_empty=True) for p in patterns]
    if not any(results):
        if len(patterns) == 1:
            match_sources(context, patterns[0], rules, excludes=excludes)  # raises the precise error
        shown = ", ".join(f'"{p}"' for p in patterns)
        raise ContainerfileError(f"sources {shown} matched nothing in the build context")
    return results


def _type_char(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISBLK(mode):
        return "b"
    if stat.S_ISFIFO(mode):
        return "p"
    if stat.S_ISSOCK(mode):
        return "s"
    return "?"


def _hash_entry(h: hashlib._Hash, root: str, rel: str, st: os.stat_result, buf: bytearray) -> None:
    mode = st.st_mode
    kind = _type_char(mode)
    path = os.path.join(root, rel) if rel else root
    extra = b""
    if kind == "l":
        try:
            extra = os.fsencode(os.readlink(path))
        except OSError as exc:
            raise ContainerfileError(f'reading link "{rel}" in the build context: {exc.strerror}') from None
    elif kind in "cb":
        extra = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}".encode()
    size = st.st_size if kind == "f" else 0
    h.update(b"%s\0%s\0%o\0%d\0%s\0" % (os.fsencode(rel), kind.encode(), stat.S_IMODE(mode), size, extra))
    if kind != "f":
        return
    view = memoryview(buf)
    total = 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ContainerfileError(f'reading "{rel}" in the build context: {exc.strerror}') from None
    try:
        while True:
            n = os.readv(fd, [view])
            if not n:
                break
            h.update(view[:n])
            total += n
    except OSError as exc:
        raise ContainerfileError(f'reading "{rel}" in the build context: {exc.strerror}') from None
    finally:
        os.close(fd)
    h.update(b"%d\n" % total)


def sources_digest(
    context: Path, rels: Sequence[str], rules: IgnoreRules, *, excludes: Sequence[str] = ()
) -> str:
    """A ``sha256:`` digest of everything the sources ``rels`` (from :func:`match_sources`) copy.

    Covers each entry's path, type, permission bits (with setuid, setgid, sticky), size, link
    target, device numbers and file content; not times, owners or xattrs. Files are streamed.
    """
    root = os.fspath(context)
    filt = PathFilter(rules, IgnoreRules(tuple(excludes), "--exclude"))
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    for source in rels:
        if "\0" in source:
            raise ContainerfileError(f"source {source!r}: a path cannot contain a NUL byte")
        rel = source_rel(source) if source else ""
        h.update(b"source\0%s\0" % os.fsencode(rel))
        st = _exists(root, rel)
        if st is None:
            raise ContainerfileError(f'"{source}" in the build context: no such file or directory')
        if not rel or not filt.excluded(rel):
            _hash_entry(h, root, rel, st, buf)
        if stat.S_ISDIR(st.st_mode):
            for child, child_st in walk_context(context, filt, rel):
                _hash_entry(h, root, child, child_st, buf)
    return "sha256:" + h.hexdigest()
