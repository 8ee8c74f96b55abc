"""What a build is asked to do: :class:`BuildOptions`, a frozen value that refuses bad input when it
is made (one :class:`~pybuild.errors.UsageError` line), and the flag values that need more than
splitting: build args and secrets, as buildah and podman read them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..layout import Platform, host_platform, parse_name, parse_platform, parse_reference

if TYPE_CHECKING:
    from ..remote import RegistryOptions
    from ..remote.buildcache import CacheRef

FORMATS = ("oci", "docker")
COMPRESSIONS = ("gzip", "zstd", "none")
PULL_POLICIES = ("always", "missing", "never")
NETWORKS = ("host", "none")
# how steps run (run/modes.py): None or "auto" probes native overlay, fuse-overlayfs, copy
ISOLATIONS = ("auto", "native", "fuse", "copy", "inplace")
SBOM_FORMATS = ("spdx", "cyclonedx")


# Go's time.ParseDuration units (what buildah's --cache-ttl and a HEALTHCHECK's durations take)
DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


def go_duration(text: str) -> int | None:
    """A Go duration (``1m30s``, ``500ms``, ``168h``) in nanoseconds; None when it is not one."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|\u00b5s|ms|s|m|h)", text)
    if not text or "".join(n + u for n, u in parts) != text:
        return None
    return int(sum(float(n) * DURATION_UNITS[u] for n, u in parts))


def parse_duration(text: str, flag: str) -> float:
    """A flag's Go duration (``--cache-ttl 168h``), in seconds; more than zero."""
    ns = go_duration(text.strip())
    if ns is None or ns <= 0:
        raise UsageError(f"{flag} {text!r}: expected a duration such as 30m, 12h or 168h")
    return ns / 1e9


@dataclass(frozen=True)
class Volume:
    """``--volume HOST:CONTAINER[:ro|rw]``: a host directory or file bound into every RUN step, as
    ``buildah build -v`` binds it. The host path never enters a step's cache key."""

    host: Path
    target: str
    readonly: bool = False

    @classmethod
    def parse(cls, text: str) -> Volume:
        host, sep, rest = text.partition(":")
        target, _, opts = rest.partition(":")
        if not sep or not host or not target.startswith("/"):
            raise UsageError(f"--volume {text!r}: expected HOST:CONTAINER[:ro|rw], CONTAINER absolute")
        readonly = False
        for opt in opts.split(",") if opts else []:
            if opt not in ("ro", "rw"):
                raise UsageError(f"--volume {text!r}: option {opt!r}: pybuild takes ro or rw")
            readonly = opt == "ro"
        path = Path(os.path.abspath(host))
        if not path.exists():
            raise UsageError(f"--volume {text!r}: {path} does not exist")
        return cls(path, os.path.normpath(target), readonly)

    def key(self) -> list[str]:
        """What a RUN step's cache key holds of it: the target and the mode, not the host path."""
        return [self.target, "ro" if self.readonly else "rw"]


def _frozen(values: Mapping[str, str] | Iterable[tuple[str, str]], flag: str) -> Mapping[str, str]:
    """A read-only copy of NAME -> VALUE pairs; every name must be non-empty text."""
    pairs = dict(values)
    for key, value in pairs.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise UsageError(f"{flag} {key!r}: expected NAME=VALUE")
    return MappingProxyType(pairs)


