"""What the SBOM writers share: times in whole UTC seconds, and ids derived from content."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime

from .inventory import Inventory


def utc(when: datetime) -> datetime:
    """``when`` in UTC, whole seconds (a naive time is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(microsecond=0)


def content_uuid(inventory: Inventory, name: str, created: datetime, kind: str) -> uuid.UUID:
    """A name-based UUID (RFC 4122 version 5) of what a document says: its namespace or serial
    number, the same whenever the same document is made again, and never random."""
    doc = {
        "kind": kind,
        "name": name,
        "created": utc(created).isoformat(),
        "image": str(inventory.image.digest),
        "layers": [str(layer.digest) for layer in inventory.layers],
        "packages": [[p.type, p.name, p.version, p.purl, p.location] for p in inventory.packages],
        "skipped": inventory.skipped,
    }
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:pybuild:sbom:{key}")
