"""Edits to an image config (what umoci calls mutate): a validated :class:`ConfigChanges` value
applied to the config's JSON, history entries and created times, and :func:`edit_image`, which
writes the changed image (new config and manifest, layers shared) and names it.

Shared by ``pybuild config``, the builder's commit (its --label values) and repack (its history
entry and diff_id). Knows nothing of tar or processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from ..errors import UsageError
from .descriptor import Descriptor
from .image import Image, commit_image, copy_blobs, load_image
from .imagelayout import Layout
from .imagestore import ImageStore, destination, locate

# --clear FIELD: the runtime config fields that can be emptied first
CLEARABLE = {
    "cmd": "Cmd",
    "entrypoint": "Entrypoint",
    "env": "Env",
    "labels": "Labels",
    "volumes": "Volumes",
    "exposedports": "ExposedPorts",
}
PROTOCOLS = ("tcp", "udp", "sctp")


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int | None:
    """$SOURCE_DATE_EPOCH as seconds, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH {text!r} is not a number of seconds")
    return int(text)


def created_time(epoch: int | None) -> str:
    """A config's or history entry's created time: ``epoch`` to the second, else now (microseconds)."""
    if epoch is not None:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pairs(values: Mapping[str, str], flag: str) -> Mapping[str, str]:
    for key in values:
        if not key:
            raise UsageError(f"{flag} {key!r}: expected KEY=VALUE")
    return MappingProxyType(dict(values))


def _port(text: str) -> str:
    number, _, proto = text.partition("/")
    if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", *PROTOCOLS):
        raise UsageError(f"--expose {text!r}: expected PORT[/tcp|udp|sctp]")
    return f"{int(number)}/{proto or 'tcp'}"


@dataclass(frozen=True)
class ConfigChanges:
    """Changes to an image's runtime config, checked when made (a bad value raises UsageError naming
    the flag of `pybuild config` it comes from). Empty values change nothing."""

    cmd: Sequence[str] = ()
    entrypoint: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    volumes: Sequence[str] = ()
    exposed_ports: Sequence[str] = ()  # PORT[/PROTO], kept as PORT/PROTO
    stop_signal: str | None = None
    author: str | None = None
    clear: Sequence[str] = ()  # CLEARABLE keys, emptied before the rest applies

    def __post_init__(self) -> None:
        put = object.__setattr__
        for name in ("cmd", "entrypoint", "volumes", "exposed_ports", "clear"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise UsageError(f"{name} {value!r}: expected a list")
            put(self, name, tuple(value))
        for item in self.clear:
            if item.lower() not in CLEARABLE:
                raise UsageError(f"--clear {item!r}: expected one of {', '.join(CLEARABLE)}")
        put(self, "env", _pairs(self.env, "--env"))
        put(self, "labels", _pairs(self.labels, "--label"))
        put(self, "exposed_ports", tuple(_port(p) for p in self.exposed_ports))
        for path in self.volumes:
            if not path.startswith("/"):
                raise UsageError(f"--volume {path!r}: expected an absolute path")

    def apply(self, doc: dict[str, Any]) -> None:
        """Change the config JSON ``doc`` in place."""
        runtime = doc.setdefault("config", {}) or {}
        doc["config"] = runtime
        for item in self.clear:
            runtime.pop(CLEARABLE[item.lower()], None)
        if self.cmd:
            runtime["Cmd"] = list(self.cmd)
        if self.entrypoint:
            runtime["Entrypoint"] = list(self.entrypoint)
        if self.env:
            current = [e for e in runtime.get("Env") or [] if e.partition("=")[0] not in self.env]
            runtime["Env"] = current + [f"{k}={v}" for k, v in self.env.items()]
        if self.workdir is not None:
            runtime["WorkingDir"] = self.workdir
        if self.user is not None:
            runtime["User"] = self.user
        if self.labels:
            runtime["Labels"] = {**(runtime.get("Labels") or {}), **self.labels}
        for path in self.volumes:
            runtime["Volumes"] = runtime.get("Volumes") or {}
            runtime["Volumes"][path] = {}
        for port in self.exposed_ports:
            runtime["ExposedPorts"] = runtime.get("ExposedPorts") or {}
            runtime["ExposedPorts"][port] = {}
        if self.stop_signal is not None:
            runtime["StopSignal"] = self.stop_signal
        if self.author is not None:
            doc["author"] = self.author


def add_history(
    doc: dict[str, Any],
    created: str,
    created_by: str,
    *,
    diff_id: str | None = None,
    comment: str = "",
) -> None:
    """Set the config's created time and append a history entry: for the layer ``diff_id`` (added to
    rootfs.diff_ids), or an empty_layer entry when there is none."""
    doc["created"] = created
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if diff_id is None:
        entry["empty_layer"] = True
    else:
        doc["rootfs"]["diff_ids"].append(diff_id)
    doc.setdefault("history", []).append(entry)


def edit_image(
    image: Image,
    changes: ConfigChanges,
    into: Layout,
    tag: str,
    *,
    created_by: str,
    created: str | None = None,
) -> Descriptor:
    """A new image: ``image`` with ``changes`` and an empty_layer history entry (``created_by``, at
    ``created``, default now or SOURCE_DATE_EPOCH), written to ``into`` (blobs copied when it is
    another layout) and tagged ``tag`` there. Layers are shared; returns the new manifest's descriptor."""
    when = created or created_time(source_date_epoch())

    def change(doc: dict[str, Any]) -> None:
        changes.apply(doc)
        add_history(doc, when, created_by)

    config = image.config.changed(change)
    with into.writing():
        if into.root != image.layout.root:
            copy_blobs(image.layout, into, image.descriptor)
        desc = commit_image(
            into, config, image.layers, docker=image.is_docker, annotations=image.manifest.annotations or None
        )
        into.set_tag(tag, desc)
    return desc


def configure(
    store: ImageStore,
    ref: str,
    changes: ConfigChanges,
    *,
    tag: str | None = None,
    created_by: str = "pybuild config",
) -> Descriptor:
    """`pybuild config`: the image ``ref`` names (in ``store`` or oci:DIR[:TAG]) with ``changes``,
    named ``tag`` (default: the name it was found under). Returns the new manifest's descriptor."""
    found = locate(store, ref)
    image = load_image(found.layout, found.descriptor)
    layout, name = destination(store, tag or ref) if tag or found.name else (found.layout, "")
    if not name:
        raise UsageError(f"{ref!r} has no name to update: give one with -t")
    return edit_image(image, changes, layout, name, created_by=created_by)
