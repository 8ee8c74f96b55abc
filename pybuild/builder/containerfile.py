"""From parsed nodes to build stages: stage splitting, instruction flags, and which stages a target needs.

The parser (``parser.py``) gives BuildKit's node tree; this module gives it meaning per the Dockerfile
reference: which instructions exist, which flags each takes, where the stages begin and end.
Every error names the Containerfile and the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ContainerfileError
from .parser import Containerfile, Node, parse
from .shell import expand

INSTRUCTIONS = {
    "from",
    "run",
    "cmd",
    "label",
    "maintainer",
    "expose",
    "env",
    "add",
    "copy",
    "entrypoint",
    "volume",
    "user",
    "workdir",
    "arg",
    "onbuild",
    "stopsignal",
    "healthcheck",
    "shell",
}

# flag name -> whether it takes a value (True) or is boolean (False)
FLAGS: dict[str, dict[str, bool]] = {
    "from": {"platform": True},
    "run": {"mount": True, "network": True, "security": True},
    "copy": {
        "from": True,
        "chown": True,
        "chmod": True,
        "link": False,
        "exclude": True,
        "parents": False,
    },
    "add": {
        "chown": True,
        "chmod": True,
        "link": False,
        "exclude": True,
        "checksum": True,
        "keep-git-dir": False,
        "unpack": False,
    },
    "healthcheck": {
        "interval": True,
        "timeout": True,
        "start-period": True,
        "start-interval": True,
        "retries": True,
    },
}


@dataclass
class Instruction:
    """One instruction: the parser's node with its flags split out."""

    node: Node
    file: str
    escape: str = "\\"
    flags: dict[str, list[str]] = field(default_factory=dict)

    @property
    def keyword(self) -> str:
        return self.node.value

    @property
    def line(self) -> int:
        return self.node.start_line

    @property
    def args(self) -> list[str]:
        return self.node.args

    def error(self, message: str) -> ContainerfileError:
        return ContainerfileError(message, file=self.file, line=self.line)

    def flag(self, name: str) -> str | None:
        values = self.flags.get(name)
        return values[-1] if values else None

    def bool_flag(self, name: str) -> bool:
        value = self.flag(name)
        if value is None:
            return False
        if value in ("", "true"):
            return True
        if value == "false":
            return False
        raise self.error(f"--{name}={value}: expected true or false")

    @property
    def text(self) -> str:
        """The instruction as written, on one line (for history and messages)."""
        return " ".join(self.node.original.split()) if self.node.original else self.keyword.upper()


@dataclass
class Stage:
    index: int
    name: str | None
    base: str  # as written (variables expanded later, with the global ARGs)
    platform: str | None
    from_instruction: Instruction
    instructions: list[Instruction] = field(default_factory=list)

    def label(self) -> str:
        return self.name or str(self.index)


@dataclass
class BuildPlan:
    file: str
    containerfile: Containerfile
    global_args: list[Instruction]
    stages: list[Stage]
    warnings: list[str]


def split_flags(node: Node, file: str, escape: str = "\\") -> Instruction:
    inst = Instruction(node, file, escape)
    allowed = FLAGS.get(node.value, {})
    for raw in node.flags:
        if not raw.startswith("--"):
            raise inst.error(f"{node.value.upper()}: invalid flag {raw!r}")
        name, sep, value = raw[2:].partition("=")
        if name not in allowed:
            raise inst.error(f"{node.value.upper()} does not take the flag --{name}")
        if allowed[name] and not sep:
            raise inst.error(f"{node.value.upper()} --{name} needs a value (--{name}=VALUE)")
        inst.flags.setdefault(name, []).append(value if sep else "")
    return inst


