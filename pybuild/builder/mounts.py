"""RUN --mount, as BuildKit's Dockerfile reference defines it: bind (from the context, another stage
or an image), cache (empty, or seeded from a stage), tmpfs and secret.

``parse_mount`` turns one ``--mount`` value into a ``RunMount``: what the step's cache key needs
(``spec``: never a secret's value, never a host path) and what the run needs. ``RunMounts.add``
prepares each for ``run_container``: plain binds, views of another stage's layer directories
(mounted directly, no export, no copy), secret files held in memory, and tmpfs mounts (a real
tmpfs in the container's mount namespace, with BuildKit's ``size=``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ContainerfileError, RunError
from ..layout import Descriptor, Digest, Layout
from ..layout.private import SHARING
from ..run import (
    FileMount,
    TmpfsMount,
    ViewMount,
    copy_stack,
    force_remove,
    run_in_userns,
    view_path,
    with_view,
)
from ..run.paths import join_in_root
from .containerfile import Instruction, expand_in

TARGET = {"type", "target", "dst", "destination"}
KEYS = {
    "bind": TARGET | {"source", "src", "from", "ro", "readonly", "rw", "readwrite"},
    "cache": TARGET | {"source", "src", "from", "id", "sharing", "ro", "readonly", "mode", "uid", "gid"},
    "tmpfs": TARGET | {"size"},
    "secret": TARGET | {"id", "required", "mode", "uid", "gid", "env"},
}
TRUE = ("", "true", "1")
# a source stage or image: its layers (bottom first) and where their blobs are
Layers = list[tuple[Descriptor, Digest]]
Resolver = Callable[[str], Layers]


@dataclass
class RunMount:
    kind: str  # bind, cache, tmpfs, secret
    target: str | None  # None: a secret given only as an environment variable
    spec: list[Any]  # for the step's cache key (JSON values)
    source: str = ""  # a path in the context (bind) or in the `from` tree
    readonly: bool = False
    layers: Layers | None = None  # bind/cache from=
    origin: str = ""  # the from= text
    cache_id: str = ""
    secret_id: str = ""
    env: str | None = None
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    required: bool = False
    size: int = 0  # tmpfs: its limit in bytes, 0 for none
    sharing: str = "shared"  # cache: shared, private or locked (BuildKit's default: shared)


def required_error(inst: Instruction, secret_id: str) -> ContainerfileError:
    return ContainerfileError(
        f"RUN --mount=type=secret: secret {secret_id!r} is required but was not given",
        file=inst.file,
        line=inst.line,
        hints=[f"give it with --secret id={secret_id},src=FILE (or env=VARIABLE)"],
    )


def check_required(inst: Instruction, mounts: list[RunMount], given: Mapping[str, object]) -> None:
    """A required secret that was not given fails the step before anything runs (or is cached)."""
    for mount in mounts:
        if mount.kind == "secret" and mount.required and mount.secret_id not in given:
            raise required_error(inst, mount.secret_id)


def _number(inst: Instruction, key: str, text: str, base: int = 10) -> int:
    try:
        value = int(text, base)
    except ValueError:
        value = -1
    if value < 0 or (key == "mode" and value > 0o7777):
        raise inst.error(f"RUN --mount {key}={text}: expected {'an octal mode' if base == 8 else 'a number'}")
    return value


_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp])?i?b?", re.IGNORECASE)


def _size(inst: Instruction, text: str) -> int:
    """A tmpfs ``size=`` in bytes, as BuildKit reads it (go-units' RAMInBytes): a number, with an
    optional binary unit k, m, g, t or p (``64m``, ``1.5g``, ``512KiB``, ``100b``); 0: no limit."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise inst.error(f"RUN --mount size={text}: expected a size in bytes, such as 64m or 1g")
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * 1024 ** (" kmgtp".index(unit) if unit else 0))


def _flag(opts: dict[str, str], *names: str) -> bool:
    return any(name in opts and opts[name].lower() in TRUE for name in names)


