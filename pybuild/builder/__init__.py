"""Containerfile builds: the parser and variable expansion, stages, ignore files, COPY sources, the
build executor and its cache."""

from .containerfile import BuildPlan, Instruction, Stage, plan
from .executor import BuildOptions, BuildResult, Reporter, build

__all__ = ["BuildOptions", "BuildPlan", "BuildResult", "Instruction", "Reporter", "Stage", "build", "plan"]
