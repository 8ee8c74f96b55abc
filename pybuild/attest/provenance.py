"""SLSA v1 provenance: an in-toto Statement v1 whose predicate says how an image was built.

The statement is made from a small typed value, ``BuildRecord``, and written with the layout's one
JSON writer (sorted keys, compact): the same record gives the same bytes. The record has no place
for secrets: build arguments are recorded, ``--secret`` values never. Under SOURCE_DATE_EPOCH (or
``--timestamp``) the builder passes ``reproducible_times`` so two builds give identical statements.

The fields follow the SLSA v1.0 provenance format (buildDefinition: buildType, externalParameters,
internalParameters, resolvedDependencies; runDetails: builder, metadata), with BuildKit's names for
the Containerfile (``configSource``) and the build request (``request``: args, target, platform).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import __version__
from ..errors import AttestError
from ..layout import Digest, dump_json
from ..layout.referrers import STATEMENT_TYPE

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
PREDICATE_TYPE_ANNOTATION = "in-toto.io/predicate-type"
# URIs that name pybuild's build type and builder without claiming a web address
BUILD_TYPE = "urn:pybuild:buildtype:containerfile:v1"
BUILDER_ID = "urn:pybuild:builder"


@dataclass(frozen=True)
class BaseImage:
    """A base image a build used: the reference it was asked for, and the manifest it resolved to."""

    name: str
    digest: Digest
    platform: str | None = None


@dataclass(frozen=True)
class BuildRecord:
    """What a build's provenance records (``subject``: the image built, by manifest digest)."""

    subject_name: str
    subject_digest: Digest
    containerfile: str  # the path as given, relative to the context where it lies inside it
    containerfile_digest: Digest
    platform: str  # "linux/amd64"
    started: datetime
    finished: datetime
    base_images: tuple[BaseImage, ...] = ()
    context_digest: Digest | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    builder_id: str = BUILDER_ID
    builder_version: str = __version__


def reproducible_times(started: datetime, finished: datetime, epoch: int | None) -> tuple[datetime, datetime]:
    """``(started, finished)``, both set to ``epoch`` (SOURCE_DATE_EPOCH, ``--timestamp``) when given."""
    if epoch is None:
        return started, finished
    when = datetime.fromtimestamp(epoch, UTC)
    return when, when


def _time(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest_set(digest: Digest) -> dict[str, str]:
    return {digest.algorithm: digest.encoded}


def _base_uri(base: BaseImage) -> str:
    """A base image as BuildKit names it in resolvedDependencies: a pkg:docker purl."""
    from urllib.parse import quote

    name, _, tag = base.name.rpartition(":")
    if not name or "/" in tag:
        name, tag = base.name, "latest"
    uri = f"pkg:docker/{quote(name, safe='/')}@{quote(tag, safe='')}"
    if base.platform:
        uri += f"?platform={quote(base.platform, safe='')}"
    return uri


def provenance_statement(record: BuildRecord) -> bytes:
    """The SLSA v1 provenance in-toto statement of ``record``, as JSON bytes."""
    if record.finished < record.started:
        raise AttestError(
            f"provenance of {record.subject_name}: the build finished ({_time(record.finished)}) "
            f"before it started ({_time(record.started)})"
        )
    request: dict[str, Any] = {"args": dict(sorted(record.build_args.items())), "platform": record.platform}
    if record.target is not None:
        request["target"] = record.target
    external: dict[str, Any] = {
        "configSource": {"path": record.containerfile, "digest": _digest_set(record.containerfile_digest)},
        "request": request,
    }
    dependencies: list[dict[str, Any]] = [
        {"uri": _base_uri(base), "digest": _digest_set(base.digest)} for base in record.base_images
    ]
    if record.context_digest is not None:
        external["context"] = {"digest": _digest_set(record.context_digest)}
        dependencies.append({"name": "context", "digest": _digest_set(record.context_digest)})
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": record.subject_name, "digest": _digest_set(record.subject_digest)}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": record.builder_id, "version": {"pybuild": record.builder_version}},
                "metadata": {"startedOn": _time(record.started), "finishedOn": _time(record.finished)},
            },
        },
    }
    return dump_json(statement)
