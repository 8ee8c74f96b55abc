"""RUN and its mounts: the command runs in a rootless container over the layers below (see
``engine``), with the bind, cache, tmpfs and secret mounts ``mounts`` prepares; a one-heredoc script
with a #! line runs as that script."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..bundle.process import image_process
from ..errors import ContainerfileError, StepFailed
from ..run import RunSpec, run_container
from ..run.layers import remove_tree
from .containerfile import Instruction
from .engine import fs_step
from .ignore import IgnoreRules
from .images import source_layers
from .mounts import RunMount, RunMounts, check_required, parse_mount
from .platforms import check_runnable
from .sources import sources_digest
from .state import StageState
from .stepcontext import StepContext


def run_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    """RUN: the command in a rootless container over the layers below, with its mounts."""
    args, script = run_args(state, inst)
    if not args:
        raise inst.error("RUN needs a command")
    scope_args = {k: v for k, v in state.args.items() if k not in state.env}
    network = inst.flag("network") or ctx.options.network
    if network == "default":
        network = ctx.options.network
    if network not in ("host", "none"):
        raise inst.error(f"RUN --network={network}: expected default, host or none")
    scope, workdir = state.scope(), state.workdir
    mounts = [
        parse_mount(inst, m, scope, workdir, ctx.context, lambda ref: source_layers(ctx, inst, ref))
        for m in inst.flags.get("mount", [])
    ]
    check_required(inst, mounts, ctx.options.secrets)
    heredocs = [(h.name, h.content) for h in inst.node.heredocs]
    # like buildah: the shell form shows the shell and the command, the exec form the argv;
    # build args in scope come first as `|N K=V ...` (their values are part of the step)
    created_by = shlex.join(args) if inst.node.json else " ".join([*state.shell, " ".join(inst.args)])
    if scope_args:
        pairs = " ".join(f"{k}={v}" for k, v in sorted(scope_args.items()))
        created_by = f"|{len(scope_args)} {pairs} {created_by}"
    key_parts = [
        "run",
        args,
        heredocs,
        [m.spec for m in mounts],  # never a secret's value
        network,
        state.runtime.get("User"),
        state.workdir,
        bound_content(ctx, inst, mounts),
        [v.key() for v in ctx.options.volumes],  # --volume: the targets, never the host paths
    ]

    def action(upper: Path, lowers: list[Path]) -> None:
        check_runnable(state, inst)  # a foreign platform's binaries: emulation, or the fix
        with contextlib.ExitStack() as stack:
            prepared = RunMounts(ctx.store, ctx.scratch, ctx.layer_dirs, ctx.options.secrets)
            prepared.hold_caches(mounts, stack)  # for the whole RUN, as their sharing= says
            for m in mounts:
                prepared.add(m, stack, inst)
            binds = prepared.binds + [(str(v.host), v.target, v.readonly) for v in ctx.options.volumes]
            run_args = list(args)
            if script is not None:
                folder = Path(tempfile.mkdtemp(prefix="heredoc-", dir=ctx.scratch))
                stack.callback(remove_tree, folder)
                path = folder / "script"
                path.write_text(script)
                os.chmod(path, 0o755)
                os.chmod(folder, 0o755)
                binds.append((str(path), "/dev/pipes/script", True))
                run_args = ["/dev/pipes/script"]
            # the image's process (conversion.md), as unpack and `pybuild run` read it: the stage's
            # Env (PATH by default), the ARGs in scope, then what the mounts set; WorkingDir, User
            process = image_process(state.runtime, command=run_args, env={**scope_args, **prepared.env})
            result = run_container(
                RunSpec(
                    lowerdirs=lowers,
                    upperdir=upper,
                    args=list(process.args),
                    env=list(process.env),
                    cwd=process.cwd,
                    user=process.user,
                    network=network,
                    mounts=binds,
                    views=prepared.views,
                    files=prepared.files,
                    tmpfs=prepared.tmpfs,
                )
            )
        if result.exit_status != 0:
            raise StepFailed(
                f"{inst.file}:{inst.line}: {inst.text}: the command exited with status {result.exit_status}",
                exit_status=result.exit_status,
            )

    fs_step(ctx, state, inst, created_by, key_parts, action)


def bound_content(ctx: StepContext, inst: Instruction, mounts: list[RunMount]) -> list[str]:
    """The content digest of each bind mount from the build context (what the command reads there),
    for the step's key: the path names only what is bound, its content what the step sees."""
    digests = []
    for mount in mounts:
        if mount.kind == "bind" and mount.layers is None:
            rel = os.path.relpath(mount.source, ctx.context)
            try:
                digests.append(
                    sources_digest(ctx.context, ["" if rel == "." else rel], IgnoreRules((), None))
                )
            except ContainerfileError as exc:
                raise inst.error(f"RUN --mount=type=bind: {exc.reason}") from None
    return digests


def run_args(state: StageState, inst: Instruction) -> tuple[list[str], str | None]:
    """The argv for RUN, and the script text when the command is one heredoc with a #! line."""
    heredocs = inst.node.heredocs
    if inst.node.json:
        return list(inst.args), None
    command = " ".join(inst.args)
    if heredocs:
        only = re.fullmatch(r"\s*<<(-?)(['\"]?)([A-Za-z0-9_.-]+)\2\s*", command)
        if only and len(heredocs) == 1:
            body = heredocs[0].content
            if heredocs[0].chomp:
                body = "".join(line.lstrip("\t") for line in body.splitlines(keepends=True))
            if body.startswith("#!"):
                return ["/dev/pipes/script"], body
            return [*state.shell, body], None
        text = command
        for doc in heredocs:
            body = doc.content if doc.content.endswith("\n") or not doc.content else doc.content + "\n"
            text += "\n" + body + doc.name
        return [*state.shell, text], None
    return ([*state.shell, command] if command.strip() else []), None
