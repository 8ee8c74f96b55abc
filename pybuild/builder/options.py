"""What a build is asked to do: :class:`BuildOptions`, a frozen value that refuses bad input when it
is made (one :class:`~pybuild.errors.UsageError` line), and the flag values that need more than
splitting: build args and secrets, as buildah and podman read them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..layout import Platform, host_platform, parse_name, parse_platform, parse_reference

if TYPE_CHECKING:
    from ..remote import RegistryOptions

FORMATS = ("oci", "docker")
COMPRESSIONS = ("gzip", "zstd", "none")
PULL_POLICIES = ("always", "missing", "never")
NETWORKS = ("host", "none")
# how steps run (run/modes.py): None or "auto" probes native overlay, fuse-overlayfs, copy
ISOLATIONS = ("auto", "native", "fuse", "copy", "inplace")
SBOM_FORMATS = ("spdx", "cyclonedx")


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
