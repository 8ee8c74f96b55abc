"""JSON documents: Manifest, Index, ImageConfig, and the oci-layout file.

A document keeps the bytes it was read from; a document that was not changed is never re-serialised
(its digest would move). New JSON is written by one function, ``dump_json``: keys sorted, no spaces.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from ..errors import InvalidDigest, InvalidDocument
from . import mediatype
from .descriptor import Descriptor, Platform
from .digest import Digest

D = TypeVar("D", bound="Document")


def dump_json(doc: Any) -> bytes:
    """The one way pybuild writes new JSON: sorted keys, compact, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


#: The largest manifest, index or config pybuild reads (containerd's limit for manifests)
DOCUMENT_LIMIT = 4 << 20
#: How deeply arrays and objects may nest in any JSON pybuild reads; image documents need ~6
DEPTH_LIMIT = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_NESTING = re.compile(rb"[\[\]{}]")


def nesting_exceeds(raw: bytes, limit: int = DEPTH_LIMIT) -> bool:
    """Whether arrays and objects in ``raw`` nest deeper than ``limit`` (strings are skipped): checked
    before parsing, since Python's parser recurses and so does every walk over what it returns."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_NESTING.finditer(_JSON_STRING.sub(b'""', raw)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


def load_json(raw: bytes, what: str, *, limit: int | None = None) -> Any:
    """Parse JSON bytes: at most ``limit`` bytes (when given) and ``DEPTH_LIMIT`` levels deep."""
    if limit is not None and len(raw) > limit:
        raise InvalidDocument(f"{what}: larger than {limit} bytes ({len(raw)})")
    if nesting_exceeds(bytes(raw)):
        raise InvalidDocument(f"{what}: nests deeper than {DEPTH_LIMIT} levels")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidDocument(f"{what}: invalid JSON: {exc}") from None
    except RecursionError:  # pragma: no cover - nesting_exceeds stops it first
        raise InvalidDocument(f"{what}: nests too deeply") from None


class Document:
    """A parsed JSON document plus the exact bytes it came from (None once changed)."""

    kind = "document"

    def __init__(self, doc: dict[str, Any], raw: bytes | None, what: str, *, lenient: bool = False) -> None:
        self._doc = doc
        self._raw = raw
        self.what = what
        self.lenient = lenient
        self._validate()

    @classmethod
    def parse(
        cls: type[D],
        raw: bytes,
        what: str | None = None,
        *,
        lenient: bool = False,
        limit: int = DOCUMENT_LIMIT,
    ) -> D:
        """Parse and validate. ``lenient`` relaxes the SHOULD-level rules that real tools break
        (a manifest with no layers, as ``umoci new`` writes); the schema's other rules always hold.
        Documents larger than ``limit`` bytes are refused."""
        what = what or cls.kind
        doc = load_json(raw, what, limit=limit)
        if not isinstance(doc, dict):
            raise InvalidDocument(f"{what}: must be a JSON object")
        return cls(doc, bytes(raw), what, lenient=lenient)

    @classmethod
    def new(cls: type[D], doc: dict[str, Any]) -> D:
        return cls(copy.deepcopy(doc), None, cls.kind)

    def _validate(self) -> None:  # pragma: no cover - overridden
        pass

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the document, to change and pass to ``new``."""
        return copy.deepcopy(self._doc)

    def to_bytes(self) -> bytes:
        return self._raw if self._raw is not None else dump_json(self._doc)

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.to_bytes())

    def descriptor(self, media_type: str | None = None, **kwargs: Any) -> Descriptor:
        data = self.to_bytes()
        return Descriptor(
            media_type=media_type or self.media_type, digest=Digest.of_bytes(data), size=len(data), **kwargs
        )

    @property
    def media_type(self) -> str:
        value = self._doc.get("mediaType")
        return value if isinstance(value, str) else self.default_media_type

    default_media_type = ""

    def changed(self: D, change: Callable[[dict[str, Any]], None]) -> D:
        """A new document: a copy of this one's JSON passed through ``change``, then validated."""
        doc = self.to_dict()
        change(doc)
        return type(self)(doc, None, self.what, lenient=self.lenient)

    def _descriptor(self, value: Any, what: str) -> Descriptor:
        return Descriptor.from_dict(value, f"{self.what}: {what}")

    def _fail(self, message: str) -> InvalidDocument:
        return InvalidDocument(f"{self.what}: {message}")


