"""Descriptors and platforms (descriptor.md, image-index.md). Unknown fields survive a round trip."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import InvalidDigest, InvalidDocument
from . import mediatype
from .digest import Digest

_KNOWN = ("mediaType", "digest", "size", "urls", "annotations", "platform", "artifactType", "data")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]*")
_MAX_SIZE = 2**63 - 1


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidDocument(f"{what}: must be an object of strings")
    return dict(value)


def _string_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidDocument(f"{what}: must be an array of strings")
    return list(value)


@dataclass(frozen=True)
class Platform:
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_dict(cls, doc: Any, what: str = "platform") -> Platform:
        if not isinstance(doc, dict):
            raise InvalidDocument(f"{what}: must be an object")
        for key in ("architecture", "os"):
            if not isinstance(doc.get(key), str):
                raise InvalidDocument(f"{what}: {key} is required and must be a string")
        for key in ("variant", "os.version"):
            if key in doc and not isinstance(doc[key], str):
                raise InvalidDocument(f"{what}: {key} must be a string")
        features = _string_list(doc["os.features"], f"{what}.os.features") if "os.features" in doc else []
        known = {"architecture", "os", "variant", "os.version", "os.features"}
        return cls(
            architecture=doc["architecture"],
            os=doc["os"],
            variant=doc.get("variant"),
            os_version=doc.get("os.version"),
            os_features=tuple(features),
            extra={k: v for k, v in doc.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version is not None:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant is not None:
            out["variant"] = self.variant
        out.update(self.extra)
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """A reference to content: media type, digest and size, plus optional fields."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    data: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # An explicit empty "annotations": {} is kept as it was read.
    empty_annotations: bool = field(default=False, compare=False, hash=False, repr=False)

    @classmethod
    def from_dict(cls, doc: Any, what: str = "descriptor") -> Descriptor:
        if not isinstance(doc, dict):
            raise InvalidDocument(f"{what}: must be an object")
        media_type = doc.get("mediaType")
        if media_type is None:
            raise InvalidDocument(f"{what}: mediaType is required")
        if not mediatype.is_valid(media_type):
            raise InvalidDocument(f"{what}: invalid mediaType {str(media_type)[:80]!r}")
        size = doc.get("size")
        if size is None:
            raise InvalidDocument(f"{what}: size is required")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _MAX_SIZE:
            raise InvalidDocument(f"{what}: size must be a non-negative integer, not {size!r}")
        if "digest" not in doc:
            raise InvalidDocument(f"{what}: digest is required")
        try:
            digest = Digest.parse(doc["digest"], any_algorithm=True)
        except InvalidDigest as exc:
            raise InvalidDocument(f"{what}: {exc}") from None
        urls = _string_list(doc["urls"], f"{what}.urls") if "urls" in doc else []
        for url in urls:
            if not _URI.fullmatch(url):
                raise InvalidDocument(f"{what}: invalid URL {url[:80]!r}")
        annotations = _string_map(doc["annotations"], f"{what}.annotations") if "annotations" in doc else {}
        platform = Platform.from_dict(doc["platform"], f"{what}.platform") if "platform" in doc else None
        artifact_type = doc.get("artifactType")
        if artifact_type is not None and not mediatype.is_valid(artifact_type):
            raise InvalidDocument(f"{what}: invalid artifactType {str(artifact_type)[:80]!r}")
        data = doc.get("data")
        if data is not None:
            if not isinstance(data, str):
                raise InvalidDocument(f"{what}: data must be a base64 string")
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidDocument(f"{what}: data is not valid base64") from None
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=tuple(urls),
            annotations=annotations,
            platform=platform,
            artifact_type=artifact_type,
            data=data,
            extra={k: v for k, v in doc.items() if k not in _KNOWN},
            empty_annotations=doc.get("annotations") == {},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations or self.empty_annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            out["data"] = self.data
        out.update(self.extra)
        return out

    def with_annotations(self, annotations: Mapping[str, str]) -> Descriptor:
        return replace(self, annotations=dict(annotations), empty_annotations=False)

    @property
    def ref_name(self) -> str | None:
        return self.annotations.get(REF_NAME)


REF_NAME = "org.opencontainers.image.ref.name"