@dataclass(frozen=True)
class BuildOptions:
    """One build's inputs, checked when made: a bad value raises :class:`UsageError` naming the flag
    it came from. Collections are stored read-only; secrets never appear in ``repr``."""

    context: Path
    containerfile: Path | None = None  # default: Containerfile, then Dockerfile, in ``context``; "-": stdin
    tags: Sequence[str] = ()  # store names and oci:DIR:TAG (kept as a tuple)
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    format: str = "oci"
    # None: uncompressed in the store (as buildah keeps its layers); oci: targets and later pushes
    # gzip uncompressed layers on the way out
    compression: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    timestamp: int | None = None
    network: str = "host"
    # id -> a file to read, or the value itself (--secret id=ID,env=VAR)
    secrets: Mapping[str, Path | bytes] = field(default_factory=dict, repr=False)
    ignorefile: Path | None = None
    pull: str = "missing"
    # OS/ARCH[/VARIANT], or several joined by commas: one image each (an index, see ``manifest``)
    platform: str | None = None
    all_platforms: bool = False  # every platform the base images offer (all of them)
    manifest: str | None = None  # a manifest list in the store the images are added to (made if missing)
    jobs: int | None = None  # stages and platforms built at the same time; None: the number of cores
    layers: bool = True
    # how base images are pulled: --creds, --tls-verify, --cert-dir, --authfile
    registry: RegistryOptions | None = None
    # how steps run: None (auto), native, fuse, copy or inplace (root in a throwaway CI container)
    isolation: str | None = None
    # attestations attached to the image as OCI 1.1 referrers: an SBOM (spdx: SPDX 2.3 JSON,
    # cyclonedx: CycloneDX 1.5 JSON) and a SLSA v1 provenance statement
    sbom: bool = False
    sbom_format: str = "spdx"
    provenance: bool = False
    # the shared build cache: REPO (HOST/PATH in a registry) or oci:DIR, to import from (in order)
    # and to export to; entries older than ``cache_ttl`` seconds are ignored
    cache_from: Sequence[str] = ()
    cache_to: str | None = None
    cache_ttl: float | None = None
    # --volume: host paths bound into every RUN step
    volumes: Sequence[Volume] = ()

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "context", Path(self.context))
        if self.containerfile is not None:
            put(self, "containerfile", Path(self.containerfile))
        if self.ignorefile is not None:
            put(self, "ignorefile", Path(self.ignorefile))
        if isinstance(self.tags, str):
            raise UsageError(f"tags {self.tags!r}: expected a list of names")
        put(self, "tags", tuple(self.tags))
        put(self, "build_args", _frozen(self.build_args, "--build-arg"))
        put(self, "labels", _frozen(self.labels, "--label"))
        put(self, "annotations", _frozen(self.annotations, "--annotation"))
        secrets = dict(self.secrets)
        for sid, value in secrets.items():
            if not sid or not isinstance(value, (bytes, Path)):
                raise UsageError(f"--secret id={sid}: expected a file path or a value")
        put(self, "secrets", MappingProxyType(secrets))
        if self.format not in FORMATS:
            raise UsageError(f"--format {self.format!r}: expected oci or docker")
        if self.compression not in (None, *COMPRESSIONS):
            raise UsageError(f"--compression {self.compression!r}: expected gzip, zstd or none")
        if self.format == "docker" and self.compression == "zstd":
            raise UsageError(
                "--compression zstd: Docker-format images have gzip or plain tar layers, not zstd"
            )
        if self.pull not in PULL_POLICIES:
            raise UsageError(f"--pull {self.pull!r}: expected always, missing or never")
        if self.network not in NETWORKS:
            raise UsageError(f"--network {self.network!r}: expected host or none")
        if self.isolation is not None and self.isolation not in ISOLATIONS:
            raise UsageError(f"--isolation {self.isolation!r}: expected {', '.join(ISOLATIONS)}")
        if self.sbom_format not in SBOM_FORMATS:
            raise UsageError(f"--sbom-format {self.sbom_format!r}: expected spdx or cyclonedx")
        if self.sbom_format != "spdx" and not self.sbom:
            raise UsageError(f"--sbom-format {self.sbom_format}: no SBOM is made without --sbom")
        if self.timestamp is not None and (isinstance(self.timestamp, bool) or self.timestamp < 0):
            raise UsageError(f"--timestamp {self.timestamp!r}: expected seconds since the epoch")
        for tag in self.tags:
            parse_reference(tag)
        if self.platform is not None:
            put(self, "platform", ",".join(_platform_list(self.platform)))
        if self.all_platforms and self.platform is not None:
            raise UsageError("--all-platforms and --platform: give one of them")
        if self.manifest is not None:
            if self.manifest.startswith(("oci:", "docker://", "docker-archive:", "oci-archive:")):
                raise UsageError(f"--manifest {self.manifest!r}: expected a name in the store")
            put(self, "manifest", str(parse_name(self.manifest)))
        if self.jobs is not None and (isinstance(self.jobs, bool) or self.jobs < 1):
            raise UsageError(f"--jobs {self.jobs!r}: expected a number of at least 1")
        if not self.context.is_dir():
            raise UsageError(f"build context {self.context} is not a directory")
        if self.ignorefile is not None and not self.ignorefile.is_file():
            raise UsageError(f"ignore file {self.ignorefile}: no such file")
        self._check_cache()
        put(self, "volumes", tuple(self.volumes))
        for volume in self.volumes:
            if not isinstance(volume, Volume):
                raise UsageError(f"--volume {volume!r}: expected a Volume (Volume.parse('HOST:CONTAINER'))")

    def _check_cache(self) -> None:
        if isinstance(self.cache_from, str):
            raise UsageError(f"--cache-from {self.cache_from!r}: expected a list of repositories")
        object.__setattr__(self, "cache_from", tuple(self.cache_from))
        if self.cache_ttl is not None and (isinstance(self.cache_ttl, bool) or not self.cache_ttl > 0):
            raise UsageError(f"--cache-ttl {self.cache_ttl!r}: expected a duration of more than 0s")
        if not self.cache_from and self.cache_to is None:
            return
        if not self.layers:
            raise UsageError("--cache-from and --cache-to need --layers (the step cache)")
        for text in self.cache_from:
            self.cache_ref(text, "--cache-from")
        if self.cache_to is not None:
            self.cache_ref(self.cache_to, "--cache-to")

    @staticmethod
    def cache_ref(text: str, flag: str) -> CacheRef:
        """A --cache-from or --cache-to value, checked (``HOST/PATH`` or ``oci:DIR``)."""
        from ..remote.buildcache import parse_cache_ref

        return parse_cache_ref(text, flag)

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms --platform names, in order, each once (empty: this machine's)."""
        return tuple(self.platform.split(",")) if self.platform else ()

    @property
    def target_platform(self) -> Platform:
        """The platform the image is built for: the first --platform, else this machine's."""
        return parse_platform(self.platforms[0]) if self.platform else host_platform()

    @property
    def workers(self) -> int:
        """How many stages or platforms build at the same time: --jobs, else the number of cores."""
        return self.jobs if self.jobs is not None else max(1, os.cpu_count() or 1)

    @property
    def docker(self) -> bool:
        return self.format == "docker"


def _platform_list(text: str) -> list[str]:
    """--platform's value: OS/ARCH[/VARIANT] platforms joined by commas, each checked; repeats dropped."""
    out: list[str] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise UsageError(f"--platform {text!r}: expected OS/ARCH[/VARIANT][,OS/ARCH...]")
        platform = parse_platform(item)
        norm = f"{platform.os}/{platform.architecture}" + (f"/{platform.variant}" if platform.variant else "")
        if norm not in out:
            out.append(norm)
    return out


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
