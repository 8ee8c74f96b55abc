"""SLSA v1 provenance statements: what they record, byte-identical for the same build record."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pybuild.attest import (
    IN_TOTO_JSON,
    PREDICATE_TYPE_ANNOTATION,
    SLSA_PROVENANCE_V1,
    BaseImage,
    BuildRecord,
    provenance_statement,
    reproducible_times,
)
from pybuild.errors import AttestError
from pybuild.layout import Digest, Layout, attach, referrers
from tests.fixtures.tools import validate_layout

BASE = Digest.of_bytes(b"base manifest")
RECORD = BuildRecord(
    subject_name="localhost/app:v1",
    subject_digest=Digest.of_bytes(b"image manifest"),
    containerfile="Containerfile",
    containerfile_digest=Digest.of_bytes(b"FROM debian\nRUN true\n"),
    platform="linux/amd64",
    started=datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    finished=datetime(2024, 1, 2, 3, 5, 0, tzinfo=UTC),
    base_images=(BaseImage("docker.io/library/debian:bookworm", BASE, "linux/amd64"),),
    context_digest=Digest.of_bytes(b"context"),
    build_args={"VERSION": "2", "HTTP_PROXY": "http://proxy:3128"},
    target="release",
)


def test_statement_records_the_build() -> None:
    statement = json.loads(provenance_statement(RECORD))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == SLSA_PROVENANCE_V1 == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [
        {"name": "localhost/app:v1", "digest": {"sha256": RECORD.subject_digest.encoded}}
    ]
    definition = statement["predicate"]["buildDefinition"]
    external = definition["externalParameters"]
    assert external["configSource"] == {
        "path": "Containerfile",
        "digest": {"sha256": RECORD.containerfile_digest.encoded},
    }
    assert external["request"] == {
        "args": {"HTTP_PROXY": "http://proxy:3128", "VERSION": "2"},
        "platform": "linux/amd64",
        "target": "release",
    }
    # the base image by digest, named as BuildKit names it
    assert definition["resolvedDependencies"][0] == {
        "uri": "pkg:docker/docker.io/library/debian@bookworm?platform=linux%2Famd64",
        "digest": {"sha256": BASE.encoded},
    }
    assert definition["resolvedDependencies"][1] == {
        "name": "context",
        "digest": {"sha256": RECORD.context_digest.encoded},  # type: ignore[union-attr]
    }
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == "urn:pybuild:builder"
    assert run["builder"]["version"] == {"pybuild": RECORD.builder_version}
    assert run["metadata"] == {"startedOn": "2024-01-02T03:04:05Z", "finishedOn": "2024-01-02T03:05:00Z"}


def pinned(started: datetime, finished: datetime) -> BuildRecord:
    """RECORD for a build that ran from ``started`` to ``finished`` under SOURCE_DATE_EPOCH=1700000000."""
    started, finished = reproducible_times(started, finished, 1700000000)
    return replace(RECORD, started=started, finished=finished)


def test_same_record_same_bytes_and_epoch_pins_the_times() -> None:
    assert provenance_statement(RECORD) == provenance_statement(replace(RECORD))
    # two builds at different times under SOURCE_DATE_EPOCH give identical statements
    first = pinned(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, 0, 1, tzinfo=UTC))
    second = pinned(datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 1, 0, 9, tzinfo=UTC))
    assert provenance_statement(first) == provenance_statement(second)
    assert json.loads(provenance_statement(first))["predicate"]["runDetails"]["metadata"] == {
        "startedOn": "2023-11-14T22:13:20Z",
        "finishedOn": "2023-11-14T22:13:20Z",
    }
    assert provenance_statement(replace(RECORD, build_args={"VERSION": "3"})) != provenance_statement(RECORD)


def test_no_target_no_context_and_bad_times() -> None:
    statement = json.loads(provenance_statement(replace(RECORD, target=None, context_digest=None)))
    assert "target" not in statement["predicate"]["buildDefinition"]["externalParameters"]["request"]
    assert len(statement["predicate"]["buildDefinition"]["resolvedDependencies"]) == 1
    with pytest.raises(AttestError, match=r"finished .* before it started"):
        provenance_statement(replace(RECORD, finished=datetime(2020, 1, 1, tzinfo=UTC)))


def test_provenance_attached_to_an_image(busybox_layout: Path, tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "oci"
    shutil.copytree(busybox_layout, path)
    layout = Layout.open(path)
    image = layout.resolve("latest")
    data = provenance_statement(replace(RECORD, subject_digest=image.digest))
    artifact = attach(
        layout, image, IN_TOTO_JSON, IN_TOTO_JSON, data, {PREDICATE_TYPE_ANNOTATION: SLSA_PROVENANCE_V1}
    )
    assert referrers(layout, image.digest, IN_TOTO_JSON) == [artifact]
    assert referrers(layout, image.digest, "application/spdx+json") == []
    assert artifact.annotations == {PREDICATE_TYPE_ANNOTATION: SLSA_PROVENANCE_V1}
    validate_layout(path, "latest")