def parse_mount(
    inst: Instruction,
    text: str,
    scope: Mapping[str, str],
    workdir: str,
    context: Path,
    resolve: Resolver,
) -> RunMount:
    """One ``--mount`` value of ``inst``; ``resolve(name)`` gives the layers of a stage or image."""
    opts: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if key:
            opts[key] = expand_in(inst, value, scope) if sep else ""
    kind = opts.get("type", "bind")
    if kind not in KEYS:
        raise inst.error(f"RUN --mount type={kind}: expected bind, cache, tmpfs or secret")
    unknown = sorted(set(opts) - KEYS[kind])
    if unknown:
        raise inst.error(f"RUN --mount type={kind}: unknown option {unknown[0]!r}")
    target = opts.get("target") or opts.get("dst") or opts.get("destination") or None
    if target and not target.startswith("/"):
        target = os.path.normpath(os.path.join(workdir, target))
    if kind == "secret":
        return _secret(inst, opts, target)
    if not target:
        raise inst.error(f"RUN --mount type={kind} needs target=PATH")
    source = (opts.get("source") or opts.get("src") or "").strip()
    from_ = opts.get("from", "")
    if kind == "tmpfs":
        size = _size(inst, opts["size"]) if "size" in opts else 0
        return RunMount(kind, target, ["tmpfs", target, size], size=size)
    layers = resolve(from_) if from_ else None
    # the source tree's identity is its content (diff_ids): a change there reruns the step
    origin = ["from", from_, [str(d) for _, d in layers]] if layers is not None else []
    if kind == "cache":
        cache_id = opts.get("id") or target
        mode = _number(inst, "mode", opts["mode"], 8) if "mode" in opts else None
        uid = _number(inst, "uid", opts["uid"]) if "uid" in opts else 0
        gid = _number(inst, "gid", opts["gid"]) if "gid" in opts else 0
        sharing = (opts.get("sharing") or "shared").lower()
        if sharing not in SHARING:
            raise inst.error(f"RUN --mount sharing={opts['sharing']}: expected shared, private or locked")
        return RunMount(
            kind,
            target,
            ["cache", cache_id, target, source, *origin],
            sharing=sharing,
            source=source,
            readonly=_flag(opts, "ro", "readonly"),
            layers=layers,
            origin=from_,
            cache_id=cache_id,
            mode=mode,
            uid=uid,
            gid=gid,
        )
    readonly = not _flag(opts, "rw", "readwrite")
    if layers is None:  # the build context: symlinks in it are followed inside it, never out of it
        path = str(join_in_root(context, source))
        if not os.path.exists(path):
            raise inst.error(f"RUN --mount=type=bind: source {source!r} is not in the build context")
        return RunMount(kind, target, ["bind", source, target, str(readonly)], source=path, readonly=readonly)
    return RunMount(
        kind,
        target,
        ["bind", source, target, str(readonly), *origin],
        source=source,
        readonly=readonly,
        layers=layers,
        origin=from_,
    )


def _secret(inst: Instruction, opts: dict[str, str], target: str | None) -> RunMount:
    secret_id = opts.get("id") or (os.path.basename(target) if target else "")
    if not secret_id:
        raise inst.error("RUN --mount=type=secret needs id=ID")
    env = opts.get("env") or None
    if target is None and env is None:
        target = f"/run/secrets/{secret_id}"
    mode = _number(inst, "mode", opts["mode"], 8) if "mode" in opts else 0o400
    uid = _number(inst, "uid", opts["uid"]) if "uid" in opts else 0
    gid = _number(inst, "gid", opts["gid"]) if "gid" in opts else 0
    required = _flag(opts, "required")
    spec = ["secret", secret_id, target or "", env or "", oct(mode), str(uid), str(gid), str(required)]
    return RunMount(
        "secret", target, spec, secret_id=secret_id, env=env, mode=mode, uid=uid, gid=gid, required=required
    )


