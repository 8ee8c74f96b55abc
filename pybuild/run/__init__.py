"""Rootless execution: user namespaces and id maps, and one process in a container over overlay."""

from .container import RunResult, RunSpec, run_container
from .doctor import Check, doctor
from .userns import current_id_map, run_in_userns, subordinate_range

__all__ = [
    "Check",
    "RunResult",
    "RunSpec",
    "current_id_map",
    "doctor",
    "run_container",
    "run_in_userns",
    "subordinate_range",
]
