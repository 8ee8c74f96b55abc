"""The step engine: the cache and the layer-making step, outside the steps themselves.

A filesystem step (RUN, COPY, ADD, and the directories WORKDIR and VOLUME ask for) runs over the
layers below, stacked as overlay lowerdirs from the store's layer directories, with an empty
upperdir. What the upperdir holds afterwards is the step's changeset: it is written as one layer
blob and the upperdir itself becomes that layer's directory for the steps above. A config step
changes only the image config. Every step has a cache key; a hit reuses the stored layer (or history
entry) and runs nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..diff import scan_upperdir, write_layer
from ..errors import PybuildError
from ..layout import Descriptor, Digest
from ..run import run_function, run_in_userns
from ..run.layers import layer_dir
from .cache import step_key
from .containerfile import Instruction
from .copier import mkdirs_in_root
from .state import StageState, now
from .stepcontext import StepContext

# what a filesystem step does on a cache miss: change ``upper`` over the stacked ``lowers``
Action = Callable[[Path, list[Path]], None]


# the version of the key's definition: a new one never matches a key made by an older pybuild
KEY_VERSION = 2


def step_key_of(ctx: StepContext, state: StageState, *parts: Any) -> str:
    """A step's cache key: the same on every machine where the step would give the same result.

    What goes in (the README's "The cache key" says it for users): the parent, by its layers'
    diff_ids and the part of its config that a step sees (Env, User, WorkingDir, the shell), the
    stage's platform (os, architecture, variant), the build args in scope, the output format and
    layer compression, the --timestamp / SOURCE_DATE_EPOCH, and ``parts``: the step's expanded
    instruction with what the step itself adds (the content and modes of COPY/ADD sources, the
    mounts that can change the result, ...). Never a path of this machine, a user, an mtime, a
    secret's value or the store."""
    runtime = state.runtime
    parent = {
        "diff_ids": [str(diff_id) for _, diff_id in state.layers],
        "env": list(runtime.get("Env") or []),
        "user": runtime.get("User") or "",
        "workdir": runtime.get("WorkingDir") or "",
        "shell": list(state.shell),
        "platform": [state.config.get(k) or "" for k in ("os", "architecture", "variant")],
        "args": sorted(state.args.items()),
    }
    return step_key("pybuild step", KEY_VERSION, parent, ctx.layer_media_type, ctx.epoch, *parts)


def final_stage(ctx: StepContext, state: StageState) -> bool:
    """Whether ``state`` is the stage the build commits (--target, else the last one)."""
    target = ctx.options.target.lower() if ctx.options.target else None
    named = [s for s in ctx.stages if target is not None and s.name == target]
    final = named[0] if named else (ctx.stages[-1] if ctx.stages else None)
    return final is not None and final.index == state.stage.index


def config_step(ctx: StepContext, state: StageState, inst: Instruction, text: str | None = None) -> None:
    """Record a config-only step in the history (cached, so rebuilds keep its timestamp)."""
    created_by = f"/bin/sh -c #(nop) {text or inst.text}"
    key = step_key_of(ctx, state, "config", created_by)
    entry = history_entry(ctx, key, created_by, empty=True)
    state.history.append(entry)
    state.key = key


def history_entry(ctx: StepContext, key: str, created_by: str, *, empty: bool) -> dict[str, Any]:
    record = None if ctx.options.no_cache else ctx.cache.get(key)
    if record is not None and record.get("layer") is None:
        return dict(record["history"])
    entry: dict[str, Any] = {"created": now(ctx.epoch), "created_by": created_by}
    if empty:
        entry["empty_layer"] = True
    ctx.cache.put(key, {"history": entry, "layer": None})
    return entry


def fs_step(
    ctx: StepContext,
    state: StageState,
    inst: Instruction | None,
    created_by: str,
    key_parts: list[Any],
    action: Action,
) -> None:
    """Run ``action(upper, lowers)`` (or take the cached result) and commit what it changed."""
    pending = list(state.pending_dirs)
    state.pending_dirs.clear()
    media = ctx.layer_media_type
    key = step_key_of(ctx, state, created_by, key_parts, pending)
    record = None if ctx.options.no_cache or not ctx.options.layers else ctx.cache.get(key)
    if record is not None and take_cached(ctx, state, record, key):
        ctx.reporter.info("--> Using cache")
        return
    lowers = ctx.layer_dirs(state.layers)
    with ctx.workspace() as top:
        upper = top / "upper"
        upper.mkdir()
        if pending:
            run_function(lowers, upper, lambda: mkdirs_in_root(pending))
        action(upper, lowers)
        made = commit_upper(ctx, upper, lowers)
        layer = None
        if made is not None:
            digest, size, diff_id = made
            layer = (Descriptor(media, Digest.parse(digest), size), Digest.parse(diff_id))
            final = layer_dir(ctx.store, layer[1])
            if not final.exists():
                with contextlib.suppress(OSError):
                    os.chmod(upper, 0o755)
                    os.rename(upper, final)
    entry: dict[str, Any] = {
        "created": now(ctx.epoch),
        "created_by": created_by or "/bin/sh -c #(nop) ",
    }
    if layer is None:
        entry["empty_layer"] = True
    else:
        state.add_layer(*layer)
    # the directories left for the end of a stage are no instruction of their own: they show in
    # the history only when they made a layer (and a cache hit must do the same)
    in_history = inst is not None or layer is not None
    if in_history:
        state.history.append(entry)
    ctx.cache.put(
        key,
        {
            "history": entry,
            "layer": layer[0].to_dict() if layer else None,
            "diff_id": str(layer[1]) if layer else None,
            "fs": True,
            "in_history": in_history,
        },
    )
    state.key = key


def take_cached(ctx: StepContext, state: StageState, record: dict[str, Any], key: str) -> bool:
    """Apply a cache record to ``state``; False when its layer is gone (then the step runs)."""
    layer = record.get("layer")
    if layer is not None:
        try:
            desc = Descriptor.from_dict(layer, "build cache record")
            diff_id = Digest.parse(str(record.get("diff_id")))
        except PybuildError:
            return False
        if not ctx.cache.has_layer(desc):
            return False
        state.add_layer(desc, diff_id)
        if final_stage(ctx, state):
            ctx.cache.want(desc)  # the image holds it: fetched now, beside the steps that follow
    if record.get("in_history", True):
        state.history.append(dict(record["history"]))
    state.key = key
    return True


def commit_upper(ctx: StepContext, upper: Path, lowers: list[Path]) -> tuple[str, int, str] | None:
    """Write what ``upper`` holds as a layer blob: (digest, size, diff_id), or None when empty."""
    store, compression, epoch = ctx.store, ctx.compression, ctx.epoch

    def produce() -> tuple[str, int, str] | None:
        changes = scan_upperdir(upper, lowers)
        if not changes:
            return None
        with store.blobs.writer() as writer:
            stats = write_layer(changes, upper, writer, compression=compression, source_date_epoch=epoch)
        assert writer.digest is not None
        return str(writer.digest), writer.size, stats.diff_id

    return run_in_userns(produce)
