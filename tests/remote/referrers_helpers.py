"""Shared by the referrers tests: images with artifacts in a store, reading a registry directly."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from pybuild.layout import Descriptor, ImageStore, attach

SPDX = "application/spdx+json"
SIG = "application/vnd.example.signature"
CREATED = {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def image_in_store(cli: Any, layout: Path, name: str, *, plain: bool) -> str:
    """busybox into ``cli``'s store as ``name``; ``plain``: with the uncompressed layers a build
    leaves (a push then gzips them: the pushed manifest is a new one). Its manifest digest."""
    args = ["--compression", "none"] if plain else []
    cli("copy", "-q", *args, f"oci:{layout}", name)
    return str(json.loads(cli("inspect", "--json", name).stdout)["digest"])


def attach_to(store: Path, subject: str, artifact_type: str, data: bytes) -> Descriptor:
    """An artifact of ``data`` attached to ``subject`` (a name, or a digest of an artifact) in the store."""
    layout = ImageStore.at(store)
    if subject.startswith("sha256:"):
        found = [d for d in layout.read_index().manifests if str(d.digest) == subject]
        desc = found[0]
    else:
        _, desc = layout.lookup(subject)
    return attach(layout, desc, artifact_type, "application/octet-stream", data, CREATED)


def fallback_tag(digest: str) -> str:
    return digest.replace(":", "-")


def get(host: str, path: str) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://{host}{path}", headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.read(), dict(resp.headers)


def tags(host: str, repo: str) -> list[str]:
    return list(json.loads(get(host, f"/v2/{repo}/tags/list")[0])["tags"])


def warnings_of(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``warning:`` lines of a command that worked (no traceback, no error)."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