def _check_common(doc: Document, raw: dict[str, Any], media_types: frozenset[str], kind: str) -> None:
    """schemaVersion, mediaType, artifactType and annotations, shared by manifests and indexes."""
    _check_schema_version(doc, raw)
    media = raw.get("mediaType")
    if media is not None and media not in media_types:
        raise doc._fail(f"mediaType {str(media)[:80]!r} is not {kind} type")
    if "artifactType" in raw and not mediatype.is_valid(raw["artifactType"]):
        raise doc._fail("invalid artifactType")
    _check_annotations(doc, raw)


def _check_schema_version(doc: Document, raw: dict[str, Any]) -> None:
    version = raw.get("schemaVersion")
    if version != 2 or isinstance(version, bool):
        raise doc._fail(f"schemaVersion must be 2, not {version!r}")


def _check_annotations(doc: Document, raw: dict[str, Any]) -> None:
    if "annotations" in raw:
        value = raw["annotations"]
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise doc._fail("annotations must be an object of strings")


class Manifest(Document):
    """An image manifest (OCI or Docker schema 2)."""

    kind = "manifest"
    default_media_type = mediatype.OCI_MANIFEST

    def _validate(self) -> None:
        raw = self._doc
        _check_common(self, raw, mediatype.MANIFESTS, "an image manifest")
        if "config" not in raw:
            raise self._fail("config is required")
        self.config = self._descriptor(raw["config"], "config")
        layers = raw.get("layers")
        if not isinstance(layers, list):
            raise self._fail("layers must be an array")
        if not layers and not self.lenient:
            raise self._fail("layers must have at least one entry")
        self.layers = [self._descriptor(d, f"layers[{i}]") for i, d in enumerate(layers)]
        self.subject = self._descriptor(raw["subject"], "subject") if "subject" in raw else None
        self.annotations: dict[str, str] = dict(raw.get("annotations", {}))

    @classmethod
    def build(
        cls,
        config: Descriptor,
        layers: list[Descriptor],
        *,
        media_type: str = mediatype.OCI_MANIFEST,
        annotations: dict[str, str] | None = None,
    ) -> Manifest:
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config.to_dict(),
            "layers": [layer.to_dict() for layer in layers],
        }
        if annotations:
            doc["annotations"] = dict(annotations)
        return cls(doc, None, cls.kind)

    @property
    def is_docker(self) -> bool:
        return self.media_type == mediatype.DOCKER_MANIFEST


class Index(Document):
    """An image index (OCI) or manifest list (Docker); also the layout's index.json."""

    kind = "index"
    default_media_type = mediatype.OCI_INDEX

    def _validate(self) -> None:
        raw = self._doc
        _check_common(self, raw, mediatype.INDEXES, "an index")
        manifests = raw.get("manifests")
        if not isinstance(manifests, list):
            raise self._fail("manifests must be an array")
        self.manifests = [self._descriptor(d, f"manifests[{i}]") for i, d in enumerate(manifests)]
        self.subject = self._descriptor(raw["subject"], "subject") if "subject" in raw else None
        self.annotations: dict[str, str] = dict(raw.get("annotations", {}))

    @classmethod
    def build(
        cls, manifests: list[Descriptor], *, media_type: str = mediatype.OCI_INDEX, annotations: Any = None
    ) -> Index:
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [m.to_dict() for m in manifests],
        }
        if annotations:
            doc["annotations"] = dict(annotations)
        return cls(doc, None, cls.kind)

    def with_manifests(self, manifests: list[Descriptor]) -> Index:
        def change(doc: dict[str, Any]) -> None:
            doc["manifests"] = [m.to_dict() for m in manifests]

        return self.changed(change)


# config.md: typed fields of the "config" object
_CONFIG_STRINGS = ("User", "WorkingDir", "StopSignal")
_CONFIG_LISTS = ("Env",)
_CONFIG_NULLABLE_LISTS = ("Entrypoint", "Cmd")
_CONFIG_SETS = ("ExposedPorts", "Volumes")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.IGNORECASE)


