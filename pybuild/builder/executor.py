"""The build: stages of instructions in, a committed image out.

The executor reads the Containerfile, plans the stages the target needs (``stages``), and runs each
instruction as a step from the table below: one function per instruction, given a
:class:`~pybuild.builder.stepcontext.StepContext` and the stage's state. The cache and the making of
layers are the step engine's (``engine``), outside the steps; the commit is ``commit``'s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

from ..errors import ContainerfileError, PybuildError, StepFailed, warn
from ..layout import ImageStore
from . import configsteps
from .commit import BuildResult, commit
from .containerfile import BuildPlan, Instruction, Stage, expand_in, plan
from .copystep import add_step, copy_step
from .engine import fs_step
from .options import BuildOptions
from .runstep import run_step
from .stages import from_state, global_args, stage_platform, stages_to_build, target_stage
from .state import PROXY_ARGS, StageState
from .stepcontext import Reporter, StepContext, make_context

# one step per instruction: (context, the stage's state, the instruction, the global ARGs)
Step = Callable[[StepContext, StageState, Instruction, Mapping[str, str]], None]
STEPS: dict[str, Step] = {
    "run": run_step,
    "copy": copy_step,
    "add": add_step,
    "arg": configsteps.arg_step,
    "env": configsteps.env_step,
    "label": configsteps.label_step,
    "maintainer": configsteps.maintainer_step,
    "user": configsteps.user_step,
    "workdir": configsteps.workdir_step,
    "volume": configsteps.volume_step,
    "expose": configsteps.expose_step,
    "stopsignal": configsteps.stopsignal_step,
    "cmd": configsteps.cmd_step,
    "entrypoint": configsteps.entrypoint_step,
    "shell": configsteps.shell_step,
    "onbuild": configsteps.onbuild_step,
    "healthcheck": configsteps.healthcheck_step,
}


class Builder:
    """One build of ``options`` into ``store``, for one platform: ``prepare`` plans it, each stage is
    built by ``build_stage`` (in this process or a worker, see ``schedule``), ``finish`` commits.
    ``build`` does all three, one stage after another."""

    def __init__(self, store: ImageStore, options: BuildOptions, reporter: Reporter | None = None) -> None:
        self.ctx = make_context(store, options, reporter or Reporter())
        self.total = 0
        self.count = 0
        self.plan: BuildPlan | None = None
        self.target: Stage | None = None
        self.scope: dict[str, str] = {}
        self.stages: list[Stage] = []  # the stages the target needs, in Containerfile order
        self.first_step: dict[int, int] = {}  # stage index -> the number of steps before it
        self._text: bytes | None = None  # -f -: what standard input gave

    def prepare(self, text: bytes) -> None:
        """Plan the build of the Containerfile ``text``: the target, the scope of FROM lines, the
        stages it needs and where each one's steps start in the count."""
        ctx = self.ctx
        ctx.facts.read_containerfile(text)
        given = ctx.options.containerfile
        label = given.name if given else ctx.file.name
        the_plan = plan(text, label if str(ctx.file) != "-" else "Containerfile")
        ctx.stages = the_plan.stages
        self.plan = the_plan
        self.target = target_stage(the_plan, ctx.options.target)
        self.scope = global_args(ctx, the_plan)
        self.stages = stages_to_build(the_plan, self.target, self.scope)
        count = 0
        for stage in self.stages:
            self.first_step[stage.index] = count
            count += 1 + len(stage.instructions)
        self.total = count
        ctx.scratch.mkdir(parents=True, exist_ok=True)

    def build_stage(self, stage: Stage) -> StageState:
        """Build ``stage`` (the stages it reads are in ``ctx.results``); its steps are numbered as
        in a build of one stage after another."""
        assert self.plan is not None
        self.count = self.first_step[stage.index]
        return self._build_stage(self.plan, stage, self.scope)

    def warn_unused(self, used: set[str]) -> None:
        unused = sorted(set(self.ctx.options.build_args) - used - set(PROXY_ARGS))
        if unused:
            warn(f"one or more build args were not consumed: {unused}")

    def finish(self, warnings: list[str]) -> BuildResult:
        """Commit the target stage's image."""
        assert self.target is not None
        final = self.ctx.results[self.target.index]
        self.ctx.cache.fetch(final.layers)  # the layers a shared cache gave, for the image
        return commit(self.ctx, final, warnings)

    def read_containerfile(self) -> bytes:
        file = self.ctx.file
        if str(file) == "-":  # -f -: the Containerfile comes on standard input (read once)
            if self._text is None:
                self._text = sys.stdin.buffer.read()
            return self._text
        try:
            return file.read_bytes()
        except OSError as exc:
            raise ContainerfileError(f"cannot read: {exc.strerror or exc}", file=str(file)) from None

    def _announce(self, inst: Instruction) -> None:
        self.count += 1
        self.ctx.reporter.step(f"STEP {self.count}/{self.total}: {inst.text}")

    def _build_stage(self, the_plan: BuildPlan, stage: Stage, scope: Mapping[str, str]) -> StageState:
        ctx = self.ctx
        inst = stage.from_instruction
        self._announce(inst)
        base_text = expand_in(inst, stage.base, scope)
        if not base_text:
            raise inst.error("FROM names no image (an ARG in it expanded to nothing)")
        state = from_state(ctx, the_plan, stage, base_text, inst, stage_platform(stage, scope))
        triggers = list(state.runtime.pop("OnBuild", None) or [])
        for trigger in triggers:
            self._onbuild(state, trigger, inst)
        for inst in stage.instructions:
            self._announce(inst)
            dispatch(ctx, state, inst, scope)
        if state.pending_dirs:
            fs_step(ctx, state, None, "", [], lambda upper, lowers: None)
        return state

    def _onbuild(self, state: StageState, trigger: str, from_inst: Instruction) -> None:
        try:
            sub = plan(f"FROM scratch\n{trigger}\n", from_inst.file)
        except ContainerfileError as exc:
            raise from_inst.error(f"ONBUILD trigger {trigger!r} of the base image: {exc.reason}") from None
        for inst in sub.stages[0].instructions:
            inst.node.start_line = inst.node.end_line = from_inst.line
            self.ctx.reporter.step(f"ONBUILD {trigger}")
            dispatch(self.ctx, state, inst, {})


def dispatch(ctx: StepContext, state: StageState, inst: Instruction, scope: Mapping[str, str]) -> None:
    """Run ``inst``'s step; an error that names no Containerfile line gets this one."""
    step = STEPS.get(inst.keyword)
    if step is None:  # pragma: no cover - plan() refuses unknown instructions
        raise inst.error(f'unknown instruction "{inst.keyword.upper()}"')
    try:
        step(ctx, state, inst, scope)
    except ContainerfileError:
        raise
    except StepFailed:
        raise
    except PybuildError as exc:
        raise type(exc)(f"{inst.file}:{inst.line}: {exc.message}", hints=exc.hints) from exc


__all__ = ["BuildOptions", "BuildResult", "Builder", "Reporter", "dispatch"]
