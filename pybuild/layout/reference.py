"""Image references: store names (normalised like podman's short names) and ``oci:DIR[:TAG]``.

``alpine`` is ``docker.io/library/alpine:latest``; ``localhost/app`` stays local; ``oci:DIR`` means
the image tagged ``latest`` in the layout at DIR. Other transports are recognised by their prefix so
that a clear error can name them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidDigest, UsageError
from .digest import Digest

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
TRANSPORTS = ("oci:", "docker://", "docker-archive:", "oci-archive:")

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# image-layout.md's org.opencontainers.image.ref.name grammar: full names such as localhost/app:1
_OCI_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_OCI_REF = re.compile(rf"{_OCI_REF_COMPONENT}(?:/{_OCI_REF_COMPONENT})*")


@dataclass(frozen=True)
class ImageName:
    """A normalised image name: domain/path with a tag or a digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        if self.digest is not None:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"


def parse_name(text: str) -> ImageName:
    """Parse and normalise ``[DOMAIN/]PATH[:TAG][@DIGEST]``."""
    if not text or len(text) > 4096:
        raise UsageError(f"invalid image name {text[:80]!r}")
    rest, at, digest_text = text.partition("@")
    digest = None
    if at:
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as exc:
            raise UsageError(f"invalid image name {text!r}: {exc}") from None
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise UsageError(f"invalid image name {text!r}: bad tag {tag!r}")
    parts = rest.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        domain, path_parts = parts[0], parts[1:]
        if not _DOMAIN.fullmatch(domain):
            raise UsageError(f"invalid image name {text!r}: bad registry {domain!r}")
    else:
        domain, path_parts = DEFAULT_DOMAIN, parts
        if len(path_parts) == 1:
            path_parts = ["library", *path_parts]
    for part in path_parts:
        if not _COMPONENT.fullmatch(part):
            hint = " (names are lowercase)" if part.lower() != part else ""
            raise UsageError(f"invalid image name {text!r}: bad component {part!r}{hint}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageName(domain, "/".join(path_parts), tag, digest)


@dataclass(frozen=True)
class Reference:
    """Where an image is: ``transport`` is "store" or "oci" (others come with the remote package)."""

    transport: str
    name: str
    path: Path | None = None

    def __str__(self) -> str:
        if self.transport == "store":
            return self.name
        return f"{self.transport}:{self.path}:{self.name}"


def parse_reference(text: str) -> Reference:
    if text.startswith("oci:"):
        # PATH[:REF], split at the first colon as containers/image does: REF may be a full name
        directory, sep, tag = text[4:].partition(":")
        tag = tag if sep else DEFAULT_TAG
        if not directory:
            raise UsageError(f"invalid reference {text!r}: expected oci:DIR[:TAG]")
        if not (_OCI_TAG.fullmatch(tag) or (len(tag) <= 255 and _OCI_REF.fullmatch(tag))):
            raise UsageError(f"invalid reference {text!r}: bad tag {tag!r}")
        return Reference("oci", tag, Path(directory))
    for prefix in TRANSPORTS:
        if text.startswith(prefix):
            raise UsageError(f"transport {prefix.rstrip(':/')!r} in {text!r} is not supported yet")
    if "://" in text:
        raise UsageError(f"unknown transport in {text!r}")
    return Reference("store", str(parse_name(text)))
