"""Debian packages: dpkg's status database (``/var/lib/dpkg/status``, or distroless images'
``/var/lib/dpkg/status.d/*``) read with python-debian, licenses from machine-readable copyright files.

Paragraphs are checked line by line before python-debian reads them (it passes over lines it cannot
read without a word): a paragraph with a line that is no field and no continuation, or without a
Package or Version, is skipped and said so, and the rest of the file still counts.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# dpkg's package states that leave the package's files in place (dpkg-query(1), "Status")
_PRESENT = frozenset(
    {"installed", "half-installed", "unpacked", "half-configured", "triggers-awaited", "triggers-pending"}
)
_FIELD = re.compile(r"[!-9;-~][!-9;-~]*:")  # deb822: a field name is printable ASCII without ":"
_MAX_PROBLEMS_SHOWN = 1


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str | None
    maintainer: str | None
    source: str | None  # the source package, "NAME" or "NAME (VERSION)"


def _paragraphs(text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of each blank-line separated paragraph."""
    lines: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line)
        elif lines:
            yield start, lines
            lines = []
    if lines:
        yield start, lines


def _bad_line(start: int, lines: list[str]) -> str | None:
    for offset, line in enumerate(lines):
        if line[0] in " \t":
            if offset == 0:
                return f"line {start}: a continuation line starts the paragraph"
            continue
        if not _FIELD.match(line) or "\0" in line:
            return f"line {start + offset}: not a 'Field: value' line"
    return None


def parse_status(data: bytes, where: str) -> tuple[list[DebPackage], list[str]]:
    """The packages present in a dpkg status file, and one line about the paragraphs skipped."""
    from debian.deb822 import Deb822

    text = data.decode("utf-8", errors="replace")
    packages: list[DebPackage] = []
    problems: list[str] = []
    total = 0
    for start, lines in _paragraphs(text):
        total += 1
        bad = _bad_line(start, lines)
        if bad is not None:
            problems.append(bad)
            continue
        fields = Deb822(lines)
        name = fields.get("Package", "").strip()
        version = fields.get("Version", "").strip()
        status = fields.get("Status", "install ok installed").split()
        if not name:
            problems.append(f"line {start}: paragraph without a Package field")
            continue
        if len(status) != 3:
            problems.append(f"line {start}: package {name}: Status {' '.join(status)!r} is not 3 words")
            continue
        if status[2] not in _PRESENT:
            continue  # removed, or only its conffiles left: not in the image
        if not version:
            problems.append(f"line {start}: package {name} has no Version")
            continue
        packages.append(
            DebPackage(
                name=name,
                version=version,
                architecture=fields.get("Architecture", "").strip() or None,
                maintainer=" ".join(fields.get("Maintainer", "").split()) or None,
                source=fields.get("Source", "").strip() or None,
            )
        )
    skipped = []
    if total == 0 and data.strip():
        skipped.append(f"{where}: corrupt: no package paragraphs, skipped")
    elif problems:
        skipped.append(
            f"{where}: corrupt: {len(problems)} of {total} paragraphs skipped ({'; '.join(problems[:1])}"
            + (", ..." if len(problems) > _MAX_PROBLEMS_SHOWN else "")
            + ")"
        )
    return packages, skipped


def source_of(package: DebPackage) -> tuple[str, str | None] | None:
    """(source name, source version or None) where the source package differs from the binary."""
    if not package.source:
        return None
    name, _, rest = package.source.partition(" ")
    version = rest.strip().removeprefix("(").removesuffix(")").strip() or None
    if name == package.name and version in (None, package.version):
        return None
    return name, version


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """python-debian logs what it fixes on the way (an old Format URL): not ours to print."""
    logger = logging.getLogger(name)
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = before


def copyright_licenses(data: bytes) -> list[str]:
    """The license names of a machine-readable (DEP-5) copyright file, sorted; [] for any other."""
    from debian.copyright import Copyright, Error, NotMachineReadableError

    text = data.decode("utf-8", errors="replace")
    try:
        with _quiet("debian.copyright"):
            parsed = Copyright(text.splitlines(), strict=False)
            found = set()
            for paragraph in parsed.all_files_paragraphs():
                license: Any = paragraph.license
                if license is not None and license.synopsis.strip():
                    found.add(" ".join(license.synopsis.split()))
    except (NotMachineReadableError, Error, ValueError):
        return []
    return sorted(found)
