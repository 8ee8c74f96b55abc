"""A stage's state while it builds: its layers, its image config (with the history), the cache key
of its chain, the ARGs in scope and the shell; and the defaults every stage starts from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import warn
from ..layout import Descriptor, Digest, Platform, created_time, host_platform
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


def config_platform(config: Mapping[str, Any]) -> Platform:
    """The platform an image config says its binaries are for (the host's where it says nothing)."""
    host = host_platform()
    variant = config.get("variant")
    return Platform(
        architecture=str(config.get("architecture") or host.architecture),
        os=str(config.get("os") or host.os),
        variant=str(variant) if variant else None,
    )


def check_base_platform(config: Mapping[str, Any], want: Platform, what: str) -> None:
    """Warn when a base image is for another platform than the one asked for (it has no other)."""
    have = config_platform(config)
    if (have.os, have.architecture) != (want.os, want.architecture):
        warn(
            f"{what}: the image is for {platform_text(have)}, not {platform_text(want)} "
            "(it offers no other): its binaries run as that platform's"
        )


def with_variant(config: dict[str, Any], want: Platform) -> None:
    """Give the config the variant asked for when it is for that architecture and names none."""
    if want.variant and not config.get("variant") and config.get("architecture") == want.architecture:
        config["variant"] = want.variant
