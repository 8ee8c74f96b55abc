"""The Python API's verbs over ``copy_image``: pull an image into the store under its full name, push
one to a registry, give one another name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..layout import Descriptor, ImageStore, Platform, parse_name
from .reference import parse_registry_reference
from .transport import CopyReport, copy_image

if TYPE_CHECKING:
    from .registry import Progress, RegistryOptions

REMOTE_PREFIXES = ("docker://", "docker-archive:", "oci-archive:")


def pull_name(ref: str) -> tuple[str, str]:
    """(the docker:// reference, the store name) of a registry image given as HOST/REPO[:TAG|@DIGEST]
    (``docker://`` optional; short names as podman reads them)."""
    text = ref if ref.startswith("docker://") else f"docker://{ref}"
    remote = parse_registry_reference(text)
    suffix = f"@{remote.digest}" if remote.digest else f":{remote.tag or 'latest'}"
    return text, str(parse_name(f"{remote.registry}/{remote.repository}{suffix}"))


def pull_image(
    ref: str,
    store: ImageStore,
    *,
    platform: Platform | None = None,
    options: RegistryOptions | None = None,
    progress: Progress | None = None,
) -> tuple[str, Descriptor]:
    """Pull ``ref`` from its registry into ``store`` under its full name; (that name, the manifest's
    descriptor)."""
    text, name = pull_name(ref)
    desc = copy_image(text, name, store=store, platform=platform, src_options=options, progress=progress)
    return name, desc


def push_target(dst: str) -> str:
    """``dst`` as a transport: a bare HOST/REPO[:TAG] is a registry's (docker://)."""
    return dst if dst.startswith((*REMOTE_PREFIXES, "oci:")) else f"docker://{dst}"


def push_image(
    src: str,
    dst: str,
    store: ImageStore,
    *,
    options: RegistryOptions | None = None,
    compression: str | None = None,
    digestfile: Path | None = None,
    progress: Progress | None = None,
) -> Descriptor:
    """Push the image ``src`` names (in ``store`` or oci:DIR[:TAG]) to ``dst`` (HOST/REPO[:TAG] or any
    transport); the descriptor of the manifest pushed (uncompressed layers are gzipped on the way)."""
    return copy_image(
        src,
        push_target(dst),
        store=store,
        dest_options=options,
        compression=compression,
        digestfile=digestfile,
        progress=progress,
    )


def tag_image(src: str, dst: str, store: ImageStore, *, report: CopyReport | None = None) -> Descriptor:
    """Give the image ``src`` names the name ``dst`` (in ``store`` or oci:DIR[:TAG]; its blobs are
    copied there when needed)."""
    return copy_image(src, dst, store=store, report=report)
