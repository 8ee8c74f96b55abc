"""The build executor: stages of instructions in, committed images out.

Each filesystem step (RUN, COPY, ADD, and the directories WORKDIR and VOLUME ask for) runs over the
layers below, stacked as overlay lowerdirs from the store's layer directories, with an empty
upperdir. What the upperdir holds afterwards is the step's changeset: it is written as one layer
blob and the upperdir itself becomes that layer's directory for the steps above. Config steps change
only the image config. Every step has a cache key; a hit reuses the stored layer and runs nothing.
"""

from __future__ import annotations

import contextlib
import copy
import glob  # at module level: _export runs after the root has changed, when imports fail
import os
import re
import shlex
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diff import scan_upperdir, write_layer
from ..errors import ContainerfileError, ImageNotFound, PybuildError, StepFailed, UsageError
from ..layout import (
    Descriptor,
    Digest,
    ImageConfig,
    ImageStore,
    Layout,
    Platform,
    commit_image,
    copy_blobs,
    host_platform,
    load_image,
    mediatype,
    parse_platform,
    parse_reference,
)
from ..layout.imagestore import UNTAGGED
from ..run import RunSpec, isolation, keep_out, run_container, run_function, run_in_userns
from ..run.layers import layer_dir, layer_dirs_of, remove_tree
from .cache import BuildCache, step_key
from .containerfile import BuildPlan, Instruction, Stage, expand_in, find_containerfile, parse_arg, plan
from .copier import CopyRequest, CopySource, copy_into_root, mkdirs_in_root
from .ignore import IgnoreRules, walk_context
from .mounts import RunMounts, check_required, parse_mount
from .shell import Lexer
from .sources import match_all_sources, sources_digest

if TYPE_CHECKING:
    from ..remote import RegistryOptions

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# args every build knows without an ARG (their values reach RUN only when declared)
PROXY_ARGS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)


@dataclass
class BuildOptions:
    context: Path
    containerfile: Path | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    format: str = "oci"
    # None: uncompressed in the store (as buildah keeps its layers); oci: targets and later pushes
    # gzip uncompressed layers on the way out
    compression: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    timestamp: int | None = None
    network: str = "host"
    # id -> a file to read, or the value itself (--secret id=ID,env=VAR)
    secrets: dict[str, Path | bytes] = field(default_factory=dict)
    ignorefile: Path | None = None
    pull: str = "missing"
    platform: str | None = None
    layers: bool = True
    # how base images are pulled: --creds, --tls-verify, --cert-dir, --authfile
    registry: RegistryOptions | None = None
    # how steps run: auto (None), native, fuse, copy or inplace (run/modes.py)
    isolation: str | None = None


@dataclass
class BuildResult:
    descriptor: Descriptor
    image_id: str
    tags: list[str]
    warnings: list[str]


