"""Rootless execution: user namespaces and id maps, and one process in a container over overlay."""

from .cleanup import force_remove
from .container import RunResult, RunSpec, run_container
from .doctor import Check, doctor
from .userns import current_id_map, run_in_userns, subordinate_range

__all__ = [
    "Check",
    "RunResult",
    "RunSpec",
    "current_id_map",
    "doctor",
    "force_remove",
    "run_container",
    "run_in_userns",
    "subordinate_range",
]
