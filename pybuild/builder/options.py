"""`pybuild build`'s flag values that need more than splitting: build args and secrets, as buildah
and podman read them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import UsageError


def _build_arg(text: str, args: dict[str, str], environ: Mapping[str, str], where: str) -> None:
    """``NAME=VALUE``, or ``NAME`` alone: its value from the environment, and no such arg when the
    variable is unset (buildah's readBuildArg)."""
    name, sep, value = text.partition("=")
    if not name:
        raise UsageError(f"{where} {text!r}: expected NAME[=VALUE]")
    if sep:
        args[name] = value
    elif name in environ:
        args[name] = environ[name]
    else:
        args.pop(name, None)


def read_build_args(
    values: list[str], files: list[Path], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """--build-arg-file FILEs first, then --build-arg values (which win), as buildah reads them. A
    file has one arg a line; empty lines and lines starting with # are skipped."""
    env = os.environ if environ is None else environ
    args: dict[str, str] = {}
    for path in files:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(f"--build-arg-file {path}: cannot read: {reason or exc}") from None
        for number, line in enumerate(text.split("\n"), 1):
            if line and not line.startswith("#"):
                _build_arg(line, args, env, f"--build-arg-file {path}:{number}:")
    for value in values:
        _build_arg(value, args, env, "--build-arg")
    return args


def parse_secret(spec: str, environ: Mapping[str, str] | None = None) -> tuple[str, Path | bytes]:
    """One --secret value: ``id=ID[,src=FILE|,env=VAR][,type=file|env]``, as podman build reads it.
    Returns the id and a file to read when the step runs, or the value itself (from the
    environment). Error messages name the variable or file, never a value."""
    env = os.environ if environ is None else environ
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in ("id", "src", "source", "env", "type") or key in fields:
            raise UsageError(f"--secret {spec!r}: expected id=ID[,src=FILE|,env=VARIABLE][,type=file|env]")
        fields["src" if key == "source" else key] = value
    sid = fields.get("id", "")
    kind = fields.get("type")
    if not sid:
        raise UsageError(f"--secret {spec!r}: expected id=ID")
    if kind not in (None, "file", "env"):
        raise UsageError(f"--secret {spec!r}: type={kind}: expected file or env")
    if "env" in fields and ("src" in fields or kind == "file"):
        raise UsageError(f"--secret {spec!r}: give src=FILE or env=VARIABLE, not both")
    if kind == "env" or "env" in fields:
        name = fields.get("env") or fields.get("src") or sid
        if name not in env:
            raise UsageError(f"--secret {spec!r}: environment variable {name} is not set")
        return sid, env[name].encode()
    src = fields.get("src")
    if src is None and kind is None and sid in env:  # `id=ID` alone: a variable ID, else a file ID
        return sid, env[sid].encode()
    src = src or sid
    if not os.path.isfile(src):
        raise UsageError(f"--secret {spec!r}: {src} is not a file")
    return sid, Path(os.path.abspath(src))
