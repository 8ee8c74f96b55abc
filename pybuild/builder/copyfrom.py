"""COPY --from in one pass: the source stage's or image's layer directories are read in place.

The step's cache key is known before anything is copied: the source's diff_ids and the patterns
name a *match record* (what the patterns match in that tree, and the content digest of it), kept
with the build cache records. Only the first time a tree is seen are the patterns matched, inside
the source's own root (a throwaway overlay of its layer directories, chrooted, so symlinks resolve
as the image resolves them) and the matched entries hashed. A cache hit of the step then costs the
record, nothing more.

On a miss the copy reads straight from the source's layer directories: they are mounted as a view
(``run.with_view``) in a mount namespace that the step's own (``run_function``, chrooted into the
step's overlay) is made inside, and the copier reads through a directory descriptor on that view.
Nothing is exported, unpacked or staged.
"""

from __future__ import annotations

import glob  # at module level: matching runs after the root has changed, when imports fail
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ContainerfileError
from ..run import run_function, with_view
from .cache import step_key
from .containerfile import Instruction
from .copier import CopyRequest, CopySource, copy_into_root
from .ignore import IgnoreRules
from .images import source_layers
from .sources import sources_digest
from .state import Layers
from .stepcontext import StepContext

RECORD_VERSION = 1


@dataclass(frozen=True)
class FromSources:
    """What COPY --from=REF PATTERNS... copies: the source's layers, one CopySource per match (``rel``
    resolved in the source's root, ``as_path`` the path the pattern matched) and their digest."""

    layers: Layers
    sources: list[CopySource]
    digest: str

    def key(self) -> list[object]:
        """The part of the step's cache key that stands for the sources."""
        return [self.digest, [[s.rel, s.as_path] for s in self.sources]]


def match_from(
    ctx: StepContext, inst: Instruction, ref: str, patterns: list[str], workdir: str
) -> FromSources:
    """The sources COPY --from=``ref`` names, from the match record when the tree was seen before."""
    layers = source_layers(ctx, inst, ref)
    memo = step_key("copy-from", RECORD_VERSION, [str(d) for _, d in layers], patterns, workdir)
    record = None if ctx.options.no_cache else ctx.cache.get(memo)
    found = _from_record(record)
    if found is None:
        lowers = ctx.layer_dirs(layers)
        with ctx.workspace() as top:
            upper = top / "upper"
            upper.mkdir()
            matches, digest = run_function(lowers, upper, lambda: match_in_root(patterns, workdir))
        found = (matches, digest)
        ctx.cache.put(
            memo, {"history": {}, "layer": None, "copy_from": {"matches": matches, "digest": digest}}
        )
    matches, digest = found
    return FromSources(layers, [CopySource(rel, None, as_path=orig) for rel, orig in matches], digest)


def _from_record(record: dict[str, object] | None) -> tuple[list[tuple[str, str]], str] | None:
    data = record.get("copy_from") if record is not None else None
    if not isinstance(data, dict):
        return None
    matches, digest = data.get("matches"), data.get("digest")
    if not isinstance(matches, list) or not isinstance(digest, str):
        return None
    pairs = []
    for item in matches:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(p, str) for p in item)):
            return None
        pairs.append((item[0], item[1]))
    return pairs, digest


def match_in_root(patterns: list[str], workdir: str) -> tuple[list[tuple[str, str]], str]:
    """Inside the source's root (chrooted): each path ``patterns`` match, as (its path with symlinks
    resolved, the path matched), both relative to the root, and the digest of what they hold."""
    matches: list[tuple[str, str]] = []
    for pattern in patterns:
        path = pattern if pattern.startswith("/") else os.path.join(workdir, pattern)
        path = os.path.normpath(path)
        found = (
            sorted(glob.glob(path))
            if any(c in path for c in "*?[")
            else ([path] if os.path.lexists(path) else [])
        )
        if not found:
            raise ContainerfileError(f"COPY --from: {pattern}: no such file or directory")
        for match in found:
            real = os.path.realpath(match)
            if not os.path.exists(real):
                raise ContainerfileError(f"COPY --from: {match}: dangling symbolic link")
            matches.append((real.lstrip("/"), match.lstrip("/")))
    digest = sources_digest(Path("/"), [rel for rel, _ in matches], IgnoreRules((), None))
    return matches, digest


def copy_from_view(
    ctx: StepContext,
    source: FromSources,
    lowers: list[Path],
    upper: Path,
    requests: list[tuple[int, CopyRequest]],
) -> None:
    """Copy ``requests`` into the step's root (``lowers`` under ``upper``): a request whose fd is -1
    reads from the source's view, the others from their own directory descriptor."""
    view_lowers = ctx.layer_dirs(source.layers)

    def in_view(merged: str) -> int:
        fd = os.open(merged, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            wanted = [(fd if src_fd < 0 else src_fd, req) for src_fd, req in requests]
            return run_function(lowers, upper, lambda: sum(copy_into_root(f, r) for f, r in wanted))
        finally:
            os.close(fd)

    with_view(view_lowers, ctx.scratch, in_view)
