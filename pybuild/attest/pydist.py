"""Python distributions: the core metadata of ``*.dist-info/METADATA`` and ``*.egg-info/PKG-INFO``
under site-packages or dist-packages, read with pypa's ``packaging``.

A distribution counts when its Metadata-Version, Name and Version pass ``packaging``'s validation;
else it is skipped and said so. License: License-Expression, else a one-line License, else the
license classifiers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_UNKNOWN = frozenset({"", "unknown", "none", "n/a"})
_NOT_A_LICENSE = frozenset({"OSI Approved", "Other/Proprietary License", "Public Domain"})


@dataclass(frozen=True)
class PyDist:
    name: str  # as the metadata spells it
    normalized: str  # PEP 503's normalized name, as purls spell it
    version: str
    license: str | None
    author: str | None


def parse_metadata(data: bytes, where: str) -> tuple[PyDist | None, str | None]:
    """The distribution ``data`` describes, or None and one line saying why it was skipped."""
    from packaging.metadata import InvalidMetadata, Metadata, parse_email
    from packaging.utils import canonicalize_name

    raw, _unparsed = parse_email(data)
    core = {key: raw[key] for key in ("metadata_version", "name", "version") if key in raw}
    try:
        metadata = Metadata.from_raw(core, validate=True)  # type: ignore[arg-type]
    except ExceptionGroup as group:
        reasons = "; ".join(str(exc) for exc in group.exceptions if isinstance(exc, InvalidMetadata))
        return None, f"{where}: bad metadata ({reasons or group}), skipped"
    except InvalidMetadata as exc:
        return None, f"{where}: bad metadata ({exc}), skipped"
    return (
        PyDist(
            name=metadata.name,
            normalized=str(canonicalize_name(metadata.name)),
            version=str(metadata.version),
            license=_license(raw),
            author=_author(raw),
        ),
        None,
    )


def _license(raw: Mapping[str, Any]) -> str | None:
    expression = raw.get("license_expression")
    if isinstance(expression, str) and expression.strip():
        return expression.strip()
    text = raw.get("license")
    text = text.strip() if isinstance(text, str) else ""
    if "\n" not in text and len(text) <= 120 and text.lower() not in _UNKNOWN:
        return text
    classifiers = raw.get("classifiers")
    found = []
    if isinstance(classifiers, list):
        for c in classifiers:
            parts = [p.strip() for p in str(c).split("::")]
            if parts[0] == "License" and len(parts) > 1 and parts[-1] not in _NOT_A_LICENSE:
                found.append(parts[-1])
    return " AND ".join(sorted(set(found))) if found else None


def _author(raw: Mapping[str, Any]) -> str | None:
    for key in ("author", "author_email", "maintainer", "maintainer_email"):
        value = raw.get(key)
        if isinstance(value, str) and value.strip() and value.strip().lower() not in _UNKNOWN:
            return re.sub(r"\s+", " ", value.strip())
    return None
