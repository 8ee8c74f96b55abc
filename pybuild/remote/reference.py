"""Registry references: ``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`` and plain names."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..layout import Digest, parse_name

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class RegistryReference:
    """An image in a registry: ``registry`` (host[:port]), ``repository``, and a tag or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return str(self.digest) if self.digest is not None else (self.tag or "latest")

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def short(self) -> str:
        """``repo:tag`` or ``repo@digest``, as used in messages."""
        if self.digest is not None:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"

    def with_tag(self, tag: str) -> RegistryReference:
        return RegistryReference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: Digest) -> RegistryReference:
        return RegistryReference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        return f"docker://{self.registry}/{self.short}"


def parse_registry_reference(text: str) -> RegistryReference:
    """``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`` or a plain name (``localhost:5000/app:v1``)."""
    rest = text[len("docker://") :] if text.startswith("docker://") else text
    if "://" in rest:
        raise UsageError(f"invalid registry reference {text!r}")
    try:
        name = parse_name(rest)
    except UsageError as exc:
        raise UsageError(f"invalid registry reference {text!r}: {exc}") from None
    return RegistryReference(name.domain, name.path, name.tag, name.digest)