@dataclass
class RunMounts:
    """What a RUN's mounts give ``run_container``, prepared for one run."""

    store: Layout
    scratch: Path
    lowerdirs_of: Callable[[Layers], list[Path]]
    secrets: Mapping[str, Path | bytes]
    binds: list[tuple[str, str, bool]] = field(default_factory=list)
    views: list[ViewMount] = field(default_factory=list)
    files: list[FileMount] = field(default_factory=list)
    tmpfs: list[TmpfsMount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    caches: dict[str, str] = field(default_factory=dict)  # cache name -> the instance held

    def hold_caches(self, mounts: list[RunMount], stack: contextlib.ExitStack) -> None:
        """Take the RUN's cache mounts as their ``sharing`` says, held until ``stack`` closes (the
        whole RUN): in the order of their names, so two RUNs never wait for each other in a circle;
        a cache mounted twice by one RUN is held once."""
        wanted: dict[str, str] = {}
        for mount in mounts:
            if mount.kind == "cache":
                name = _cache_name(mount)
                if wanted.get(name) != "locked":  # the strongest wish of the RUN for it
                    wanted[name] = mount.sharing
        for name in sorted(wanted):
            if name not in self.caches:
                self.caches[name] = stack.enter_context(
                    self.store.private.cache_mount_held(name, wanted[name])
                )

    def add(self, mount: RunMount, stack: contextlib.ExitStack, inst: Instruction) -> None:
        assert mount.target is not None or mount.kind == "secret"
        what = f"RUN --mount=type={mount.kind}" + (f",from={mount.origin}" if mount.origin else "")
        if mount.kind == "secret":
            self._secret(mount, inst)
        elif mount.kind == "tmpfs":  # mounted by the container itself: nothing on disk
            self.tmpfs.append(TmpfsMount(str(mount.target), mount.size))
        elif mount.kind == "cache":
            self.hold_caches([mount], stack)
            folder = self._cache_dir(mount, self.caches[_cache_name(mount)], inst, what)
            self.binds.append((str(folder), str(mount.target), mount.readonly))
        elif mount.layers is not None:
            lowers = self.lowerdirs_of(mount.layers)
            self.views.append(ViewMount(lowers, str(mount.target), mount.source, mount.readonly, what))
        elif mount.readonly:
            self.binds.append((mount.source, str(mount.target), True))
        else:  # rw from the context: a view of it, so that writes are thrown away (BuildKit's rw)
            self.views.append(ViewMount([Path(mount.source)], str(mount.target), "", False, what))

    def _secret(self, mount: RunMount, inst: Instruction) -> None:
        given = self.secrets.get(mount.secret_id)
        if given is None:
            if mount.required:
                raise required_error(inst, mount.secret_id)
            return  # as BuildKit: nothing is mounted, nothing is set; the command decides
        if isinstance(given, bytes):
            data = given
        else:
            try:
                data = Path(given).read_bytes()
            except OSError as exc:
                raise inst.error(
                    f"RUN --mount=type=secret: cannot read secret {mount.secret_id!r}: {exc.strerror or exc}"
                ) from None
        if mount.env:
            self.env[mount.env] = data.decode(errors="replace")
        if mount.target:
            mode = 0o400 if mount.mode is None else mount.mode
            self.files.append(FileMount(mount.target, data, mode, mount.uid, mount.gid))

    def _cache_dir(self, mount: RunMount, instance: str, inst: Instruction, what: str) -> Path:
        """The folder of the cache mount's ``instance`` (held: ``hold_caches``), kept in the store
        between builds, made (empty, or seeded from the ``from=`` tree) the first time."""
        folder = self.store.private.cache_mount(instance)
        if folder.is_dir():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = folder.parent / f".tmp-{os.getpid()}-{_secrets.token_hex(4)}"
        try:
            if mount.layers is not None:
                lowers = self.lowerdirs_of(mount.layers)
                view = ViewMount(lowers, "", mount.source, True, what)
                with_view(lowers, self.scratch, lambda merged: _seed(view_path(merged, view), temp, view))
            else:
                temp.mkdir()
            mode, uid, gid = mount.mode, mount.uid, mount.gid
            if mode is not None or uid or gid:
                run_in_userns(lambda: _own(temp, mode, uid, gid))
            try:
                os.rename(temp, folder)
            except OSError:
                if not folder.is_dir():
                    raise
                # another build (sharing the cache) made it first: use that one
        except OSError as exc:
            raise inst.error(f"{what}: cannot make the cache mount: {exc.strerror or exc}") from None
        finally:
            if temp.exists():
                run_in_userns(lambda: force_remove(temp))
        return folder


def _cache_name(mount: RunMount) -> str:
    """The name of a cache mount in the store: its id; one seeded from a stage (``from=``) is its
    own cache, keyed by its base too (as BuildKit's)."""
    origin = "" if mount.layers is None else "\0".join([mount.source, *(str(d) for _, d in mount.layers)])
    name = hashlib.sha256(f"{mount.cache_id}\0{origin}".encode() if origin else mount.cache_id.encode())
    return name.hexdigest()[:32]


def _seed(source: str, dest: Path, view: ViewMount) -> None:
    """Copy the tree at ``source`` (in a mounted view) to ``dest``, owners, modes and times kept."""
    if not os.path.isdir(source):
        raise RunError(f"{view.what}: source {view.source or '/'} is not a directory")
    copy_stack([Path(source)], dest).close()


def _own(path: Path, mode: int | None, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    if mode is not None:
        os.chmod(path, mode)
