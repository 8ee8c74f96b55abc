"""Containerfile builds: the front end (parser and variable expansion, stages, ignore files, COPY
sources) and the build (one module per kind of step, the step engine with its cache, the commit)."""

from .commit import BuildResult
from .containerfile import BuildPlan, Instruction, Stage, plan
from .executor import Builder
from .multi import IndexResult, build
from .options import BuildOptions, parse_secret, read_build_args
from .stepcontext import Reporter

__all__ = [
    "BuildOptions",
    "BuildPlan",
    "BuildResult",
    "Builder",
    "IndexResult",
    "Instruction",
    "Reporter",
    "Stage",
    "build",
    "parse_secret",
    "plan",
    "read_build_args",
]
