"""Runtime bundles: image config -> config.json and process (conversion.md), unpack, repack, and a
throwaway container from an image."""

from .process import Bind, Process, image_process, run_image
from .runtimeconfig import make_runtime_config
from .unpack import UnpackResult, repack, unpack_image, unpack_ref

__all__ = [
    "Bind",
    "Process",
    "UnpackResult",
    "image_process",
    "make_runtime_config",
    "repack",
    "run_image",
    "unpack_image",
    "unpack_ref",
]
