"""Rootless execution: user namespaces and id maps (more to come: overlay mounts, containers)."""

from .userns import current_id_map, run_in_userns, subordinate_range

__all__ = ["current_id_map", "run_in_userns", "subordinate_range"]
