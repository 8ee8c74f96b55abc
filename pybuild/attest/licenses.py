"""License names as packages state them (Debian copyright files, apk's L:, Python metadata) turned into
SPDX license expressions, through the license-expression library's SPDX list.

A name the list does not know becomes ``LicenseRef-<name>``, whose text the SPDX document carries as
extracted licensing info, so nothing a package says is dropped or guessed at.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

# Debian's copyright-format names that are SPDX licenses under another name
_ALIASES = {"expat": "MIT", "zlib": "Zlib", "psf": "PSF-2.0", "python": "Python-2.0"}
_REF_CHARS = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass(frozen=True)
class License:
    """``text`` as a package gave it; ``expression`` in SPDX terms; ``refs`` the LicenseRef- names it
    uses, each with the text it stands for."""

    text: str
    expression: str
    refs: tuple[tuple[str, str], ...]

    @property
    def known(self) -> bool:
        """Every license in it is on the SPDX list."""
        return not self.refs


@functools.cache
def _licensing() -> Any:
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def license_ref(text: str) -> str:
    return "LicenseRef-" + (_REF_CHARS.sub("-", text).strip("-") or "unknown")


def _known(licensing: Any, key: str) -> str | None:
    """The SPDX key for ``key`` (any case, Debian's ``+`` for "or later", a few Debian names)."""
    candidates = [key, _ALIASES.get(key.lower(), key)]
    if key.endswith("+"):
        base = key[:-1]
        candidates += [f"{base}-or-later", f"{base}.0-or-later"]
    elif re.fullmatch(r".+-\d+(\.\d+)?", key):  # Debian's "GPL-2" is SPDX's "GPL-2.0-only"
        candidates += [f"{key}-only", f"{key}.0-only", f"{key}.0"]
    for candidate in candidates:
        info = licensing.validate(candidate)
        if not info.errors and info.normalized_expression:
            return str(info.normalized_expression)
    return None


@functools.cache
def spdx_license(text: str) -> License:
    """``text`` ("GPL-2+ or Apache-2.0", "MIT License", "BSD-3-clause") as an SPDX expression; text
    that is no expression at all becomes one ``LicenseRef-``."""
    text = " ".join(text.split())
    try:
        found = _parse(text)
    except Exception:  # the parser fails in many ways (even IndexError) on text that is no expression
        found = None
    if found is None:
        return License(text, license_ref(text), ((license_ref(text), text),))
    return found


def _parse(text: str) -> License | None:
    from license_expression import LicenseSymbol, LicenseWithExceptionSymbol

    licensing = _licensing()
    parsed = licensing.parse(text, validate=False)
    if parsed is None:
        return None
    refs: dict[str, str] = {}
    substitutions = {}
    for symbol in licensing.license_symbols(parsed, unique=True, decompose=False):
        if isinstance(symbol, LicenseWithExceptionSymbol):
            base, exception = str(symbol.license_symbol.key), str(symbol.exception_symbol.key)
            lic = _known(licensing, base)
            found = _known(licensing, f"{lic} WITH {exception}") if lic else None
            shown = f"{base} with {exception}"
        else:
            found = _known(licensing, str(symbol.key))
            shown = str(symbol.key)
        if found is None:
            found = license_ref(shown)
            refs[found] = shown
        substitutions[symbol] = LicenseSymbol(found)
    expression = str(parsed.subs(substitutions)) if substitutions else str(parsed)
    check = licensing.validate(expression)
    if [s for s in check.invalid_symbols if not str(s).startswith("LicenseRef-")]:
        return None
    return License(text, expression, tuple(sorted(refs.items())))


def combine(licenses: list[License]) -> License | None:
    """One license for all of ``licenses`` (each must hold): their conjunction, or None for none."""
    if not licenses:
        return None
    if len(licenses) == 1:
        return licenses[0]
    parts = [f"({x.expression})" if " " in x.expression else x.expression for x in licenses]
    refs = {ref: text for x in licenses for ref, text in x.refs}
    return License(" AND ".join(x.text for x in licenses), " AND ".join(parts), tuple(sorted(refs.items())))
