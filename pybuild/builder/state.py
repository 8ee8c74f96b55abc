"""A stage's state while it builds: its layers, its image config (with the history), the cache key
of its chain, the ARGs in scope and the shell; and the defaults every stage starts from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..layout import Descriptor, Digest, Platform, created_time
from .containerfile import Stage

DEFAULT_SHELL = ["/bin/sh", "-c"]
# args every build knows without an ARG (their values reach RUN only when declared)
PROXY_ARGS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)

# a stage's or image's layers, bottom first: the blob's descriptor and the layer's diff_id
Layers = list[tuple[Descriptor, Digest]]


@dataclass
class StageState:
    stage: Stage
    layers: Layers
    config: dict[str, Any]
    key: str
    args: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    pending_dirs: list[str] = field(default_factory=list)
    cmd_set: bool = False

    @property
    def runtime(self) -> dict[str, Any]:
        rt = self.config.get("config")
        if not isinstance(rt, dict):
            rt = {}
            self.config["config"] = rt
        return rt

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.runtime.get("Env") or []:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def set_env(self, key: str, value: str) -> None:
        env = [e for e in self.runtime.get("Env") or [] if e.partition("=")[0] != key]
        env.append(f"{key}={value}")
        self.runtime["Env"] = env

    def scope(self) -> dict[str, str]:
        """Variables for expansion: ARGs in scope, then ENV (which wins)."""
        return {**self.args, **self.env}

    @property
    def workdir(self) -> str:
        return str(self.runtime.get("WorkingDir") or "/")

    @property
    def history(self) -> list[dict[str, Any]]:
        history = self.config.setdefault("history", [])
        assert isinstance(history, list)
        return history

    def add_layer(self, desc: Descriptor, diff_id: Digest) -> None:
        self.layers.append((desc, diff_id))
        self.config["rootfs"]["diff_ids"].append(str(diff_id))


def now(epoch: int | None) -> str:
    """A created time: ``epoch`` (--timestamp, SOURCE_DATE_EPOCH) to the second, else now."""
    return created_time(epoch)


def platform_text(platform: Platform) -> str:
    """OS/ARCH[/VARIANT], as BuildKit formats TARGETPLATFORM and BUILDPLATFORM."""
    return f"{platform.os}/{platform.architecture}" + (f"/{platform.variant}" if platform.variant else "")
