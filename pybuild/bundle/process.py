"""An image config's process (image-spec conversion.md): the argv, environment, working directory and
user its Entrypoint, Cmd, Env, WorkingDir and User say, with what a caller overrides. One reading,
shared by unpack (config.json), `pybuild run` and the builder's RUN; and :func:`run_image`, a
throwaway rootless container from an image."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..layout import ImageStore, load_image, locate, parse_platform

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORKS = ("host", "none")


@dataclass(frozen=True)
class Process:
    """What to run: ``args`` (may be empty: the caller decides), ``env`` (``K=V``, PATH included),
    ``cwd`` and ``user`` (a ``user[:group]`` spec, "" for root, resolved in the container)."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str

    @property
    def environment(self) -> dict[str, str]:
        return dict(e.partition("=")[::2] for e in self.env)


def image_process(
    runtime: Mapping[str, Any],
    *,
    command: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: str | None = None,
) -> Process:
    """The process of an image whose runtime config (the config's ``config`` object) is ``runtime``:
    ``command`` or else Entrypoint + Cmd; its Env with the default PATH first when it has none, then
    ``env`` (which wins, in place); ``cwd`` or WorkingDir or /; ``user`` or User or root."""
    args = list(command) or list(runtime.get("Entrypoint") or []) + list(runtime.get("Cmd") or [])
    environment: dict[str, str] = {}
    for item in runtime.get("Env") or []:
        key, _, value = str(item).partition("=")
        environment[key] = value
    if "PATH" not in environment:
        environment = {"PATH": DEFAULT_PATH, **environment}
    environment.update(env or {})
    return Process(
        args=tuple(str(a) for a in args),
        env=tuple(f"{k}={v}" for k, v in environment.items()),
        cwd=cwd or str(runtime.get("WorkingDir") or "") or "/",
        user=user if user is not None else str(runtime.get("User") or ""),
    )


@dataclass(frozen=True)
class Bind:
    """A bind mount for a container: host ``source`` at ``target``, read-only or not."""

    source: str
    target: str
    readonly: bool = False

    @classmethod
    def parse(cls, spec: str) -> Bind:
        """``SRC:DST[:ro|rw]`` with an absolute DST and an existing SRC (`pybuild run -v`)."""
        parts = spec.split(":")
        if (
            len(parts) not in (2, 3)
            or not parts[0]
            or not parts[1].startswith("/")
            or parts[2:] not in ([], ["ro"], ["rw"])
        ):
            raise UsageError(f"--volume {spec!r}: expected SRC:DST[:ro] with an absolute DST")
        if not os.path.exists(parts[0]):
            raise UsageError(f"--volume {spec!r}: {parts[0]} does not exist")
        return cls(os.path.abspath(parts[0]), parts[1], parts[2:] == ["ro"])


def run_image(
    store: ImageStore,
    ref: str,
    *,
    command: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: str | None = None,
    network: str = "host",
    binds: Sequence[Bind] = (),
    isolation: str | None = None,
    platform: str | None = None,
) -> int:
    """Run ``command`` (default: the image's Entrypoint + Cmd) in a throwaway rootless container over
    the layers of the image ``ref`` names (in ``store`` or oci:DIR[:TAG]; extracted once into
    ``store``); nothing it writes is kept. ``isolation`` picks the run mode (native, fuse, copy,
    inplace; None probes). ``platform`` (OS/ARCH[/VARIANT]) picks the image of an index (this
    machine's by default); a foreign image runs under the qemu-user emulator binfmt_misc has for it,
    or fails naming the fix. Returns the command's exit status."""
    from ..run import RunSpec, keep_out, run_container
    from ..run import isolation as chosen_isolation
    from ..run.emulation import require_emulation
    from ..run.layers import layer_dirs, remove_tree

    if network not in NETWORKS:
        raise UsageError(f"--network {network!r}: expected host or none")
    found = locate(store, ref)
    image = load_image(found.layout, found.descriptor, parse_platform(platform) if platform else None)
    target = image.config.platform
    require_emulation(target.os, target.architecture, target.variant, f"running {ref}")
    process = image_process(image.config.runtime, command=command, env=env, user=user, cwd=cwd)
    if not process.args:
        raise UsageError(f"{ref} has no Entrypoint or Cmd: give a command after --")
    lowers = layer_dirs(store, image)
    # locked while the container runs: `pybuild gc` removes it only once the run is over
    with store.private.run_workspace(store) as top:
        try:
            (top / "upper").mkdir()
            keep_out(store.root)  # in-place mode never touches the store
            with chosen_isolation(isolation):
                result = run_container(
                    RunSpec(
                        lowerdirs=lowers,
                        upperdir=top / "upper",
                        args=list(process.args),
                        env=list(process.env),
                        cwd=process.cwd,
                        user=process.user,
                        network=network,
                        mounts=[(b.source, b.target, b.readonly) for b in binds],
                    )
                )
        finally:
            remove_tree(top)
    return result.exit_status
