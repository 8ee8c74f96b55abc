"""The config-only instructions: each changes the image config (and the ARGs or shell in scope) and
adds an empty_layer history entry; nothing runs and no layer is made. ARG, ENV, LABEL, MAINTAINER,
USER, WORKDIR, VOLUME, EXPOSE, STOPSIGNAL, CMD, ENTRYPOINT, SHELL, ONBUILD and HEALTHCHECK.
(WORKDIR and VOLUME also leave directories for the next filesystem step to make.)"""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Mapping
from typing import Any

from .containerfile import Instruction, expand_in, parse_arg
from .engine import config_step
from .options import go_duration
from .state import StageState
from .stepcontext import StepContext


def parse_duration(text: str, inst: Instruction) -> int:
    """A Go duration (``1m30s``, ``500ms``) in nanoseconds."""
    ns = go_duration(text)
    if ns is None:
        raise inst.error(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m")
    return ns


def arg_step(ctx: StepContext, state: StageState, inst: Instruction, global_args: Mapping[str, str]) -> None:
    for name, default in parse_arg(inst, state.scope()):
        ctx.used_args.add(name)
        if name in ctx.options.build_args:
            state.args[name] = ctx.options.build_args[name]
        elif default is not None:
            state.args[name] = default
        elif name in global_args:
            state.args[name] = global_args[name]
        elif name in ctx.automatic:
            state.args[name] = ctx.automatic[name]
    config_step(ctx, state, inst)


def _pairs(state: StageState, inst: Instruction) -> list[tuple[str, str]]:
    scope = state.scope()
    out = []
    args = inst.args
    # the parser gives BuildKit's chain: key, value, separator ("=" or "" for `ENV key value`)
    for i in range(0, len(args) - 2, 3):
        key = expand_in(inst, args[i], scope)
        if not key:
            raise inst.error(f"{inst.keyword.upper()} names an empty key")
        out.append((key, expand_in(inst, args[i + 1], scope)))
    return out


def env_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    pairs = _pairs(state, inst)
    for key, value in pairs:
        state.set_env(key, value)
    config_step(ctx, state, inst, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))


def label_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    pairs = _pairs(state, inst)
    labels = dict(state.runtime.get("Labels") or {})
    labels.update(pairs)
    state.runtime["Labels"] = labels
    config_step(ctx, state, inst, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))


def maintainer_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    state.config["author"] = expand_in(inst, " ".join(inst.args), state.scope())
    config_step(ctx, state, inst)


def user_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    state.runtime["User"] = expand_in(inst, inst.args[0], state.scope())
    config_step(ctx, state, inst, f"USER {state.runtime['User']}")


def workdir_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    path = expand_in(inst, inst.args[0], state.scope())
    if not path:
        raise inst.error("WORKDIR needs a path")
    new = os.path.normpath(os.path.join(state.workdir, path))
    new = "/" + new.lstrip("/")
    state.runtime["WorkingDir"] = new
    if new not in state.pending_dirs:
        state.pending_dirs.append(new)
    config_step(ctx, state, inst, f"WORKDIR {new}")


def volume_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    scope = state.scope()
    volumes = dict(state.runtime.get("Volumes") or {})
    for word in inst.args:
        path = expand_in(inst, word, scope)
        if not path:
            raise inst.error("VOLUME names an empty path")
        path = "/" + os.path.normpath(os.path.join(state.workdir, path)).lstrip("/")
        volumes[path] = {}
        if path not in state.pending_dirs:
            state.pending_dirs.append(path)
    state.runtime["Volumes"] = volumes
    config_step(ctx, state, inst)


def expose_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    ports = dict(state.runtime.get("ExposedPorts") or {})
    scope = state.scope()
    for word in inst.args:
        for value in expand_in(inst, word, scope).split():
            port, _sep, proto = value.partition("/")
            proto = proto.lower() or "tcp"
            first, _sep, last = port.partition("-")
            if not first.isdigit() or (last and not last.isdigit()) or proto not in ("tcp", "udp", "sctp"):
                raise inst.error(f"EXPOSE {value!r}: expected PORT[-PORT][/tcp|udp|sctp]")
            for n in range(int(first), int(last or first) + 1):
                ports[f"{n}/{proto}"] = {}
    state.runtime["ExposedPorts"] = ports
    config_step(ctx, state, inst)


def stopsignal_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    value = expand_in(inst, inst.args[0], state.scope())
    name = value.upper()
    valid = (
        value.isdigit() or name in _signal.Signals.__members__ or f"SIG{name}" in _signal.Signals.__members__
    )
    if not valid:
        raise inst.error(f"STOPSIGNAL {value!r} is not a signal")
    state.runtime["StopSignal"] = value
    config_step(ctx, state, inst)


def _command(state: StageState, inst: Instruction) -> list[str]:
    if inst.node.json:
        return list(inst.args)
    return [*state.shell, " ".join(inst.args)] if inst.args else []


def cmd_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    state.runtime["Cmd"] = _command(state, inst)
    state.cmd_set = True
    config_step(ctx, state, inst)


def entrypoint_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    state.runtime["Entrypoint"] = _command(state, inst)
    if not state.cmd_set:
        state.runtime.pop("Cmd", None)  # an inherited CMD does not survive a new ENTRYPOINT
    config_step(ctx, state, inst)


def shell_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    state.shell = list(inst.args)
    state.runtime["Shell"] = list(inst.args)
    config_step(ctx, state, inst)


def onbuild_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    trigger = " ".join(inst.args).strip()
    state.runtime["OnBuild"] = [*(state.runtime.get("OnBuild") or []), trigger]
    config_step(ctx, state, inst)


def healthcheck_step(ctx: StepContext, state: StageState, inst: Instruction, _: Mapping[str, str]) -> None:
    args = inst.args
    kind = args[0].upper() if args else ""
    if kind == "NONE":
        if len(args) > 1:
            raise inst.error("HEALTHCHECK NONE takes no arguments")
        state.runtime["Healthcheck"] = {"Test": ["NONE"]}
        config_step(ctx, state, inst)
        return
    if kind != "CMD" or len(args) < 2:
        raise inst.error("HEALTHCHECK needs NONE or CMD COMMAND")
    rest = args[1:]
    test = ["CMD", *rest] if inst.node.json else ["CMD-SHELL", " ".join(rest)]
    check: dict[str, Any] = {"Test": test}
    for flag, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ):
        value = inst.flag(flag)
        if value is not None:
            ns = parse_duration(value, inst)
            if ns and ns < 1_000_000:
                raise inst.error(f"HEALTHCHECK --{flag}={value}: must be at least 1ms")
            check[key] = ns
    retries = inst.flag("retries")
    if retries is not None:
        if not retries.isdigit():
            raise inst.error(f"HEALTHCHECK --retries={retries}: expected a whole number")
        check["Retries"] = int(retries)
    state.runtime["Healthcheck"] = check
    config_step(ctx, state, inst)
