"""Registry credentials: containers' auth.json (and Docker's config.json), login and logout.

Entries live under ``"auths"`` keyed by registry host, with ``"auth"`` = base64 of ``user:password``.
Files read, first hit wins: ``$REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json``,
``~/.config/containers/auth.json``, ``~/.docker/config.json``. ``login`` writes the first of those
that can be written (``$REGISTRY_AUTH_FILE`` or the runtime dir, else ``~/.config``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuthError, UsageError


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """``USER:PASS`` as given to ``--creds``."""
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise UsageError("invalid credentials: expected USER:PASSWORD")
        return cls(user, password)

    def encoded(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")

    def __repr__(self) -> str:  # never show the password
        return f"Credentials({self.username!r}, '***')"


def auth_files() -> list[Path]:
    """The files credentials are read from, in order."""
    out: list[Path] = []
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        out.append(Path(explicit))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        out.append(Path(runtime) / "containers" / "auth.json")
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    out.append(Path(config) / "containers" / "auth.json")
    docker = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    out.append(Path(docker) / "config.json")
    return out


def default_auth_file() -> Path:
    """Where ``login`` writes."""
    return auth_files()[0]


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AuthError(f"cannot read auth file {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuthError(f"auth file {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AuthError(f"auth file {path} is not a JSON object")
    return doc


def _key_matches(key: str, registry: str) -> bool:
    # Docker writes "https://index.docker.io/v1/" and URLs; containers writes bare hosts or host/repo.
    host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    if registry == "docker.io" and host in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return True
    return host == registry


def _decode(entry: Any, path: Path, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise AuthError(f"auth file {path}: entry {key!r} is not base64 USER:PASSWORD") from None
        user, sep, password = text.partition(":")
        if not sep:
            raise AuthError(f"auth file {path}: entry {key!r} is not base64 USER:PASSWORD")
        return Credentials(user, password)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"])
    return None


def find_credentials(registry: str, files: list[Path] | None = None) -> Credentials | None:
    """Stored credentials for ``registry`` (host[:port]), or None."""
    for path in files if files is not None else auth_files():
        auths = _read(path).get("auths")
        if not isinstance(auths, dict):
            continue
        for key, entry in auths.items():
            if isinstance(key, str) and _key_matches(key, registry):
                found = _decode(entry, path, key)
                if found is not None:
                    return found
    return None


def _write(path: Path, doc: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t", sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as exc:
        raise AuthError(f"cannot write auth file {path}: {exc.strerror or exc}") from None


def store_credentials(registry: str, creds: Credentials, path: Path | None = None) -> Path:
    """Save ``creds`` for ``registry`` in the auth file; returns the file written."""
    path = path or default_auth_file()
    doc = _read(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    auths[registry] = {"auth": creds.encoded()}
    doc["auths"] = auths
    _write(path, doc)
    return path


def remove_credentials(registry: str, path: Path | None = None) -> bool:
    """Forget ``registry`` in the auth file; False when there was nothing to forget."""
    path = path or default_auth_file()
    doc = _read(path)
    auths = doc.get("auths")
    if not isinstance(auths, dict) or registry not in auths:
        return False
    del auths[registry]
    _write(path, doc)
    return True


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in re.finditer(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))', rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params
