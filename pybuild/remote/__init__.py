"""Registries and archives: pull, push, copy between transports, inspect, login/logout.

Depends on pybuild.layout; prints nothing (progress goes to a callback). The archive functions
(tarfile, gzip, zstandard) load on first use: a push or pull does not pay for them; and so does the
registry client (urllib3): a copy between layouts (`pybuild tag`) does not pay for it.
"""

from typing import TYPE_CHECKING, Any

from .auth import Credentials, auth_files, find_credentials, remove_credentials, store_credentials
from .images import pull_image, push_image, tag_image
from .reference import RegistryReference, parse_registry_reference
from .transport import (
    ArchiveReference,
    CopyReport,
    ImageReference,
    LayoutReference,
    copy_image,
    inspect_remote,
    parse_image_reference,
)

_ARCHIVE = ("read_docker_archive", "read_oci_archive", "write_docker_archive", "write_oci_archive")
_REGISTRY = (
    "ConnectionDropped",
    "DeadlineExceeded",
    "InvalidResponse",
    "Progress",
    "Registry",
    "RegistryOptions",
    "login",
    "logout",
    "pick_manifest",
    "pull",
    "push",
)

if TYPE_CHECKING:
    from .registry import (
        ConnectionDropped,
        DeadlineExceeded,
        InvalidResponse,
        Progress,
        Registry,
        RegistryOptions,
        login,
        logout,
        pick_manifest,
        pull,
        push,
    )


def __getattr__(name: str) -> Any:
    if name in _ARCHIVE:
        from . import archive

        return getattr(archive, name)
    if name in _REGISTRY:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ArchiveReference",
    "ConnectionDropped",
    "CopyReport",
    "Credentials",
    "DeadlineExceeded",
    "ImageReference",
    "InvalidResponse",
    "LayoutReference",
    "Progress",
    "Registry",
    "RegistryOptions",
    "RegistryReference",
    "auth_files",
    "copy_image",
    "find_credentials",
    "inspect_remote",
    "login",
    "logout",
    "parse_image_reference",
    "parse_registry_reference",
    "pick_manifest",
    "pull",
    "pull_image",
    "push",
    "push_image",
    "read_docker_archive",
    "read_oci_archive",
    "remove_credentials",
    "store_credentials",
    "tag_image",
    "write_docker_archive",
    "write_oci_archive",
]
