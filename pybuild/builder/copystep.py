"""COPY and ADD: sources from the build context (after the ignore file), heredocs, URLs (ADD, with
--checksum) and other stages or images (COPY --from, see ``copyfrom``), copied by ``copier`` inside
the step's root; local archives are unpacked by ADD."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ContainerfileError
from ..run import run_function
from ..run.layers import remove_tree
from .containerfile import Instruction, expand_in
from .copier import CopyRequest, CopySource, copy_into_root
from .copyfrom import copy_from_view, match_from
from .engine import fs_step
from .ignore import IgnoreRules, walk_context
from .shell import Lexer
from .sources import match_all_sources, sources_digest
from .state import StageState
from .stepcontext import StepContext


def copy_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    copy_files(ctx, state, inst, add=False)


def add_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    copy_files(ctx, state, inst, add=True)


def copy_files(ctx: StepContext, state: StageState, inst: Instruction, *, add: bool) -> None:
    """COPY and ADD: from the context, heredocs, URLs (ADD) or another stage or image (COPY --from)."""
    what = "ADD" if add else "COPY"
    scope = state.scope()
    words = [expand_in(inst, w, scope) for w in inst.args]
    if inst.node.heredocs:
        dest_text = words[-1]
        srcs: list[str] = [w for w in words[:-1] if not w.startswith("<<")]
    else:
        dest_text, srcs = words[-1], words[:-1]
    if not dest_text:
        raise inst.error(f"{what} needs a destination")
    dest = dest_text if dest_text.startswith("/") else os.path.join(state.workdir, dest_text)
    if dest_text.endswith("/") and not dest.endswith("/"):
        dest += "/"
    chown = expand_in(inst, inst.flag("chown") or "", scope) or None
    chmod = expand_in(inst, inst.flag("chmod") or "", scope) or None
    excludes = [expand_in(inst, e, scope) for e in inst.flags.get("exclude", [])]
    parents = inst.bool_flag("parents") if not add else False
    from_ = expand_in(inst, inst.flag("from") or "", scope) if not add else ""
    checksum = inst.flag("checksum") if add else None
    n_sources = len(srcs) + len(inst.node.heredocs)
    multi = n_sources > 1 or any(any(c in s for c in "*?[") for s in srcs)
    if n_sources > 1 and not dest.endswith("/"):
        dest += "/"  # as buildah does (bud.bats copy-globs/Containerfile.missing): a directory
    created_by = f"/bin/sh -c #(nop) {inst.text}"
    with contextlib.ExitStack() as stack:
        staging = Path(tempfile.mkdtemp(prefix="sources-", dir=ctx.scratch))
        stack.callback(remove_tree, staging)
        sources: list[CopySource] = []
        file_modes: dict[str, int] = {}
        key_parts: list[Any] = [what, words, chown, chmod, excludes, parents, from_, checksum]
        if inst.node.heredocs:
            for i, doc in enumerate(inst.node.heredocs):
                body = doc.content
                if doc.chomp:
                    body = "".join(line.lstrip("\t") for line in body.splitlines(keepends=True))
                if doc.expand:
                    body = _expand_heredoc(inst, body, scope)
                sub = staging / str(i)
                sub.mkdir()
                (sub / doc.name).write_text(body)
                rel = f"{i}/{doc.name}"
                file_modes[rel] = 0o644
                sources.append(CopySource(rel, as_path=doc.name))
                key_parts.append([doc.name, body])
        src_root: Path
        from_sources = None
        if from_:
            src_root = staging  # the heredocs, if any; the sources are read from the source's view
            from_sources = match_from(ctx, inst, from_, srcs, state.workdir)
            key_parts.append(from_sources.key())
        elif srcs and any(s.startswith(("http://", "https://")) for s in srcs):
            if not add:
                raise inst.error("COPY does not fetch URLs: use ADD")
            src_root = staging
            for i, url in enumerate(srcs):
                sources.append(_fetch(inst, url, staging / f"u{i}", checksum, dest.endswith("/")))
            key_parts.append(sources_digest(staging, [s.rel for s in sources], IgnoreRules((), None)))
        elif srcs:
            src_root = ctx.context
            matched: list[CopySource] = []
            try:
                found = match_all_sources(ctx.context, srcs, ctx.rules, excludes=excludes)
            except ContainerfileError as exc:
                raise inst.error(f"{what}: {exc.reason}") from None
            matched.extend(
                _context_source(ctx, rel, excludes, parents, pattern)
                for pattern, rels in zip(srcs, found, strict=True)
                for rel in rels
            )
            sources += matched
            try:
                key_parts.append(
                    sources_digest(ctx.context, [s.rel for s in matched], ctx.rules, excludes=excludes)
                )
            except ContainerfileError as exc:
                raise inst.error(exc.reason) from None
        else:
            src_root = staging
        req = CopyRequest(
            sources=sources,
            dest=dest,
            dest_is_dir=dest.endswith("/") or multi,
            chown=chown,
            chmod=chmod,
            parents=parents,
            extract=add,
            what=f"{inst.file}:{inst.line}: {what}",
            file_modes=file_modes,
        )
        if add and any(s.startswith(("http://", "https://")) for s in srcs):
            req.extract = False
        src_fd = os.open(src_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        stack.callback(os.close, src_fd)

        def action(upper: Path, lowers: list[Path]) -> None:
            if from_sources is None:
                run_function(lowers, upper, lambda: copy_into_root(src_fd, req))
                return
            # heredocs first (from staging), then the source's matches (from its view), as before
            requests = [(src_fd, req)] if req.sources else []
            requests.append((-1, replace(req, sources=from_sources.sources, file_modes={})))
            copy_from_view(ctx, from_sources, lowers, upper, requests)

        fs_step(ctx, state, inst, created_by, key_parts, action)


def _expand_heredoc(inst: Instruction, body: str, scope: dict[str, str]) -> str:
    """Variables in a COPY/ADD heredoc body, as BuildKit expands them: quotes and escapes are
    kept as written, only $VAR and ${VAR...} forms change."""
    try:
        return Lexer(inst.escape, raw_quotes=True, raw_escapes=True).process_word(body, scope)
    except ContainerfileError as exc:
        raise inst.error(f"heredoc <<{inst.node.heredocs[0].name}: {exc.reason}") from None


def _context_source(
    ctx: StepContext, rel: str, excludes: list[str], parents: bool, pattern: str
) -> CopySource:
    """A matched context path: directories list their included entries; a symlink at the top is
    followed inside the context (as Docker does)."""
    from ..run.paths import join_in_root

    path = ctx.context / rel if rel else ctx.context
    as_path = rel if parents else None
    if path.is_symlink():
        real = join_in_root(ctx.context, rel)
        rel_real = os.path.relpath(real, ctx.context)
        if rel_real == ".":
            rel_real = ""
        as_path = rel if parents else os.path.basename(rel)
        rel = rel_real
        path = real
    if path.is_dir() and not path.is_symlink():
        entries = [
            e[len(rel) + 1 :] if rel else e for e, _ in walk_context(ctx.context, ctx.rules, rel) if e != rel
        ]
        if excludes:
            rules = IgnoreRules(tuple(excludes), None)
            entries = [e for e in entries if not rules.excluded(f"{rel}/{e}" if rel else e)]
        return CopySource(rel, entries, as_path=as_path)
    return CopySource(rel, as_path=as_path)


def _fetch(inst: Instruction, url: str, folder: Path, checksum: str | None, into_dir: bool) -> CopySource:
    """ADD URL: download into ``folder`` (mode 0600, mtime from Last-Modified) and check --checksum."""
    import email.utils
    import hashlib
    import urllib.error
    import urllib.parse
    import urllib.request

    folder.mkdir()
    name = os.path.basename(urllib.parse.urlparse(url).path) or "index.html"
    path = folder / name
    hasher = hashlib.sha256()
    try:
        # only http:// and https:// sources come here (copy_files), and redirects stay on http(s)
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:  # noqa: S310
            while chunk := response.read(1 << 20):
                hasher.update(chunk)
                out.write(chunk)
            modified = response.headers.get("Last-Modified")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise inst.error(f"ADD {url}: cannot download: {reason}") from None
    if checksum:
        if not checksum.startswith("sha256:"):
            raise inst.error(f"ADD --checksum={checksum}: only sha256:HEX is supported")
        if hasher.hexdigest() != checksum.removeprefix("sha256:"):
            raise inst.error(
                f"ADD {url}: checksum mismatch: got sha256:{hasher.hexdigest()}, expected {checksum}"
            )
    os.chmod(path, 0o600)
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            when = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(path, (when, when))
    return CopySource(f"{folder.name}/{name}", as_path=name)
