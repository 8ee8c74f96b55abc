"""Platforms in a build: the platform each image is for (its config's os, architecture, variant),
a RUN step's check that this machine can run its stage's binaries (natively, or emulated), the
platforms of base images (``--all-platforms``), and which stages every platform shares (a stage
``FROM --platform=$BUILDPLATFORM`` that does not read the target's ARGs is built once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ImageNotFound, PybuildError, UsageError
from ..layout import Descriptor, Layout, Platform, mediatype, read_config, read_index, read_manifest
from ..run.emulation import require_emulation
from .containerfile import BuildPlan, Instruction, Stage, expand_in
from .stages import references, stage_ref
from .state import StageState, config_platform, platform_text


def check_runnable(state: StageState, inst: Instruction) -> None:
    """Before a RUN step runs: this machine runs the stage's binaries, natively or under emulation
    registered in binfmt_misc; else one error naming the fix."""
    platform = config_platform(state.config)
    require_emulation(platform.os, platform.architecture, platform.variant, inst.text)


def _entry_platforms(layout: Layout, desc: Descriptor, depth: int = 0) -> list[Platform]:
    if desc.media_type in mediatype.MANIFESTS:
        manifest = read_manifest(layout, desc)
        return [config_platform(read_config(layout, manifest.config).to_dict())]
    if depth > 4:
        return []
    out: list[Platform] = []
    for entry in read_index(layout, desc).manifests:
        if entry.platform is not None and entry.platform.os != "unknown":  # (attestations: unknown/unknown)
            out.append(entry.platform)
        elif entry.platform is None and entry.media_type in mediatype.INDEXES:
            out += _entry_platforms(layout, entry, depth + 1)
    return out


def image_platforms(layout: Layout, desc: Descriptor) -> list[Platform]:
    """The platforms an image (one) or an index (each of its images) is for."""
    return _entry_platforms(layout, desc)


def common_platforms(offers: Sequence[tuple[str, list[Platform]]]) -> list[str]:
    """The platforms (as OS/ARCH[/VARIANT]) every base offers, in the first one's order."""
    if not offers:
        raise UsageError(
            "--all-platforms: no stage starts from an image whose platforms can be read "
            "(stages FROM scratch or FROM --platform=... are not inspected)"
        )
    texts = [[platform_text(p) for p in platforms] for _, platforms in offers]
    common = [t for t in dict.fromkeys(texts[0]) if all(t in other for other in texts[1:])]
    if not common:
        named = "; ".join(
            f"{base}: {', '.join(t) or 'none'}" for (base, _), t in zip(offers, texts, strict=True)
        )
        raise UsageError(f"--all-platforms: the base images have no platform in common ({named})")
    return common


def inspected_bases(
    the_plan: BuildPlan, stages: Sequence[Stage], scope: Mapping[str, str]
) -> list[tuple[Stage, str]]:
    """The stages whose base image decides the platforms: FROM an image (not scratch, not another
    stage), without --platform; with the base as the global ARGs expand it."""
    names = {s.name for s in the_plan.stages if s.name}
    out = []
    for stage in stages:
        if stage.platform is not None:
            continue
        base = expand_in(stage.from_instruction, stage.base, scope)
        if base == "scratch" or base.lower() in names or (base.isdigit() and int(base) < stage.index):
            continue
        out.append((stage, base))
    return out


def base_offers(layout: Layout, desc: Descriptor, base: str) -> tuple[str, list[Platform]]:
    try:
        return base, image_platforms(layout, desc)
    except PybuildError as exc:
        raise ImageNotFound(f"--all-platforms: cannot read the platforms of {base}: {exc}") from None


class Sharing:
    """Which stages are the same build for every target platform: those whose FROM names a fixed
    platform (or a shared stage), whose ARGs have the same values for every target, and which read
    only shared stages (never an image, whose platform is the target's)."""

    def __init__(
        self, the_plan: BuildPlan, views: Sequence[tuple[Mapping[str, str], Mapping[str, str], list[Stage]]]
    ) -> None:
        # each view: (the FROM scope, the automatic platform ARGs, the stages built) of one platform
        self.plan = the_plan
        self.shared: set[int] = set()
        if len(views) < 2:
            return
        stage_sets = [{s.index for s in stages} for _, _, stages in views]
        for stage in the_plan.stages:
            if not all(stage.index in found for found in stage_sets):
                continue
            signatures = [self._signature(stage, scope, automatic) for scope, automatic, _ in views]
            if signatures[0] is not None and all(sig == signatures[0] for sig in signatures):
                self.shared.add(stage.index)

    def _signature(self, stage: Stage, scope: Mapping[str, str], automatic: Mapping[str, str]) -> Any:
        inst = stage.from_instruction
        base = expand_in(inst, stage.base, scope)
        ref = stage_ref(self.plan, base, stage.index)
        if ref is not None:
            if ref.index not in self.shared:
                return None
            platform = f"stage {ref.index}"
        elif stage.platform is None:
            return None  # the target's platform decides the base
        else:
            platform = expand_in(inst, stage.platform, scope)
        args: list[Any] = []
        for step in stage.instructions:
            if step.keyword == "arg":
                for word in step.args:
                    name = word.partition("=")[0]
                    args.append((name, scope.get(name), automatic.get(name)))
            for written in references(step):
                target = stage_ref(self.plan, expand_in(step, written, scope), stage.index)
                if target is None or target.index not in self.shared:
                    return None
        return (base, platform, args)
