"""Rootless execution: user namespaces and id maps, and one process in a container over overlay."""

from .cleanup import force_remove
from .container import RunResult, RunSpec, run_container
from .doctor import Check, doctor
from .function import run_function
from .inplace import keep_out
from .modes import isolation, overlay_mode, probe_mode
from .mounts import FileMount, TmpfsMount, ViewMount, view_path, with_view
from .rootfs import MODES
from .treecopy import copy_stack
from .userns import current_id_map, die_with_parent, run_in_userns, subordinate_range

__all__ = [
    "MODES",
    "Check",
    "FileMount",
    "RunResult",
    "RunSpec",
    "TmpfsMount",
    "ViewMount",
    "copy_stack",
    "current_id_map",
    "die_with_parent",
    "doctor",
    "force_remove",
    "isolation",
    "keep_out",
    "overlay_mode",
    "probe_mode",
    "run_container",
    "run_function",
    "run_in_userns",
    "subordinate_range",
    "view_path",
    "with_view",
]