class Reporter:
    """Where the executor says what it does. The CLI prints; tests may collect."""

    def step(self, text: str) -> None:
        pass

    def info(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        pass


@dataclass
class StageState:
    stage: Stage
    layers: list[tuple[Descriptor, Digest]]
    config: dict[str, Any]
    key: str
    args: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    pending_dirs: list[str] = field(default_factory=list)
    cmd_set: bool = False

    @property
    def runtime(self) -> dict[str, Any]:
        rt = self.config.get("config")
        if not isinstance(rt, dict):
            rt = {}
            self.config["config"] = rt
        return rt

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.runtime.get("Env") or []:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def set_env(self, key: str, value: str) -> None:
        env = [e for e in self.runtime.get("Env") or [] if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
        self.runtime["Env"] = env

    def scope(self) -> dict[str, str]:
        """Variables for expansion: ARGs in scope, then ENV (which wins)."""
        return {**self.args, **self.env}

    @property
    def workdir(self) -> str:
        return str(self.runtime.get("WorkingDir") or "/")


def _now(epoch: int | None) -> str:
    if epoch is not None:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _platform_text(platform: Platform) -> str:
    """OS/ARCH[/VARIANT], as BuildKit formats TARGETPLATFORM and BUILDPLATFORM."""
    return f"{platform.os}/{platform.architecture}" + (f"/{platform.variant}" if platform.variant else "")


def _media_type(desc: Descriptor, docker: bool) -> Descriptor:
    """The layer's descriptor with the media type of the output format (same bytes)."""
    compression = mediatype.layer_compression(desc.media_type)
    if compression is None:
        return desc
    if docker and compression == "zstd":
        raise UsageError(
            f"layer {desc.digest} is zstd-compressed: Docker-format images have gzip or plain tar layers",
            hints=["build with --format oci"],
        )
    wanted = mediatype.layer_media_type(compression, docker=docker)
    if wanted == desc.media_type:
        return desc
    return Descriptor(wanted, desc.digest, desc.size, annotations=desc.annotations)


def parse_duration(text: str, inst: Instruction) -> int:
    """A Go duration (``1m30s``, ``500ms``) in nanoseconds."""
    units = {
        "ns": 1,
        "us": 1_000,
        "µs": 1_000,
        "ms": 1_000_000,
        "s": 10**9,
        "m": 60 * 10**9,
        "h": 3600 * 10**9,
    }
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise inst.error(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m")
    return int(sum(float(n) * units[u] for n, u in parts))


class Builder:
    def __init__(self, store: ImageStore, options: BuildOptions, reporter: Reporter | None = None) -> None:
        self.store = store
        self.options = options
        self.reporter = reporter or Reporter()
        self.cache = BuildCache(store)
        self.docker = options.format == "docker"
        self.compression = options.compression or "none"
        self.epoch = options.timestamp
        if self.epoch is None and os.environ.get("SOURCE_DATE_EPOCH", "").strip():
            text = os.environ["SOURCE_DATE_EPOCH"].strip()
            if not text.isdigit():
                raise UsageError(f"SOURCE_DATE_EPOCH {text!r} is not a number of seconds")
            self.epoch = int(text)
        self.context = Path(options.context).absolute()
        if not self.context.is_dir():
            raise UsageError(f"build context {options.context} is not a directory")
        self.file = find_containerfile(self.context, options.containerfile)
        if options.ignorefile is not None and not Path(options.ignorefile).is_file():
            raise UsageError(f"ignore file {options.ignorefile}: no such file")
        self.platform = parse_platform(options.platform) if options.platform else host_platform()
        self.warnings: list[str] = []
        self.used_args: set[str] = set()
        self.stage_results: dict[int, StageState] = {}
        self.stages: list[Stage] = []
        self._rules: IgnoreRules | None = None
        self.scratch = store.private.workspaces
        self.total = 0
        self.count = 0

    # --- entry ------------------------------------------------------------------------------
    def build(self) -> BuildResult:
        text = self._read_containerfile()
        label = self.options.containerfile.name if self.options.containerfile else self.file.name
        the_plan = plan(text, label if str(self.file) != "-" else "Containerfile")
        self.stages = the_plan.stages
        for w in the_plan.warnings:
            self.warn(w)
        target = self._target(the_plan)
        global_args = self._global_args(the_plan)
        deps = {s.index: self._dependencies(the_plan, s, global_args) for s in the_plan.stages}
        needed: set[int] = set()
        stack = [target.index]
        while stack:
            i = stack.pop()
            if i not in needed:
                needed.add(i)
                stack.extend(deps[i])
        stages = [s for s in the_plan.stages if s.index in needed]
        self.total = sum(1 + len(s.instructions) for s in stages)
        self.scratch.mkdir(parents=True, exist_ok=True)
        final: StageState | None = None
        for stage in stages:
            final = self._build_stage(the_plan, stage, global_args)
            self.stage_results[stage.index] = final
        assert final is not None
        unused = sorted(set(self.options.build_args) - self.used_args - set(PROXY_ARGS))
        if unused:
            self.warn(f"one or more build args were not consumed: {unused}")
        return self._commit(final)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        self.reporter.warn(text)

    def _read_containerfile(self) -> bytes:
        if str(self.file) == "-":  # -f -: the Containerfile comes on standard input
            import sys

            return sys.stdin.buffer.read()
        try:
            return self.file.read_bytes()
        except OSError as exc:
            raise ContainerfileError(f"cannot read: {exc.strerror or exc}", file=str(self.file)) from None

    @property
    def rules(self) -> IgnoreRules:
        if self._rules is None:
            self._rules = IgnoreRules.load(self.context, self.file, self.options.ignorefile)
        return self._rules

    def _target(self, the_plan: BuildPlan) -> Stage:
        if self.options.target is None:
            return the_plan.stages[-1]
        for s in the_plan.stages:
            if s.name == self.options.target.lower():
                return s
        raise UsageError(f"--target {self.options.target!r}: no stage of that name in {the_plan.file}")

    def _stage_ref(self, the_plan: BuildPlan, text: str, before: int) -> Stage | None:
        for s in the_plan.stages[:before]:
            if s.name == text.lower():
                return s
        if text.isdigit() and int(text) < before:
            return the_plan.stages[int(text)]
        return None

    def _dependencies(self, the_plan: BuildPlan, stage: Stage, global_args: dict[str, str]) -> list[int]:
        out = []
        base_text = expand_in(stage.from_instruction, stage.base, global_args)
        base = self._stage_ref(the_plan, base_text, stage.index)
        if base is not None:
            out.append(base.index)
        for inst in stage.instructions:
            refs = []
            if inst.keyword in ("copy", "add") and inst.flag("from"):
                refs.append(inst.flag("from") or "")
            for m in inst.flags.get("mount", []):
                opts = dict(p.partition("=")[::2] for p in m.split(","))
                if opts.get("from"):
                    refs.append(opts["from"])
            for ref in refs:
                ref = expand_in(inst, ref, global_args)  # ARGs in a stage inherit the global values
                dep = self._stage_ref(the_plan, ref, stage.index)
                if dep is not None:
                    out.append(dep.index)
        return out

    def _global_args(self, the_plan: BuildPlan) -> dict[str, str]:
        """The scope of FROM lines (and what `ARG NAME` in a stage inherits): the automatic platform
        ARGs, always defined there as in BuildKit, under the ARGs declared before the first FROM.
        Inside a stage, a platform ARG is visible only after `ARG NAME` (see _do_arg)."""
        target, host = self.platform, host_platform()
        values = {
            "TARGETPLATFORM": _platform_text(target),
            "TARGETOS": target.os,
            "TARGETARCH": target.architecture,
            "TARGETVARIANT": target.variant or "",
            "BUILDPLATFORM": _platform_text(host),
            "BUILDOS": host.os,
            "BUILDARCH": host.architecture,
            "BUILDVARIANT": host.variant or "",
        }
        scope: dict[str, str] = {}
        for inst in the_plan.global_args:
            for name, default in parse_arg(inst, {**values, **scope}):
                self.used_args.add(name)
                if name in self.options.build_args:
                    scope[name] = self.options.build_args[name]
                elif default is not None:
                    scope[name] = default
                elif name in values:
                    scope[name] = values[name]
        self._automatic = values
        return {**values, **scope}

    # --- stages -----------------------------------------------------------------------------
    def _announce(self, inst: Instruction) -> None:
        self.count += 1
        self.reporter.step(f"STEP {self.count}/{self.total}: {inst.text}")

    def _build_stage(self, the_plan: BuildPlan, stage: Stage, global_args: dict[str, str]) -> StageState:
        inst = stage.from_instruction
        self._announce(inst)
        base_text = expand_in(inst, stage.base, global_args)
        if not base_text:
            raise inst.error("FROM names no image (an ARG in it expanded to nothing)")
        stage_platform = None
        if stage.platform is not None:
            stage_platform = expand_in(inst, stage.platform, global_args)
            try:
                parse_platform(stage_platform)
            except PybuildError as exc:
                raise inst.error(f"FROM --platform={stage.platform}: {exc}") from None
        state = self._from(the_plan, stage, base_text, inst, stage_platform)
        triggers = list(state.runtime.pop("OnBuild", None) or [])
        for trigger in triggers:
            self._onbuild(state, trigger, inst)
        for inst in stage.instructions:
            self._announce(inst)
            self._dispatch(state, inst, global_args)
        if state.pending_dirs:
            self._fs_step(state, None, "", [], lambda upper, lowers: None)
        return state

    def _onbuild(self, state: StageState, trigger: str, from_inst: Instruction) -> None:
        try:
            sub = plan(f"FROM scratch\n{trigger}\n", from_inst.file)
        except ContainerfileError as exc:
            raise from_inst.error(f"ONBUILD trigger {trigger!r} of the base image: {exc.reason}") from None
        for inst in sub.stages[0].instructions:
            inst.node.start_line = inst.node.end_line = from_inst.line
            self.reporter.step(f"ONBUILD {trigger}")
            self._dispatch(state, inst, {})

    def _from(
        self, the_plan: BuildPlan, stage: Stage, base: str, inst: Instruction, stage_platform: str | None
    ) -> StageState:
        ref = self._stage_ref(the_plan, base, stage.index)
        if ref is not None:
            prev = self.stage_results[ref.index]
            return StageState(
                stage,
                list(prev.layers),
                copy.deepcopy(prev.config),
                step_key("stage", prev.key),
                shell=list(prev.shell),
            )
        if base == "scratch":
            platform = parse_platform(stage_platform) if stage_platform else self.platform
            config: dict[str, Any] = {
                "architecture": platform.architecture,
                "os": platform.os,
                # as BuildKit and buildah give a scratch image: the default PATH in its Env
                "config": {"Env": [f"PATH={DEFAULT_PATH}"]},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }
            if platform.variant:
                config["variant"] = platform.variant
            return StageState(stage, [], config, step_key("scratch", self.docker))
        layout, desc = self._base_image(base, inst, stage_platform)
        image = load_image(layout, desc, parse_platform(stage_platform) if stage_platform else None)
        if layout.root != self.store.root:
            with self.store.writing():
                copy_blobs(layout, self.store, image.descriptor)
        layers = [
            (_media_type(d, self.docker), diff_id)
            for d, diff_id in zip(image.layers, image.config.diff_ids, strict=True)
        ]
        config = copy.deepcopy(image.config.to_dict())
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        config.setdefault("history", [])
        state = StageState(
            stage, layers, config, step_key("image", str(image.descriptor.digest), self.docker)
        )
        shell = state.runtime.get("Shell")
        if isinstance(shell, list) and shell:
            state.shell = [str(s) for s in shell]
        return state

    def _base_image(
        self, base: str, inst: Instruction, platform: str | None, what: str | None = None
    ) -> tuple[Layout, Descriptor]:
        """Find (or pull) the base image: oci:DIR[:TAG], docker://..., or a name in the store.
        ``what`` starts the error messages (default: FROM BASE)."""
        what = what or f"FROM {base}"
        from ..errors import RegistryError
        from ..remote import copy_image

        try:
            if base.startswith("oci:"):
                ref = parse_reference(base)
                assert ref.path is not None
                layout = Layout.open(ref.path, label=f"oci:{ref.path}")
                return layout, layout.resolve(ref.name)
            name = base.removeprefix("docker://")
            if self.options.pull != "always":
                try:
                    _, desc = self.store.lookup(name)
                    return self.store, desc
                except ImageNotFound:
                    if self.options.pull == "never":
                        raise ImageNotFound(
                            f"{name} is not in {self.store.label} and --pull never forbids pulling it"
                        ) from None
            self.reporter.info(f"pulling {name}")
            desc = copy_image(
                f"docker://{name}",
                str(parse_reference(name).name),
                store=self.store,
                platform=parse_platform(platform) if platform else None,
                src_options=self.options.registry,
            )
            return self.store, desc
        except RegistryError as exc:
            raise ContainerfileError(
                f"{what}: {exc}",
                file=inst.file,
                line=inst.line,
                hints=[
                    *exc.hints,
                    "without a network, put the image in the store first (pybuild copy or pull) "
                    "or name an OCI layout: FROM oci:DIR:TAG",
                ],
            ) from None
        except PybuildError as exc:
            raise inst.error(f"{what}: {exc}") from None

    # --- instructions -----------------------------------------------------------------------
    def _dispatch(self, state: StageState, inst: Instruction, global_args: dict[str, str]) -> None:
        handler = getattr(self, f"_do_{inst.keyword}", None)
        if handler is None:  # pragma: no cover - plan() refuses unknown instructions
            raise inst.error(f'unknown instruction "{inst.keyword.upper()}"')
        try:
            handler(state, inst, global_args)
        except ContainerfileError:
            raise
        except StepFailed:
            raise
        except PybuildError as exc:
            raise type(exc)(f"{inst.file}:{inst.line}: {exc.message}", hints=exc.hints) from exc

    def _config_step(self, state: StageState, inst: Instruction, text: str | None = None) -> None:
        """Record a config-only step in the history (cached, so rebuilds keep its timestamp)."""
        created_by = f"/bin/sh -c #(nop) {text or inst.text}"
        key = step_key(state.key, "config", created_by, sorted(state.args.items()))
        entry = self._history(key, created_by, empty=True)
        state.config.setdefault("history", []).append(entry)
        state.key = key

    def _history(self, key: str, created_by: str, *, empty: bool) -> dict[str, Any]:
        record = None if self.options.no_cache else self.cache.get(key)
        if record is not None and record.get("layer") is None:
            return dict(record["history"])
        entry: dict[str, Any] = {"created": _now(self.epoch), "created_by": created_by}
        if empty:
            entry["empty_layer"] = True
        self.cache.put(key, {"history": entry, "layer": None})
        return entry

    def _do_arg(self, state: StageState, inst: Instruction, global_args: dict[str, str]) -> None:
        for name, default in parse_arg(inst, state.scope()):
            self.used_args.add(name)
            if name in self.options.build_args:
                state.args[name] = self.options.build_args[name]
            elif default is not None:
                state.args[name] = default
            elif name in global_args:
                state.args[name] = global_args[name]
            elif name in self._automatic:
                state.args[name] = self._automatic[name]
        self._config_step(state, inst)

    def _pairs(self, state: StageState, inst: Instruction) -> list[tuple[str, str]]:
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

    def _do_env(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        pairs = self._pairs(state, inst)
        for key, value in pairs:
            state.set_env(key, value)
        self._config_step(state, inst, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def _do_label(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        pairs = self._pairs(state, inst)
        labels = dict(state.runtime.get("Labels") or {})
        labels.update(pairs)
        state.runtime["Labels"] = labels
        self._config_step(state, inst, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    def _do_maintainer(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        state.config["author"] = expand_in(inst, " ".join(inst.args), state.scope())
        self._config_step(state, inst)

    def _do_user(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        state.runtime["User"] = expand_in(inst, inst.args[0], state.scope())
        self._config_step(state, inst, f"USER {state.runtime['User']}")

    def _do_workdir(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        path = expand_in(inst, inst.args[0], state.scope())
        if not path:
            raise inst.error("WORKDIR needs a path")
        new = os.path.normpath(os.path.join(state.workdir, path))
        new = "/" + new.lstrip("/")
        state.runtime["WorkingDir"] = new
        if new not in state.pending_dirs:
            state.pending_dirs.append(new)
        self._config_step(state, inst, f"WORKDIR {new}")

    def _do_volume(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
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
        self._config_step(state, inst)

    def _do_expose(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        ports = dict(state.runtime.get("ExposedPorts") or {})
        scope = state.scope()
        for word in inst.args:
            for value in expand_in(inst, word, scope).split():
                port, _sep, proto = value.partition("/")
                proto = proto.lower() or "tcp"
                first, _sep, last = port.partition("-")
                if (
                    not first.isdigit()
                    or (last and not last.isdigit())
                    or proto not in ("tcp", "udp", "sctp")
                ):
                    raise inst.error(f"EXPOSE {value!r}: expected PORT[-PORT][/tcp|udp|sctp]")
                for n in range(int(first), int(last or first) + 1):
                    ports[f"{n}/{proto}"] = {}
        state.runtime["ExposedPorts"] = ports
        self._config_step(state, inst)

    def _do_stopsignal(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        value = expand_in(inst, inst.args[0], state.scope())
        import signal as _signal

        name = value.upper()
        valid = (
            value.isdigit()
            or name in _signal.Signals.__members__
            or f"SIG{name}" in _signal.Signals.__members__
        )
        if not valid:
            raise inst.error(f"STOPSIGNAL {value!r} is not a signal")
        state.runtime["StopSignal"] = value
        self._config_step(state, inst)

    def _command(self, state: StageState, inst: Instruction) -> list[str]:
        if inst.node.json:
            return list(inst.args)
        return [*state.shell, " ".join(inst.args)] if inst.args else []

    def _do_cmd(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        state.runtime["Cmd"] = self._command(state, inst)
        state.cmd_set = True
        self._config_step(state, inst)

    def _do_entrypoint(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        state.runtime["Entrypoint"] = self._command(state, inst)
        if not state.cmd_set:
            state.runtime.pop("Cmd", None)  # an inherited CMD does not survive a new ENTRYPOINT
        self._config_step(state, inst)

    def _do_shell(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        state.shell = list(inst.args)
        state.runtime["Shell"] = list(inst.args)
        self._config_step(state, inst)

    def _do_onbuild(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        trigger = " ".join(inst.args).strip()
        state.runtime["OnBuild"] = [*(state.runtime.get("OnBuild") or []), trigger]
        self._config_step(state, inst)

    def _do_healthcheck(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        args = inst.args
        kind = args[0].upper() if args else ""
        if kind == "NONE":
            if len(args) > 1:
                raise inst.error("HEALTHCHECK NONE takes no arguments")
            state.runtime["Healthcheck"] = {"Test": ["NONE"]}
            self._config_step(state, inst)
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
        self._config_step(state, inst)

    # --- filesystem steps -------------------------------------------------------------------
    def _lowers(self, state: StageState) -> list[Path]:
        return self._layer_dirs(state.layers)

    def _layer_dirs(self, layers: list[tuple[Descriptor, Digest]]) -> list[Path]:
        return layer_dirs_of(self.store, self.store, layers)

    @contextlib.contextmanager
    def _workspace(self) -> Iterator[Path]:
        top = Path(tempfile.mkdtemp(prefix="step-", dir=self.scratch))
        try:
            yield top
        finally:
            remove_tree(top)

    def _fs_step(
        self,
        state: StageState,
        inst: Instruction | None,
        created_by: str,
        key_parts: list[Any],
        action: Callable[[Path, list[Path]], None],
    ) -> None:
        """Run ``action(upper, lowers)`` (or take the cached result) and commit what it changed."""
        pending = list(state.pending_dirs)
        state.pending_dirs.clear()
        media = mediatype.layer_media_type(self.compression, docker=self.docker)
        key = step_key(
            state.key, created_by, key_parts, pending, sorted(state.args.items()), media, self.epoch
        )
        record = None if self.options.no_cache or not self.options.layers else self.cache.get(key)
        if record is not None and self._take_cached(state, record, key):
            self.reporter.info("--> Using cache")
            return
        lowers = self._lowers(state)
        with self._workspace() as top:
            upper = top / "upper"
            upper.mkdir()
            if pending:
                run_function(lowers, upper, lambda: mkdirs_in_root(pending))
            action(upper, lowers)
            made = self._commit_upper(upper, lowers)
            layer = None
            if made is not None:
                digest, size, diff_id = made
                layer = (Descriptor(media, Digest.parse(digest), size), Digest.parse(diff_id))
                final = layer_dir(self.store, layer[1])
                if not final.exists():
                    with contextlib.suppress(OSError):
                        os.chmod(upper, 0o755)
                        os.rename(upper, final)
        entry: dict[str, Any] = {
            "created": _now(self.epoch),
            "created_by": created_by or "/bin/sh -c #(nop) ",
        }
        if layer is None:
            entry["empty_layer"] = True
        else:
            state.layers.append(layer)
            state.config["rootfs"]["diff_ids"].append(str(layer[1]))
        # the directories left for the end of a stage are no instruction of their own: they show in
        # the history only when they made a layer (and a cache hit must do the same)
        in_history = inst is not None or layer is not None
        if in_history:
            state.config.setdefault("history", []).append(entry)
        self.cache.put(
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

    def _take_cached(self, state: StageState, record: dict[str, Any], key: str) -> bool:
        layer = record.get("layer")
        if layer is not None:
            try:
                desc = Descriptor.from_dict(layer, "build cache record")
                diff_id = Digest.parse(str(record.get("diff_id")))
            except PybuildError:
                return False
            if not self.store.blobs.exists(desc.digest):
                return False
            state.layers.append((desc, diff_id))
            state.config["rootfs"]["diff_ids"].append(str(diff_id))
        if record.get("in_history", True):
            state.config.setdefault("history", []).append(dict(record["history"]))
        state.key = key
        return True

    def _commit_upper(self, upper: Path, lowers: list[Path]) -> tuple[str, int, str] | None:
        store, compression, epoch = self.store, self.compression, self.epoch

        def produce() -> tuple[str, int, str] | None:
            changes = scan_upperdir(upper, lowers)
            if not changes:
                return None
            with store.blobs.writer() as writer:
                stats = write_layer(changes, upper, writer, compression=compression, source_date_epoch=epoch)
            assert writer.digest is not None
            return str(writer.digest), writer.size, stats.diff_id

        return run_in_userns(produce)

    # RUN
    def _do_run(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        args, script = self._run_args(state, inst)
        if not args:
            raise inst.error("RUN needs a command")
        scope_args = {k: v for k, v in state.args.items() if k not in state.env}
        env = dict(state.env)
        env.setdefault("PATH", DEFAULT_PATH)
        env.update(scope_args)
        network = inst.flag("network") or self.options.network
        if network == "default":
            network = self.options.network
        if network not in ("host", "none"):
            raise inst.error(f"RUN --network={network}: expected default, host or none")
        scope, workdir = state.scope(), state.workdir
        mounts = [
            parse_mount(inst, m, scope, workdir, self.context, lambda ref: self._source_layers(inst, ref))
            for m in inst.flags.get("mount", [])
        ]
        check_required(inst, mounts, self.options.secrets)
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
        ]

        def action(upper: Path, lowers: list[Path]) -> None:
            with contextlib.ExitStack() as stack:
                prepared = RunMounts(self.store, self.scratch, self._layer_dirs, self.options.secrets)
                for m in mounts:
                    prepared.add(m, stack, inst)
                binds = prepared.binds
                run_args = list(args)
                if script is not None:
                    folder = Path(tempfile.mkdtemp(prefix="heredoc-", dir=self.scratch))
                    stack.callback(remove_tree, folder)
                    path = folder / "script"
                    path.write_text(script)
                    os.chmod(path, 0o755)
                    os.chmod(folder, 0o755)
                    binds.append((str(path), "/dev/pipes/script", True))
                    run_args = ["/dev/pipes/script"]
                result = run_container(
                    RunSpec(
                        lowerdirs=lowers,
                        upperdir=upper,
                        args=run_args,
                        env=[f"{k}={v}" for k, v in {**env, **prepared.env}.items()],
                        cwd=state.workdir,
                        user=str(state.runtime.get("User") or ""),
                        network=network,
                        mounts=binds,
                        views=prepared.views,
                        files=prepared.files,
                    )
                )
            if result.exit_status != 0:
                raise StepFailed(
                    f"{inst.file}:{inst.line}: {inst.text}: "
                    f"the command exited with status {result.exit_status}",
                    exit_status=result.exit_status,
                )

        self._fs_step(state, inst, created_by, key_parts, action)

    def _run_args(self, state: StageState, inst: Instruction) -> tuple[list[str], str | None]:
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

    # COPY / ADD
    def _do_copy(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        self._copy(state, inst, add=False)

    def _do_add(self, state: StageState, inst: Instruction, _: dict[str, str]) -> None:
        self._copy(state, inst, add=True)

    def _copy(self, state: StageState, inst: Instruction, *, add: bool) -> None:
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
            staging = Path(tempfile.mkdtemp(prefix="sources-", dir=self.scratch))
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
                        body = self._expand_heredoc(inst, body, scope)
                    sub = staging / str(i)
                    sub.mkdir()
                    (sub / doc.name).write_text(body)
                    rel = f"{i}/{doc.name}"
                    file_modes[rel] = 0o644
                    sources.append(CopySource(rel, as_path=doc.name))
                    key_parts.append([doc.name, body])
            src_root: Path
            if from_:
                src_root = staging
                sources += self._stage_sources(state, inst, from_, srcs, staging)
                key_parts.append(sources_digest(staging, [s.rel for s in sources], IgnoreRules((), None)))
            elif srcs and any(s.startswith(("http://", "https://")) for s in srcs):
                if not add:
                    raise inst.error("COPY does not fetch URLs: use ADD")
                src_root = staging
                for i, url in enumerate(srcs):
                    sources.append(self._fetch(inst, url, staging / f"u{i}", checksum, dest.endswith("/")))
                key_parts.append(sources_digest(staging, [s.rel for s in sources], IgnoreRules((), None)))
            elif srcs:
                src_root = self.context
                matched: list[CopySource] = []
                try:
                    found = match_all_sources(self.context, srcs, self.rules, excludes=excludes)
                except ContainerfileError as exc:
                    raise inst.error(f"{what}: {exc.reason}") from None
                for pattern, rels in zip(srcs, found, strict=True):
                    for rel in rels:
                        matched.append(self._context_source(rel, excludes, parents, pattern))
                sources += matched
                try:
                    key_parts.append(
                        sources_digest(self.context, [s.rel for s in matched], self.rules, excludes=excludes)
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
                run_function(lowers, upper, lambda: copy_into_root(src_fd, req))

            self._fs_step(state, inst, created_by, key_parts, action)

    def _expand_heredoc(self, inst: Instruction, body: str, scope: dict[str, str]) -> str:
        """Variables in a COPY/ADD heredoc body, as BuildKit expands them: quotes and escapes are
        kept as written, only $VAR and ${VAR...} forms change."""
        try:
            return Lexer(inst.escape, raw_quotes=True, raw_escapes=True).process_word(body, scope)
        except ContainerfileError as exc:
            raise inst.error(f"heredoc <<{inst.node.heredocs[0].name}: {exc.reason}") from None

    def _context_source(self, rel: str, excludes: list[str], parents: bool, pattern: str) -> CopySource:
        """A matched context path: directories list their included entries; a symlink at the top is
        followed inside the context (as Docker does)."""
        from ..run.paths import join_in_root

        path = self.context / rel if rel else self.context
        as_path = rel if parents else None
        if path.is_symlink():
            real = join_in_root(self.context, rel)
            rel_real = os.path.relpath(real, self.context)
            if rel_real == ".":
                rel_real = ""
            as_path = rel if parents else os.path.basename(rel)
            rel = rel_real
            path = real
        if path.is_dir() and not path.is_symlink():
            entries = [
                e[len(rel) + 1 :] if rel else e
                for e, _ in walk_context(self.context, self.rules, rel)
                if e != rel
            ]
            if excludes:
                rules = IgnoreRules(tuple(excludes), None)
                entries = [e for e in entries if not rules.excluded(f"{rel}/{e}" if rel else e)]
            return CopySource(rel, entries, as_path=as_path)
        return CopySource(rel, as_path=as_path)

    def _stage_sources(
        self, state: StageState, inst: Instruction, from_: str, patterns: list[str], staging: Path
    ) -> list[CopySource]:
        """COPY --from: export the matched paths of another stage or image into ``staging`` (through
        a tar, inside the source's own root view) and name them as sources."""
        layers = self._source_layers(inst, from_)
        lowers = layer_dirs_of(self.store, self.store, layers)
        tar_path = staging / "export.tar"
        out_fd = os.open(tar_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with self._workspace() as top:
                upper = top / "upper"
                upper.mkdir()
                names = run_function(lowers, upper, lambda: _export(out_fd, patterns, state.workdir))
        finally:
            os.close(out_fd)
        tree = staging / "tree"
        tree.mkdir()

        def unpack() -> None:
            from ..diff import apply_layer

            with open(tar_path, "rb") as f:
                apply_layer(f, tree, what=f"COPY --from={from_}")

        run_in_userns(unpack)
        return [CopySource(f"tree/{i}/{name}", None, as_path=orig) for i, (name, orig) in enumerate(names)]

    def _source_layers(self, inst: Instruction, ref: str) -> list[tuple[Descriptor, Digest]]:
        """The layers (bottom first, blobs in the store) of an earlier stage, by name or index, or of
        an image (in the store, pulled, or oci:DIR:TAG): COPY --from and RUN --mount from=."""
        the_stage = None
        for idx, result in self.stage_results.items():
            if result.stage.name == ref.lower() or (ref.isdigit() and int(ref) == idx):
                the_stage = result
        if the_stage is not None:
            return list(the_stage.layers)
        what = f"{'RUN --mount from' if inst.keyword == 'run' else inst.keyword.upper() + ' --from'}={ref}"
        for stage in self.stages:  # this stage or a later one: BuildKit's circular dependency
            if stage.name == ref.lower() or (ref.isdigit() and int(ref) == stage.index):
                raise inst.error(
                    f"{what}: names stage {stage.label()}, which is not built before this one "
                    "(a stage can use only earlier stages)"
                )
        layout, desc = self._base_image(ref, inst, None, what)
        image = load_image(layout, desc)
        if layout.root != self.store.root:
            with self.store.writing():
                copy_blobs(layout, self.store, image.descriptor)
        return list(zip(image.layers, image.config.diff_ids, strict=True))

    def _fetch(
        self, inst: Instruction, url: str, folder: Path, checksum: str | None, into_dir: bool
    ) -> CopySource:
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
            with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
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

    # --- the image ----------------------------------------------------------------------------
    def _commit(self, state: StageState) -> BuildResult:
        config = state.config
        runtime = state.runtime
        if self.options.labels:
            runtime["Labels"] = {**(runtime.get("Labels") or {}), **self.options.labels}
        if not self.docker:
            for field_name, instruction in (
                ("Healthcheck", "HEALTHCHECK"),
                ("OnBuild", "ONBUILD"),
                ("Shell", "SHELL"),
            ):
                if runtime.pop(field_name, None) is not None:
                    self.warn(
                        f"{instruction} is not part of the OCI image format and is left out: "
                        "build with --format docker to keep it"
                    )
        if not state.layers:
            self._empty_layer(state)
        history = config.get("history") or []
        config["created"] = history[-1]["created"] if history else _now(self.epoch)
        if not config.get("config"):
            config["config"] = {}
        for key in ("container", "container_config", "docker_version", "parent", "id"):
            config.pop(key, None)
        image_config = ImageConfig.new(config)
        layers = [_media_type(d, self.docker) for d, _ in state.layers]
        tags = []
        with self.store.writing():
            desc = commit_image(
                self.store,
                image_config,
                layers,
                docker=self.docker,
                annotations=(self.options.annotations or None) if not self.docker else None,
            )
            plain = Descriptor(desc.media_type, desc.digest, desc.size)
            for tag in self.options.tags:
                ref = parse_reference(tag)
                if ref.transport != "oci":
                    self.store.set_tag(ref.name, plain)
                    tags.append(ref.name)
            if not self.options.tags or all(parse_reference(t).transport == "oci" for t in self.options.tags):
                self.store.set_tag(f"{UNTAGGED}:{plain.digest.encoded[:12]}", plain)
        for tag in self.options.tags:
            ref = parse_reference(tag)
            if ref.transport == "oci":
                assert ref.path is not None
                layout = Layout.create(ref.path, label=f"oci:{ref.path}")
                with layout.writing():
                    layout.set_tag(ref.name, self._to_layout(layout, plain))
                tags.append(tag)
        image_id = desc_config_id(self.store, plain)
        return BuildResult(plain, image_id, tags, self.warnings)

    def _to_layout(self, layout: Layout, desc: Descriptor) -> Descriptor:
        """Put the built image into an OCI layout: its blobs as they are, or, when no --compression
        was asked for, with the store's uncompressed layers gzipped (as buildah and skopeo write an
        OCI layout). Returns the descriptor to tag there."""
        from ..layout import BlobInfoCache
        from ..remote.recompress import has_uncompressed_layers, recompress_image

        if self.options.compression is None and has_uncompressed_layers(self.store, desc):
            # the store's blob-info cache: a layer gzipped before (a rebuild) is not gzipped again
            cache = BlobInfoCache(self.store.root)
            new = recompress_image(self.store, desc, layout, "gzip", only_uncompressed=True, cache=cache)
            return Descriptor(new.media_type, new.digest, new.size)
        copy_blobs(self.store, layout, desc)
        return desc

    def _empty_layer(self, state: StageState) -> None:
        """An image with no files (FROM scratch and config steps): buildah commits it with no layer,
        but an OCI manifest needs at least one (the image-spec schema's minItems), so it gets one
        empty layer."""
        media = mediatype.layer_media_type(self.compression, docker=self.docker)
        with self.store.blobs.writer() as writer:
            stats = write_layer(
                [], self.scratch, writer, compression=self.compression, source_date_epoch=self.epoch
            )
        assert writer.digest is not None
        diff_id = Digest.parse(str(stats.diff_id))
        state.layers.append((Descriptor(media, Digest.parse(str(writer.digest)), writer.size), diff_id))
        state.config["rootfs"]["diff_ids"].append(str(diff_id))
        history = state.config.setdefault("history", [])
        created = history[-1]["created"] if history else _now(self.epoch)
        history.append({"created": created, "created_by": "/bin/sh -c #(nop) FROM scratch"})


def desc_config_id(layout: Layout, desc: Descriptor) -> str:
    """The image ID: the hex of the config's digest, as buildah prints it."""
    return load_image(layout, desc).manifest.config.digest.encoded


def _export(out_fd: int, patterns: list[str], workdir: str) -> list[tuple[str, str]]:
    """Inside the source's root: write the paths matching ``patterns`` (top-level symlinks followed)
    as a tar to ``out_fd``, each under ``INDEX/NAME``; returns [(NAME, original path)]."""
    names: list[tuple[str, str]] = []
    with (
        os.fdopen(os.dup(out_fd), "wb") as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for pattern in patterns:
            path = pattern if pattern.startswith("/") else os.path.join(workdir, pattern)
            path = os.path.normpath(path)
            matches = (
                sorted(glob.glob(path))
                if any(c in path for c in "*?[")
                else ([path] if os.path.lexists(path) else [])
            )
            if not matches:
                raise ContainerfileError(f"COPY --from: {pattern}: no such file or directory")
            for match in matches:
                real = os.path.realpath(match)
                if not os.path.exists(real):
                    raise ContainerfileError(f"COPY --from: {match}: dangling symbolic link")
                name = os.path.basename(match.rstrip("/")) or "root"
                index = len(names)
                tar.add(real, arcname=f"{index}/{name}", recursive=True)
                names.append((name, match.lstrip("/")))
    return names


def build(store: ImageStore, options: BuildOptions, reporter: Reporter | None = None) -> BuildResult:
    """Build the Containerfile in ``options`` into ``store``; tags and oci: targets are written too."""
    if options.format not in ("oci", "docker"):
        raise UsageError(f"--format {options.format!r}: expected oci or docker")
    if options.compression not in (None, "gzip", "zstd", "none"):
        raise UsageError(f"--compression {options.compression!r}: expected gzip, zstd or none")
    if options.format == "docker" and options.compression == "zstd":
        raise UsageError("--compression zstd: Docker-format images have gzip or plain tar layers, not zstd")
    if options.pull not in ("always", "missing", "never"):
        raise UsageError(f"--pull {options.pull!r}: expected always, missing or never")
    if options.network not in ("host", "none"):
        raise UsageError(f"--network {options.network!r}: expected host or none")
    for tag in options.tags:
        parse_reference(tag)
    builder = Builder(store, options, reporter)
    keep_out(store.root, builder.context)  # in-place mode never touches them
    # the whole build writes blobs that only its final commit references: hold the writers' lock
    # so `pybuild gc` waits instead of sweeping a step's layer in between
    with store.writing(), isolation(options.isolation):
        return builder.build()


__all__ = ["BuildOptions", "BuildResult", "Builder", "Reporter", "build"]