def parse_created(value: str) -> datetime | None:
    """An RFC 3339 time, or None where it is not one."""
    if not _RFC3339.fullmatch(value):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("z", "Z").replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class ImageConfig(Document):
    """An image configuration (config.md), OCI or Docker."""

    kind = "config"
    default_media_type = mediatype.OCI_CONFIG

    def _validate(self) -> None:
        raw = self._doc
        for key in ("architecture", "os"):
            if not isinstance(raw.get(key), str):
                raise self._fail(f"{key} is required and must be a string")
        for key in ("author", "variant", "os.version", "created"):
            if key in raw and not isinstance(raw[key], str):
                raise self._fail(f"{key} must be a string")
        if "created" in raw and parse_created(raw["created"]) is None:
            raise self._fail(f"created {raw['created'][:40]!r} is not an RFC 3339 time")
        if "os.features" in raw and (
            not isinstance(raw["os.features"], list)
            or not all(isinstance(x, str) for x in raw["os.features"])
        ):
            raise self._fail("os.features must be an array of strings")
        config = raw.get("config")
        if config is not None:
            if not isinstance(config, dict):
                raise self._fail("config must be an object")
            self._validate_runtime(config)
        rootfs = raw.get("rootfs")
        if not isinstance(rootfs, dict):
            raise self._fail("rootfs is required and must be an object")
        if rootfs.get("type") != "layers":
            raise self._fail(f"rootfs.type must be 'layers', not {rootfs.get('type')!r}")
        diff_ids = rootfs.get("diff_ids")
        if not isinstance(diff_ids, list):
            raise self._fail("rootfs.diff_ids must be an array")
        try:
            self.diff_ids = [Digest.parse(d, any_algorithm=True) for d in diff_ids]
        except InvalidDigest as exc:
            raise self._fail(f"rootfs.diff_ids: {exc}") from None
        history = raw.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise self._fail("history must be an array of objects")
        for i, entry in enumerate(history):
            for key in ("created", "author", "created_by", "comment"):
                if key in entry and not isinstance(entry[key], str):
                    raise self._fail(f"history[{i}].{key} must be a string")
            if "empty_layer" in entry and not isinstance(entry["empty_layer"], bool):
                raise self._fail(f"history[{i}].empty_layer must be a boolean")

    def _validate_runtime(self, config: dict[str, Any]) -> None:
        for key in _CONFIG_STRINGS:
            if key in config and not isinstance(config[key], str):
                raise self._fail(f"config.{key} must be a string")
        for key in _CONFIG_LISTS + _CONFIG_NULLABLE_LISTS:
            value = config.get(key)
            if value is None and (key in _CONFIG_NULLABLE_LISTS or key not in config):
                continue
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise self._fail(f"config.{key} must be an array of strings")
        for entry in config.get("Env") or []:
            if "=" not in entry or entry.startswith("="):
                raise self._fail(f"config.Env entry {entry[:60]!r} is not KEY=VALUE")
        for key in _CONFIG_SETS:
            value = config.get(key)
            if value is None:
                continue
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise self._fail(f"config.{key} must be an object whose values are objects")
        labels = config.get("Labels")
        if labels is not None and (
            not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values())
        ):
            raise self._fail("config.Labels must be an object of strings")

    # --- views -----------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        return str(self._doc["architecture"])

    @property
    def os(self) -> str:
        return str(self._doc["os"])

    @property
    def platform(self) -> Platform:
        variant = self._doc.get("variant")
        return Platform(self.architecture, self.os, variant if isinstance(variant, str) else None)

    @property
    def runtime(self) -> dict[str, Any]:
        """The "config" object (Env, Cmd, ...), a copy; {} when absent."""
        value = self._doc.get("config") or {}
        return copy.deepcopy(value) if isinstance(value, dict) else {}

    @property
    def history(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._doc.get("history", []))

    @property
    def created(self) -> str | None:
        value = self._doc.get("created")
        return value if isinstance(value, str) else None

    @property
    def author(self) -> str | None:
        value = self._doc.get("author")
        return value if isinstance(value, str) else None


class OciLayoutFile(Document):
    """The ``oci-layout`` file: {"imageLayoutVersion": "1.0.0"}."""

    kind = "oci-layout"

    def _validate(self) -> None:
        version = self._doc.get("imageLayoutVersion")
        if version != mediatype.OCI_LAYOUT_VERSION:
            raise self._fail(f"imageLayoutVersion must be {mediatype.OCI_LAYOUT_VERSION!r}, not {version!r}")