def plan(text: str | bytes, file: str = "Containerfile") -> BuildPlan:
    """Parse a Containerfile and split it into stages; instructions are checked, not yet expanded."""
    cf = parse(text, file)
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    names: dict[str, int] = {}
    for node in cf.nodes:
        keyword = node.value
        if keyword not in INSTRUCTIONS:
            raise ContainerfileError(
                f'unknown instruction "{keyword.upper()}"', file=file, line=node.start_line
            )
        inst = split_flags(node, file, cf.escape)
        if keyword == "from":
            args = node.args
            if len(args) == 3 and args[1].lower() == "as":
                name = args[2].lower()
                if not _valid_stage_name(name):
                    raise inst.error(f"invalid stage name {args[2]!r}")
                if name in names:
                    raise inst.error(f"duplicate stage name {args[2]!r}")
                names[name] = len(stages)
            elif len(args) == 1:
                name = None
            else:
                raise inst.error("FROM takes IMAGE [AS NAME]")
            stages.append(Stage(len(stages), name, args[0], inst.flag("platform"), inst))
            continue
        if not stages:
            if keyword == "arg":
                global_args.append(inst)
                continue
            raise inst.error(f"{keyword.upper()} before the first FROM: only ARG may come before FROM")
        check_instruction(inst)
        stages[-1].instructions.append(inst)
    if not stages:
        raise ContainerfileError("no FROM instruction", file=file)
    return BuildPlan(file, cf, global_args, stages, list(cf.warnings))


def _valid_stage_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[a-z][a-z0-9._-]*", name) is not None


def check_instruction(inst: Instruction) -> None:
    """Argument counts and forms each instruction needs (what can be told before expansion)."""
    k, args = inst.keyword, inst.args
    if k in ("copy", "add"):
        if not inst.node.heredocs and len(args) < 2:
            raise inst.error(f"{k.upper()} needs at least one source and a destination")
        if inst.node.heredocs and len(args) < 1:
            raise inst.error(f"{k.upper()} needs a destination")
    elif k in ("workdir", "user", "stopsignal", "maintainer") and len(args) != 1:
        if k == "workdir" and not args:
            raise inst.error("WORKDIR needs a path")
        if k != "workdir" and not args:
            raise inst.error(f"{k.upper()} needs a value")
        if k in ("user", "stopsignal"):
            raise inst.error(f"{k.upper()} takes exactly one argument")
    elif k in ("env", "label"):
        if not args or len(args) % 3:
            raise inst.error(f"{k.upper()} needs KEY=VALUE pairs")
    elif k == "arg":
        if not args:
            raise inst.error("ARG needs a name")
    elif k == "shell":
        if not inst.node.json or not args:
            raise inst.error('SHELL needs a JSON array, e.g. SHELL ["/bin/sh", "-c"]')
    elif k in ("expose", "volume") and not args:
        raise inst.error(f"{k.upper()} needs an argument")
    elif k == "onbuild":
        if not args:
            raise inst.error("ONBUILD needs an instruction")
        trigger = args[0].split()[0].lower() if args[0].split() else ""
        if trigger in ("onbuild", "from", "maintainer"):
            raise inst.error(f"{trigger.upper()} is not allowed as an ONBUILD trigger")
    elif k == "healthcheck" and not args:
        raise inst.error("HEALTHCHECK needs NONE or CMD ...")


def parse_arg(inst: Instruction, env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """ARG NAME[=DEFAULT]...: names with their (expanded) defaults."""
    out: list[tuple[str, str | None]] = []
    for word in inst.args:
        name, sep, default = word.partition("=")
        if not name:
            raise inst.error(f"ARG {word!r}: missing name")
        out.append((name, expand_in(inst, default, env) if sep else None))
    return out


def expand_in(inst: Instruction, word: str, env: Mapping[str, str]) -> str:
    """Expand ``word`` with ``env``; errors name the file and line."""
    try:
        return expand(word, env, escape=inst.escape)
    except ContainerfileError as exc:
        raise inst.error(exc.reason) from None


def needed_stages(plan_: BuildPlan, target: int, resolve: Mapping[int, list[int]]) -> set[int]:
    """The stages ``target`` depends on (itself included), given each stage's direct dependencies."""
    seen: set[int] = set()
    stack = [target]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(resolve.get(i, []))
    return seen


def find_containerfile(context: Path, given: Path | None) -> Path:
    if given is not None:
        if str(given) == "-":
            return given
        path = given if given.is_absolute() or given.exists() else context / given
        if not path.is_file():
            raise ContainerfileError("no such file", file=str(given))
        return path
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise ContainerfileError(f"no Containerfile or Dockerfile in {context}", hints=["give one with -f FILE"])
