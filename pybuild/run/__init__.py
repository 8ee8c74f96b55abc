"""Rootless execution: user namespaces and id maps, and one process in a container over overlay."""

from .container import RunResult, RunSpec, run_container
from .userns import current_id_map, run_in_userns, subordinate_range

__all__ = ["RunResult", "RunSpec", "current_id_map", "run_container", "run_in_userns", "subordinate_range"]
