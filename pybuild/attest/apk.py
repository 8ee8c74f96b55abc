"""Alpine packages: apk's installed database, ``/lib/apk/db/installed``.

One package per blank-line separated block of ``K:value`` lines (apk-tools' "installed database"
format): P name, V version, A architecture, L license, m maintainer, o origin (source) package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"([A-Za-z]):(.*)")


@dataclass(frozen=True)
class ApkPackage:
    name: str
    version: str
    architecture: str | None
    license: str | None
    maintainer: str | None
    origin: str | None


def parse_installed(data: bytes, where: str) -> tuple[list[ApkPackage], list[str]]:
    """The packages of an apk installed database, and one line about the blocks skipped."""
    text = data.decode("utf-8", errors="replace")
    packages: list[ApkPackage] = []
    problems: list[str] = []
    total = 0
    fields: dict[str, str] = {}
    start = 0
    bad: str | None = None

    def finish() -> None:
        nonlocal total
        total += 1
        if bad is not None:
            problems.append(bad)
        elif not fields.get("P") or not fields.get("V"):
            problems.append(f"line {start}: package without a P: name or V: version")
        else:
            packages.append(
                ApkPackage(
                    name=fields["P"],
                    version=fields["V"],
                    architecture=fields.get("A") or None,
                    license=fields.get("L") or None,
                    maintainer=fields.get("m") or None,
                    origin=fields.get("o") or None,
                )
            )

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if fields or bad:
                finish()
            fields, bad = {}, None
            continue
        if not fields and bad is None:
            start = number
        match = _LINE.fullmatch(line)
        if match is None or "\0" in line:
            bad = bad or f"line {number}: not a 'K:value' line"
            continue
        # files (F:, R:, a:, Z:) repeat; only the first of each package field is wanted
        fields.setdefault(match.group(1), match.group(2).strip())
    if fields or bad:
        finish()
    skipped = []
    if problems:
        skipped.append(
            f"{where}: corrupt: {len(problems)} of {total} packages skipped ({problems[0]}"
            + (", ..." if len(problems) > 1 else "")
            + ")"
        )
    return packages, skipped
