"""Planning a build: which stages the target needs (FROM, COPY --from and RUN --mount from= name
earlier stages), the scope of FROM lines (global ARGs and the automatic platform ARGs), and each
stage's starting state from its FROM: an earlier stage, scratch or a base image."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..bundle.process import DEFAULT_PATH
from ..errors import PybuildError, UsageError
from ..layout import copy_blobs, host_platform, load_image, parse_platform
from .cache import step_key
from .containerfile import BuildPlan, Instruction, Stage, expand_in, needed_stages, parse_arg
from .images import base_image, format_media_type
from .state import StageState, check_base_platform, platform_text, with_variant
from .stepcontext import StepContext


def target_stage(the_plan: BuildPlan, target: str | None) -> Stage:
    """The stage --target names, or the last one."""
    if target is None:
        return the_plan.stages[-1]
    for s in the_plan.stages:
        if s.name == target.lower():
            return s
    raise UsageError(f"--target {target!r}: no stage of that name in {the_plan.file}")


def stage_ref(the_plan: BuildPlan, text: str, before: int) -> Stage | None:
    """The stage ``text`` names (by name or index) among the stages before index ``before``."""
    for s in the_plan.stages[:before]:
        if s.name == text.lower():
            return s
    if text.isdigit() and int(text) < before:
        return the_plan.stages[int(text)]
    return None


def dependencies(the_plan: BuildPlan, stage: Stage, global_args: Mapping[str, str]) -> list[int]:
    """The earlier stages ``stage`` reads: its FROM, COPY --from and RUN --mount from=."""
    out = []
    base_text = expand_in(stage.from_instruction, stage.base, global_args)
    base = stage_ref(the_plan, base_text, stage.index)
    if base is not None:
        out.append(base.index)
    for inst in stage.instructions:
        for written in references(inst):
            ref = expand_in(inst, written, global_args)  # ARGs in a stage inherit the global values
            dep = stage_ref(the_plan, ref, stage.index)
            if dep is not None:
                out.append(dep.index)
    return out


def references(inst: Instruction) -> list[str]:
    """What COPY --from and RUN --mount from= name in ``inst`` (a stage or an image), as written."""
    refs = []
    if inst.keyword in ("copy", "add") and inst.flag("from"):
        refs.append(inst.flag("from") or "")
    for m in inst.flags.get("mount", []):
        opts = dict(p.partition("=")[::2] for p in m.split(","))
        if opts.get("from"):
            refs.append(opts["from"])
    return refs


def stages_to_build(the_plan: BuildPlan, target: Stage, global_args: Mapping[str, str]) -> list[Stage]:
    """The stages the target needs, in Containerfile order."""
    deps = {s.index: dependencies(the_plan, s, global_args) for s in the_plan.stages}
    needed = needed_stages(the_plan, target.index, deps)
    return [s for s in the_plan.stages if s.index in needed]


def global_args(ctx: StepContext, the_plan: BuildPlan) -> dict[str, str]:
    """The scope of FROM lines (and what `ARG NAME` in a stage inherits): the automatic platform
    ARGs, always defined there as in BuildKit, under the ARGs declared before the first FROM.
    Inside a stage, a platform ARG is visible only after `ARG NAME` (see configsteps.arg_step);
    they are kept in ``ctx.automatic``."""
    target, host = ctx.platform, host_platform()
    values = {
        "TARGETPLATFORM": platform_text(target),
        "TARGETOS": target.os,
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant or "",
        "BUILDPLATFORM": platform_text(host),
        "BUILDOS": host.os,
        "BUILDARCH": host.architecture,
        "BUILDVARIANT": host.variant or "",
    }
    scope: dict[str, str] = {}
    for inst in the_plan.global_args:
        for name, default in parse_arg(inst, {**values, **scope}):
            ctx.used_args.add(name)
            if name in ctx.options.build_args:
                scope[name] = ctx.options.build_args[name]
            elif default is not None:
                scope[name] = default
            elif name in values:
                scope[name] = values[name]
    ctx.automatic = values
    return {**values, **scope}


def stage_platform(stage: Stage, scope: Mapping[str, str]) -> str | None:
    """FROM --platform=..., expanded and checked."""
    if stage.platform is None:
        return None
    inst = stage.from_instruction
    text = expand_in(inst, stage.platform, scope)
    try:
        parse_platform(text)
    except PybuildError as exc:
        raise inst.error(f"FROM --platform={stage.platform}: {exc}") from None
    return text


def from_state(
    ctx: StepContext, the_plan: BuildPlan, stage: Stage, base: str, inst: Instruction, platform: str | None
) -> StageState:
    """A stage's state from its FROM: an earlier stage's, scratch's, or the base image's."""
    ref = stage_ref(the_plan, base, stage.index)
    if ref is not None:
        prev = ctx.results[ref.index]
        return StageState(
            stage,
            list(prev.layers),
            copy.deepcopy(prev.config),
            step_key("stage", prev.key),
            shell=list(prev.shell),
        )
    if base == "scratch":
        chosen = parse_platform(platform) if platform else ctx.platform
        config: dict[str, Any] = {
            "architecture": chosen.architecture,
            "os": chosen.os,
            # as BuildKit and buildah give a scratch image: the default PATH in its Env
            "config": {"Env": [f"PATH={DEFAULT_PATH}"]},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }
        if chosen.variant:
            config["variant"] = chosen.variant
        return StageState(stage, [], config, step_key("scratch", ctx.docker))
    # without FROM --platform, the platform asked for (--platform, or each of a list), else the host's
    platform = platform or ctx.options.platform
    layout, desc = base_image(ctx, base, inst, platform)
    image = load_image(layout, desc, parse_platform(platform) if platform else None)
    if platform is not None:
        check_base_platform(image.config.to_dict(), parse_platform(platform), f"FROM {base}")
    if layout.root != ctx.store.root:
        with ctx.store.writing():
            copy_blobs(layout, ctx.store, image.descriptor)
    layers = [
        (format_media_type(d, ctx.docker), diff_id)
        for d, diff_id in zip(image.layers, image.config.diff_ids, strict=True)
    ]
    config = copy.deepcopy(image.config.to_dict())
    if platform is not None:
        with_variant(config, parse_platform(platform))
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    config.setdefault("history", [])
    state = StageState(stage, layers, config, step_key("image", str(image.descriptor.digest), ctx.docker))
    shell = state.runtime.get("Shell")
    if isinstance(shell, list) and shell:
        state.shell = [str(s) for s in shell]
    return state
