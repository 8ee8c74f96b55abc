"""The Typer app: the only code that prints, formats errors and picks exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

try:  # Typer >= 0.26 carries its own copy of click
    from typer.exceptions import TyperException as CliException
except ImportError:  # pragma: no cover - older Typer on click
    from click.exceptions import ClickException as CliException  # type: ignore[no-redef,unused-ignore]

from . import __version__
from .errors import PybuildError, UsageError
from .layout import (
    Descriptor,
    Image,
    ImageConfig,
    ImageStore,
    Layout,
    check_layout,
    commit_image,
    copy_blobs,
    gc,
    load_image,
    mediatype,
    parse_name,
    parse_reference,
    referenced_blobs,
)
from .layout.imagestore import UNTAGGED, default_store_path


class _Interrupted(Exception):
    """Ctrl-C (or SIGINT/SIGTERM during a RUN) inside a command."""


class _Group(typer.core.TyperGroup):
    """Typer turns a KeyboardInterrupt into a silent `Exit(130)`; keep it visible to :func:`main`."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None


app = typer.Typer(
    cls=_Group,
    name="pybuild",
    help="Rootless OCI container image toolchain: build, unpack, repack and move images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class State:
    store_path: Path
    _store: ImageStore | None = None

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            self._store = ImageStore.at(self.store_path)
        return self._store


def _state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pybuild {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    store: Path | None = typer.Option(
        None, "--store", envvar="PYBUILD_STORE", help="The image store (default $XDG_DATA_HOME/pybuild)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Rootless OCI container image toolchain."""
    ctx.obj = State(store_path=store or default_store_path())


CompressionOption = typer.Option(
    None,
    "--compression",
    help="Re-compress layers: gzip, zstd or none (default: keep them, but gzip uncompressed ones for "
    "a registry, an OCI layout or an oci-archive).",
)
NoReferrersOption = typer.Option(
    False, "--no-referrers", help="Leave the image's OCI 1.1 referrers (SBOMs, signatures, ...) behind."
)
CredsOption = typer.Option(None, "--creds", help="USER[:PASSWORD] for the registry (asked for when omitted).")
TlsOption = typer.Option(
    None,
    "--tls-verify",
    metavar="[=true|false]",
    help="Verify the registry's TLS certificate (default true; --tls-verify=false to skip it).",
)
AuthfileOption = typer.Option(None, "--authfile", help="The auth.json to read credentials from.")
CertDirOption = typer.Option(
    None, "--cert-dir", help="CA certificates (*.crt) and a client pair (*.cert, *.key) for the registry."
)
#: flags that take true|false after "=", or mean true alone (as podman's and buildah's do)
BOOL_FLAGS = ("--tls-verify", "--src-tls-verify", "--dest-tls-verify")
REGISTRY_COMMANDS = ("build", "pull", "push", "copy", "inspect", "login")


def bare_bool_flags(argv: list[str]) -> list[str]:
    """``--tls-verify`` alone means ``--tls-verify=true``: rewritten so that the argument after it is
    never taken as its value (``pybuild pull --tls-verify HOST/IMAGE``), as pflag parses it."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in REGISTRY_COMMANDS:
        return argv
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        out.append(f"{arg}=true" if arg in BOOL_FLAGS else arg)
    return out


def flag_bool(value: str | None, flag: str, default: bool = True) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise UsageError(f"{flag}={value!r}: expected true or false")


def registry_options(
    creds: str | None,
    tls_verify: str | None,
    cert_dir: Path | None,
    authfile: Path | None,
    *,
    flag: str = "--tls-verify",
    default_tls: bool = True,
    must_exist: bool = True,
) -> Any:
    """A RegistryOptions from the registry flags: ``--creds USER[:PASS]`` (the password is asked for
    on a terminal when missing), ``--tls-verify[=BOOL]``, ``--cert-dir DIR``, ``--authfile FILE``."""
    from .remote import Credentials, RegistryOptions

    parsed = None
    if creds is not None:
        user, sep, password = creds.partition(":")
        if not user:
            raise UsageError("--creds: expected USER[:PASSWORD]")
        if not sep:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"--creds {user}: no password given, and no terminal to ask for one: "
                    "pass --creds USER:PASSWORD"
                )
            import getpass

            password = getpass.getpass(f"Password for {user}: ")
        parsed = Credentials(user, password)
    if cert_dir is not None and not cert_dir.is_dir():
        raise UsageError(f"--cert-dir {cert_dir}: not a directory")
    if authfile is not None and must_exist and not authfile.is_file():
        raise UsageError(f"--authfile {authfile}: no such file")
    return RegistryOptions(
        parsed, flag_bool(tls_verify, flag, default_tls), cert_dir=cert_dir, auth_file=authfile
    )


PlatformOption = typer.Option(None, "--platform", help="OS/ARCH[/VARIANT] to pick from an index.")


# --- resolving references ----------------------------------------------------------------------


@dataclass
class Located:
    layout: Layout
    descriptor: Descriptor
    name: str | None  # the tag it was found under


def locate(state: State, text: str) -> Located:
    ref = parse_reference(text)
    if ref.transport == "oci":
        assert ref.path is not None
        layout = Layout.open(ref.path, label=f"oci:{ref.path}")
        return Located(layout, layout.resolve(ref.name), ref.name)
    tag, desc = state.store.lookup(text)
    return Located(state.store, desc, tag)


def destination(state: State, text: str) -> tuple[Layout, str]:
    """The layout a reference writes into and the tag to write."""
    ref = parse_reference(text)
    if ref.transport == "oci":
        assert ref.path is not None
        return Layout.create(ref.path, label=f"oci:{ref.path}"), ref.name
    return state.store, ref.name


def store_image(src: Layout, descriptor: Descriptor, dst: Layout, tag: str) -> int:
    """Copy an image's blobs (if the layouts differ) and tag it in ``dst``. Returns blobs copied."""
    with dst.writing():
        copied = 0 if src.root == dst.root else copy_blobs(src, dst, descriptor)
        dst.set_tag(tag, Descriptor(descriptor.media_type, descriptor.digest, descriptor.size))
    return copied


# --- output helpers ------------------------------------------------------------------------------


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    if not console.is_terminal:
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        for row in [headers, *rows]:
            typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return
    table = Table(box=None, header_style="bold")
    for h in headers:
        table.add_column(h)
    for r in rows:
        table.add_row(*r)
    console.print(table)


def image_summary(image: Image, name: str | None) -> dict[str, Any]:
    config = image.config
    if name is not None and name.startswith(UNTAGGED + ":"):
        name = None  # built without a name: the store's placeholder tag is no name of its own
    return {
        "name": name,
        "digest": str(image.descriptor.digest),
        "mediaType": image.descriptor.media_type,
        "id": image.manifest.config.digest.encoded,
        "config": str(image.manifest.config.digest),
        "created": config.created,
        "author": config.author,
        "architecture": config.architecture,
        "os": config.os,
        "size": sum(layer.size for layer in image.layers),
        "layers": [
            {"digest": str(layer.digest), "size": layer.size, "mediaType": layer.media_type}
            for layer in image.layers
        ],
        "diff_ids": [str(d) for d in config.diff_ids],
        "runtime": config.runtime,
        "history": config.history,
        "annotations": image.manifest.annotations,
    }


# --- commands ------------------------------------------------------------------------------------


@app.command()
def images(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the images in the store (`<none>` for those without a name, as podman lists them)."""
    store = _state(ctx).store
    out = []
    for tag, desc in store.listing():
        try:
            image = load_image(store, desc)
        except PybuildError as exc:  # one broken image never hides the others
            typer.echo(
                f"warning: {_one_line(tag or str(desc.digest))} is broken: {_one_line(str(exc))}", err=True
            )
            continue
        out.append(image_summary(image, tag))
    if as_json:
        echo_json(
            [
                {k: v for k, v in s.items() if k in ("name", "id", "digest", "created", "size", "mediaType")}
                for s in out
            ]
        )
        return
    rows = []
    for s in out:
        repo, _, tag = (s["name"] or "<none>:<none>").rpartition(":")
        rows.append(
            [repo, tag, s["id"][:12], (s["created"] or "")[:19].replace("T", " "), human_size(s["size"])]
        )
    print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)


@app.command()
def history(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME[:TAG], an image ID, or oci:DIR[:TAG]."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not shorten IDs and commands."),
) -> None:
    """Show an image's history, newest first: one line per entry with its layer's size (of the blob
    as stored), as `podman history` shows it."""
    found = locate(_state(ctx), ref)
    image = load_image(found.layout, found.descriptor)
    entries = image_history(image)
    if as_json:
        echo_json(entries)
        return
    rows = []
    for entry in entries:
        image_id, created_by = entry["id"] or "<missing>", entry["created_by"]
        if not no_trunc:
            image_id = image_id[:12]
            if len(created_by) > 45:
                created_by = created_by[:42] + "..."
        created = (entry["created"] or "")[:19].replace("T", " ")
        rows.append([image_id, created, created_by, human_size(entry["size"]), entry["comment"]])
    print_table(["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows)


def image_history(image: Image) -> list[dict[str, Any]]:
    """The config's history, newest first, each entry with the layer it made (entries that are not
    empty_layer take the layers in order) and that layer's size; the newest carries the image ID."""
    layers = list(image.layers)
    out = []
    for entry in image.config.history:
        layer = None
        if not entry.get("empty_layer") and layers:
            layer = layers.pop(0)
        out.append(
            {
                "id": None,
                "created": entry.get("created"),
                "created_by": str(entry.get("created_by") or ""),
                "size": layer.size if layer is not None else 0,
                "comment": str(entry.get("comment") or ""),
                "empty_layer": bool(entry.get("empty_layer")),
                "layer": str(layer.digest) if layer is not None else None,
            }
        )
    out.reverse()
    if out:
        out[0]["id"] = image.manifest.config.digest.encoded
    return out


def _remote_image(ref: str, options: Any) -> tuple[Image, str]:
    """An Image view of a registry image, held in a throwaway layout (manifest and config only)."""
    import tempfile

    from .layout import ImageConfig, Manifest
    from .remote import inspect_remote

    manifest_raw, config_raw = inspect_remote(ref, options=options)
    manifest = Manifest.parse(manifest_raw, f"{ref}: manifest", lenient=True)
    config = ImageConfig.parse(config_raw, f"{ref}: config")
    scratch = Layout(Path(tempfile.gettempdir()), label=ref)
    return Image(scratch, manifest.descriptor(), manifest, config), ref


@app.command()
def inspect(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME[:TAG], an image ID, or oci:DIR[:TAG]."),
    raw: bool = typer.Option(False, "--raw", help="Print the manifest exactly as stored."),
    config: bool = typer.Option(False, "--config", help="With --raw: print the config instead."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
    referrers: bool = typer.Option(
        False, "--referrers", help="List the OCI 1.1 artifacts (SBOMs, provenance, ...) referring to it."
    ),
    artifact_type: str | None = typer.Option(
        None, "--artifact-type", help="With --referrers: only the artifacts of this type."
    ),
) -> None:
    """Show an image's manifest and config (docker:// references are read without pulling layers)."""
    name: str | None
    options = registry_options(creds, tls_verify, cert_dir, authfile)
    if artifact_type is not None and not referrers:
        raise UsageError("--artifact-type goes with --referrers")
    if artifact_type is not None and not mediatype.is_valid(artifact_type):
        raise UsageError(f"--artifact-type {artifact_type[:80]!r}: expected TYPE/SUBTYPE")
    if ref.startswith("docker://"):
        if referrers:
            from .remote import parse_registry_reference
            from .remote.referrers import remote_referrers

            found_remote = remote_referrers(
                parse_registry_reference(ref),
                options=options,
                artifact_type=artifact_type,
                warn=print_warning,
            )
            _print_referrers(found_remote, as_json)
            return
        image, name = _remote_image(ref, options)
    else:
        found = locate(_state(ctx), ref)
        image, name = load_image(found.layout, found.descriptor), found.name
        if referrers:
            from .layout import referrers as layout_referrers

            subjects = dict.fromkeys(d.digest for d in (found.descriptor, image.descriptor))
            listed = [(s, r) for s in subjects for r in layout_referrers(found.layout, s, artifact_type)]
            _print_referrers(listed, as_json)
            return
    if raw:
        data = image.config.to_bytes() if config else image.manifest.to_bytes()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    summary = image_summary(image, name)
    if as_json:
        echo_json(summary)
        return
    runtime = summary["runtime"]
    lines = [
        f"Name:         {summary['name']}",
        f"Digest:       {summary['digest']}",
        f"Media type:   {summary['mediaType']}",
        f"Image ID:     {summary['id']}",
        f"Created:      {summary['created'] or '-'}",
        f"Author:       {summary['author'] or '-'}",
        f"Platform:     {summary['os']}/{summary['architecture']}",
    ]
    for key in ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "StopSignal"):
        if runtime.get(key):
            lines.append(f"{key + ':':<14}{json.dumps(runtime[key])}")
    for key in ("Labels", "ExposedPorts", "Volumes"):
        if runtime.get(key):
            lines.append(f"{key + ':':<14}{', '.join(sorted(runtime[key]))}")
    lines.append(f"Layers:       {len(summary['layers'])} ({human_size(summary['size'])})")
    for layer in summary["layers"]:
        lines.append(f"  {layer['digest']}  {human_size(layer['size']):>9}  {layer['mediaType']}")
    lines.append(f"History:      {len(summary['history'])} entries")
    for entry in summary["history"]:
        mark = " (empty)" if entry.get("empty_layer") else ""
        lines.append(f"  {entry.get('created_by', '')}{mark}")
    typer.echo("\n".join(lines))


def _print_referrers(found: list[tuple[Any, Descriptor]], as_json: bool) -> None:
    """(subject digest, artifact) pairs: those of a tagged index and of the manifest chosen from it."""
    if as_json:
        echo_json(
            [
                {**r.to_dict(), "subject": str(subject)}  # mediaType, digest, size, artifactType, annotations
                for subject, r in found
            ]
        )
        return
    rows = [
        [
            r.artifact_type or "-",
            str(r.digest),
            human_size(r.size),
            ", ".join(f"{k}={v}" for k, v in sorted(r.annotations.items())) or "-",
        ]
        for _, r in found
    ]
    print_table(["ARTIFACT TYPE", "DIGEST", "SIZE", "ANNOTATIONS"], rows)


@app.command()
def sbom(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME[:TAG], an image ID, or oci:DIR[:TAG]."),
    sbom_format: str = typer.Option("spdx", "--format", help="spdx (SPDX 2.3 JSON) or cyclonedx (1.5 JSON)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the document to FILE."),
    attach: bool = typer.Option(False, "--attach", help="Store it as an OCI 1.1 referrer of the image."),
    platform: str | None = PlatformOption,
    timestamp: int | None = typer.Option(
        None, "--timestamp", help="Its creation time in seconds since the epoch (SOURCE_DATE_EPOCH, or now)."
    ),
) -> None:
    """Make an SBOM of an image: its Debian, Alpine and Python packages, and its layers."""
    from . import attest
    from .layout import attach as attach_artifact
    from .layout import parse_platform
    from .layout.document import parse_created

    if sbom_format not in ("spdx", "cyclonedx"):
        raise UsageError(f"--format {sbom_format!r}: expected spdx or cyclonedx")
    found = locate(_state(ctx), ref)
    inventory = attest.inventory(
        found.layout, found.descriptor, parse_platform(platform) if platform else None
    )
    for line in inventory.skipped:
        print(f"warning: {_one_line(line)}", file=sys.stderr)
    if timestamp is not None:
        created = datetime.fromtimestamp(timestamp, UTC)
    else:
        created = parse_created(now_rfc3339()) or datetime.now(UTC)
    name = ref if ref.startswith("oci:") else (found.name or ref)  # an oci: layout's tags are bare
    if sbom_format == "spdx":
        data, media_type = attest.spdx_document(inventory, name=name, created=created), attest.SPDX_JSON
    else:
        data = attest.cyclonedx_document(inventory, name=name, created=created)
        media_type = attest.CYCLONEDX_JSON
    if output is not None:
        _write_file(output, data)
    elif not attach:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    if attach:
        stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
        artifact = attach_artifact(
            found.layout,
            inventory.image,
            media_type,
            media_type,
            data,
            {"org.opencontainers.image.created": stamp},
        )
        typer.echo(
            f"attached {media_type} {artifact.digest} to {inventory.image.digest} in {found.layout.label}"
        )


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temp file beside it, then a rename)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


REMOTE_PREFIXES = ("docker://", "docker-archive:", "oci-archive:")


def _is_remote(text: str) -> bool:
    return text.startswith(REMOTE_PREFIXES)


@contextlib.contextmanager
def transfer_progress(quiet: bool) -> Iterator[Any]:
    """A rich progress display for blob transfers on a terminal; nothing otherwise. Thread-safe."""
    if quiet or not sys.stderr.isatty():  # (rich is not even imported: CI logs stay clean and quick)
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True)
    import threading

    bars: dict[str, Any] = {}
    moved: dict[str, int] = {}  # bytes counted in the overall bar, per blob
    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    ) as progress:
        overall = progress.add_task("total", total=0)

        def update(event: str, desc: Descriptor, n: int) -> None:
            key = str(desc.digest)
            with lock:
                if key not in bars:
                    bars[key] = progress.add_task(f"blob {desc.digest.short}", total=desc.size)
                    moved[key] = 0
                    progress.update(overall, total=sum(progress.tasks[t].total or 0 for t in bars.values()))
                task = bars[key]
                if event == "advance":
                    progress.advance(task, n)
                    moved[key] += n
                    progress.advance(overall, n)
                elif event == "restart":
                    progress.reset(task, total=desc.size)
                    progress.advance(overall, -moved[key])
                    moved[key] = 0
                elif event in ("skip", "done"):
                    label = "exists" if event == "skip" else "done"
                    progress.update(
                        task, completed=desc.size, description=f"blob {desc.digest.short} {label}"
                    )
                    progress.advance(overall, desc.size - moved[key])
                    moved[key] = desc.size

        yield update


def transfer(
    state: State,
    src: str,
    dst: str,
    *,
    quiet: bool = False,
    platform: str | None = None,
    src_options: Any = None,
    dest_options: Any = None,
    digestfile: Path | None = None,
    compression: str | None = None,
    referrers: bool = False,
) -> tuple[Descriptor, str]:
    """Copy an image between any two transports, and with ``referrers`` its OCI 1.1 referrers;
    returns (descriptor written, a summary line)."""
    from .layout import parse_platform

    wanted = parse_platform(platform) if platform else None
    if not _is_remote(src) and not _is_remote(dst) and wanted is None and compression is None:
        found = locate(state, src)
        layout, name = destination(state, dst)
        # blobs are shared as they are, except that an OCI layout gets uncompressed layers gzipped
        # (copy_image does that, as skopeo would); the store keeps whatever it is given
        if layout is state.store or not _has_uncompressed_layers(found.layout, found.descriptor):
            copied = store_image(found.layout, found.descriptor, layout, name)
            total = len({d.digest for d in referenced_blobs(found.layout, found.descriptor)})
            if referrers and layout.root != found.layout.root:
                from .remote.referrers import LayoutDestination, carry_referrers, unchanged

                moved = unchanged(found.layout, found.descriptor)
                carry_referrers(found.layout, moved, LayoutDestination(layout), warn=print_warning)
            if digestfile is not None:
                _write_digestfile(digestfile, found.descriptor)
            return found.descriptor, f"copied {copied} of {total} blobs; {dst} is {found.descriptor.digest}"
    from .remote import copy_image

    with transfer_progress(quiet) as progress:
        desc = copy_image(
            src,
            dst,
            store=state.store,
            platform=wanted,
            src_options=src_options,
            dest_options=dest_options,
            progress=progress,
            digestfile=digestfile,
            compression=compression,
            referrers=referrers,
            warn=print_warning,
        )
    return desc, f"{dst} is {desc.digest}"


def print_warning(message: str) -> None:
    """One ``warning:`` line on stderr (what was skipped; the command goes on)."""
    print(f"warning: {_one_line(message)}", file=sys.stderr)


def _has_uncompressed_layers(layout: Layout, desc: Descriptor) -> bool:
    from .remote.recompress import has_uncompressed_layers

    return has_uncompressed_layers(layout, desc)


def _write_digestfile(path: Path, desc: Descriptor) -> None:
    try:
        path.write_text(f"{desc.digest}\n")
    except OSError as exc:
        raise UsageError(f"cannot write digest file {path}: {exc.strerror or exc}") from None


@app.command()
def tag(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="An image in the store, or oci:DIR[:TAG] (its blobs are copied in)."),
    dst: str = typer.Argument(..., help="The new name, in the store or oci:DIR[:TAG]."),
) -> None:
    """Give an image another name."""
    transfer(_state(ctx), src, dst, quiet=True)


@app.command()
def copy(
    ctx: typer.Context,
    src: str = typer.Argument(
        ..., help="Store name, oci:DIR[:TAG], docker://REF, docker-archive:F, oci-archive:F."
    ),
    dst: str = typer.Argument(..., help="Destination, any of the same transports."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing."),
    platform: str | None = PlatformOption,
    creds: str | None = CredsOption,
    src_creds: str | None = typer.Option(
        None, "--src-creds", help="USER[:PASSWORD] for the source registry."
    ),
    dest_creds: str | None = typer.Option(None, "--dest-creds", help="USER[:PASSWORD] for the destination."),
    tls_verify: str | None = TlsOption,
    src_tls_verify: str | None = typer.Option(
        None, "--src-tls-verify", metavar="[=true|false]", help="--tls-verify for the source registry."
    ),
    dest_tls_verify: str | None = typer.Option(
        None, "--dest-tls-verify", metavar="[=true|false]", help="--tls-verify for the destination."
    ),
    authfile: Path | None = AuthfileOption,
    src_authfile: Path | None = typer.Option(None, "--src-authfile", help="--authfile for the source."),
    dest_authfile: Path | None = typer.Option(
        None, "--dest-authfile", help="--authfile for the destination."
    ),
    cert_dir: Path | None = CertDirOption,
    src_cert_dir: Path | None = typer.Option(None, "--src-cert-dir", help="--cert-dir for the source."),
    dest_cert_dir: Path | None = typer.Option(
        None, "--dest-cert-dir", help="--cert-dir for the destination."
    ),
    digestfile: Path | None = typer.Option(
        None, "--digestfile", help="Write the copied manifest's digest here."
    ),
    compression: str | None = CompressionOption,
    no_referrers: bool = NoReferrersOption,
) -> None:
    """Copy an image between the store, OCI layouts, archives and registries (blobs are copied as
    they are, but uncompressed layers are gzipped for a registry, an OCI layout or an oci-archive;
    --compression asks for another), with its OCI 1.1 referrers."""
    default_tls = flag_bool(tls_verify, "--tls-verify")
    src_options = registry_options(
        src_creds or creds,
        src_tls_verify,
        src_cert_dir or cert_dir,
        src_authfile or authfile,
        flag="--src-tls-verify",
        default_tls=default_tls,
    )
    dest_options = registry_options(
        dest_creds or creds,
        dest_tls_verify,
        dest_cert_dir or cert_dir,
        dest_authfile or authfile,
        flag="--dest-tls-verify",
        default_tls=default_tls,
    )
    _, summary = transfer(
        _state(ctx),
        src,
        dst,
        quiet=quiet,
        platform=platform,
        src_options=src_options,
        dest_options=dest_options,
        digestfile=digestfile,
        compression=compression,
        referrers=not no_referrers,
    )
    if not quiet:
        typer.echo(summary)


@app.command()
def pull(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="docker://HOST/REPO[:TAG|@DIGEST], or a name such as alpine."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image digest."),
    platform: str | None = PlatformOption,
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
    referrers: bool = typer.Option(
        False, "--referrers", help="Fetch its OCI 1.1 referrers (SBOMs, provenance, ...) too."
    ),
) -> None:
    """Pull an image from a registry into the store, under its full name."""
    from .remote import parse_registry_reference

    options = registry_options(creds, tls_verify, cert_dir, authfile)

    text = ref if ref.startswith("docker://") else f"docker://{ref}"
    remote = parse_registry_reference(text)
    name = str(
        parse_name(
            f"{remote.registry}/{remote.repository}"
            + (f"@{remote.digest}" if remote.digest else f":{remote.tag or 'latest'}")
        )
    )
    desc, _ = transfer(
        _state(ctx), text, name, quiet=quiet, platform=platform, src_options=options, referrers=referrers
    )
    typer.echo(str(desc.digest) if quiet else f"pulled {name} {desc.digest}")


@app.command()
def push(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="The image: a store name or oci:DIR[:TAG]."),
    dst: str = typer.Argument(..., help="docker://HOST/REPO[:TAG] (or any other transport)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the pushed digest."),
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
    digestfile: Path | None = typer.Option(
        None, "--digestfile", help="Write the pushed manifest's digest here."
    ),
    compression: str | None = CompressionOption,
    no_referrers: bool = NoReferrersOption,
) -> None:
    """Push an image to a registry, with its OCI 1.1 referrers; prints the pushed manifest digest."""
    target = dst if _is_remote(dst) or dst.startswith("oci:") else f"docker://{dst}"
    options = registry_options(creds, tls_verify, cert_dir, authfile)
    desc, _ = transfer(
        _state(ctx),
        src,
        target,
        quiet=quiet,
        dest_options=options,
        digestfile=digestfile,
        compression=compression,
        referrers=not no_referrers,
    )
    typer.echo(str(desc.digest))


@app.command()
def login(
    registry: str = typer.Argument(..., help="HOST[:PORT] of the registry."),
    username: str | None = typer.Option(None, "-u", "--username", help="User name."),
    password: str | None = typer.Option(None, "-p", "--password", help="Password (prefer --password-stdin)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
    authfile: Path | None = typer.Option(None, "--authfile", help="The auth.json to write."),
    tls_verify: str | None = TlsOption,
    creds: str | None = CredsOption,
    cert_dir: Path | None = CertDirOption,
) -> None:
    """Check credentials against a registry and store them in auth.json."""
    from .remote import login as remote_login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    options = registry_options(creds, tls_verify, cert_dir, authfile, must_exist=False)
    if options.creds is not None:
        if username or password is not None:
            raise UsageError("login takes --creds or --username/--password, not both")
        username, password = options.creds.username, options.creds.password
    if not username:
        raise UsageError("login needs --username (or --creds USER:PASSWORD)")
    if password is None:
        raise UsageError("login needs --password or --password-stdin")
    remote_login(
        registry, username, password, tls_verify=options.tls_verify, auth_file=authfile, cert_dir=cert_dir
    )
    typer.echo(f"login succeeded: {registry}")


@app.command()
def logout(
    registry: str = typer.Argument(..., help="HOST[:PORT] of the registry."),
    authfile: Path | None = typer.Option(None, "--authfile", help="The auth.json to change."),
) -> None:
    """Remove stored credentials for a registry."""
    from .remote import logout as remote_logout

    if not remote_logout(registry, auth_file=authfile):
        from .errors import AuthError

        raise AuthError(f"not logged in to {registry}")  # a state, not a bad command line: exit 1
    typer.echo(f"removed login credentials for {registry}")


@app.command()
def rm(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., help="Names to remove (blobs go at the next gc)."),
) -> None:
    """Remove image names from the store or an OCI layout."""
    state = _state(ctx)
    for text in refs:
        ref = parse_reference(text)
        if ref.transport == "oci":
            assert ref.path is not None
            Layout.open(ref.path, label=f"oci:{ref.path}").remove_tag(ref.name)
        else:
            name, _ = state.store.lookup(text)
            if name is None:
                raise UsageError(f"{text!r} names no tag in {state.store.label}")
            state.store.remove_tag(name)
        typer.echo(f"removed {text}")


@app.command(name="gc")
def gc_command(
    ctx: typer.Context,
    layout: str | None = typer.Argument(None, help="oci:DIR to collect instead of the store."),
) -> None:
    """Remove blobs no image references, and stale temp files."""
    target = _layout_argument(_state(ctx), layout)
    result = gc(target)
    for problem in result.problems:
        typer.echo(f"warning: {_one_line(problem)}", err=True)
    typer.echo(
        f"removed {len(result.removed)} blobs ({human_size(result.freed)}) "
        f"and {result.temp_files} temp files from {target.label}"
    )
    if result.referrers:
        typer.echo(f"removed {len(result.referrers)} artifacts whose subject is gone")
    if isinstance(target, ImageStore):
        from .run.layers import sweep

        swept = sweep(target)
        typer.echo(
            f"removed {swept.layer_dirs} layer directories, {swept.records} build cache records "
            f"and {swept.workspaces} stale build workspaces"
        )


def _layout_argument(state: State, text: str | None) -> Layout:
    if text is None:
        return state.store
    if not text.startswith("oci:"):
        raise UsageError(f"expected oci:DIR, not {text!r}")
    return Layout.open(text[4:], label=text)


@app.command()
def check(
    ctx: typer.Context,
    ref: str | None = typer.Argument(
        None, help="An image (NAME or oci:DIR:TAG), or oci:DIR for a whole layout."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Verify digests, sizes, media types and diff_ids; report every problem found."""
    state = _state(ctx)
    layout: Layout
    roots: list[Descriptor] | None
    if ref is None:
        layout, roots = state.store, None
    elif ref.startswith("oci:") and ":" not in ref[4:]:
        layout, roots = Layout.open(ref[4:], label=ref), None
    else:
        found = locate(state, ref)
        layout, roots = found.layout, [found.descriptor]
    problems = check_layout(layout, roots)
    if as_json:
        echo_json({"layout": layout.label, "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            typer.echo(f"problem: {problem}")
        if not problems:
            typer.echo(f"{layout.label}: ok")
    if problems:
        raise typer.Exit(1)


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {value!r}: expected KEY=VALUE")
        out[key] = val
    return out


def now_rfc3339() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            when = datetime.fromtimestamp(int(epoch), UTC)
        except (ValueError, OverflowError):
            raise UsageError(f"SOURCE_DATE_EPOCH {epoch!r} is not a number of seconds") from None
    else:
        when = datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if not epoch else when.strftime("%Y-%m-%dT%H:%M:%SZ")


CLEARABLE = {
    "cmd": "Cmd",
    "entrypoint": "Entrypoint",
    "env": "Env",
    "labels": "Labels",
    "volumes": "Volumes",
    "exposedports": "ExposedPorts",
}


@app.command()
def config(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The image to change."),
    tag_: str | None = typer.Option(None, "-t", "--tag", help="Name for the new image (default: REF)."),
    cmd: list[str] = typer.Option([], "--cmd", help="Cmd (repeat for each argument)."),
    entrypoint: list[str] = typer.Option([], "--entrypoint", help="Entrypoint (repeat for each argument)."),
    env: list[str] = typer.Option([], "--env", help="K=V: set an environment variable."),
    workdir: str | None = typer.Option(None, "--workdir", help="Working directory."),
    user: str | None = typer.Option(None, "--user", help="User (name or uid[:gid])."),
    label: list[str] = typer.Option([], "--label", help="K=V: set a label."),
    volume: list[str] = typer.Option([], "--volume", help="Add a volume path."),
    expose: list[str] = typer.Option([], "--expose", help="Expose a port (PORT[/PROTO])."),
    stopsignal: str | None = typer.Option(None, "--stopsignal", help="Stop signal."),
    author: str | None = typer.Option(None, "--author", help="Image author."),
    clear: list[str] = typer.Option([], "--clear", help=f"Clear a field first: {', '.join(CLEARABLE)}."),
) -> None:
    """Change an image's config (like `umoci config`): a new config and manifest, layers shared."""
    state = _state(ctx)
    found = locate(state, ref)
    image = load_image(found.layout, found.descriptor)
    for field in clear:
        if field.lower() not in CLEARABLE:
            raise UsageError(f"--clear {field!r}: expected one of {', '.join(CLEARABLE)}")
    env_pairs = _pairs(env, "--env")
    label_pairs = _pairs(label, "--label")
    ports = []
    for port in expose:
        number, _, proto = port.partition("/")
        if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
            raise UsageError(f"--expose {port!r}: expected PORT[/tcp|udp|sctp]")
        ports.append(f"{int(number)}/{proto or 'tcp'}")
    for path in volume:
        if not path.startswith("/"):
            raise UsageError(f"--volume {path!r}: expected an absolute path")
    created = now_rfc3339()
    command = "pybuild config " + " ".join(shlex.quote(a) for a in sys.argv[2:])

    def change(doc: dict[str, Any]) -> None:
        runtime = doc.setdefault("config", {}) or {}
        doc["config"] = runtime
        for field in clear:
            runtime.pop(CLEARABLE[field.lower()], None)
        if cmd:
            runtime["Cmd"] = list(cmd)
        if entrypoint:
            runtime["Entrypoint"] = list(entrypoint)
        if env_pairs:
            current = [e for e in runtime.get("Env") or [] if e.partition("=")[0] not in env_pairs]
            runtime["Env"] = current + [f"{k}={v}" for k, v in env_pairs.items()]
        if workdir is not None:
            runtime["WorkingDir"] = workdir
        if user is not None:
            runtime["User"] = user
        if label_pairs:
            runtime["Labels"] = {**(runtime.get("Labels") or {}), **label_pairs}
        for path in volume:
            runtime.setdefault("Volumes", {})
            runtime["Volumes"] = runtime["Volumes"] or {}
            runtime["Volumes"][path] = {}
        for port in ports:
            runtime["ExposedPorts"] = runtime.get("ExposedPorts") or {}
            runtime["ExposedPorts"][port] = {}
        if stopsignal is not None:
            runtime["StopSignal"] = stopsignal
        if author is not None:
            doc["author"] = author
        doc["created"] = created
        doc.setdefault("history", []).append({"created": created, "created_by": command, "empty_layer": True})

    new_config: ImageConfig = image.config.changed(change)
    layout, name = destination(state, tag_ or ref) if tag_ or found.name else (found.layout, "")
    if not name:
        raise UsageError(f"{ref!r} has no name to update: give one with -t")
    with layout.writing():
        if layout.root != found.layout.root:
            copy_blobs(found.layout, layout, found.descriptor)
        desc = commit_image(
            layout,
            new_config,
            image.layers,
            docker=image.is_docker,
            annotations=image.manifest.annotations or None,
        )
        layout.set_tag(name, desc)
    typer.echo(str(desc.digest))


@app.command(name="build")
def build_command(
    ctx: typer.Context,
    context: Path = typer.Argument(Path("."), help="The build context directory."),
    file: Path | None = typer.Option(
        None, "-f", "--file", help="The Containerfile (default: Containerfile, then Dockerfile, in CONTEXT)."
    ),
    tag_: list[str] = typer.Option(
        [], "-t", "--tag", help="Name the image (store name or oci:DIR:TAG); repeat."
    ),
    build_arg: list[str] = typer.Option(
        [], "--build-arg", help="NAME=VALUE, or NAME for the value of $NAME (skipped when unset)."
    ),
    build_arg_file: list[Path] = typer.Option(
        [], "--build-arg-file", help="A file of NAME=VALUE lines (# comments); --build-arg wins."
    ),
    target: str | None = typer.Option(None, "--target", help="Build up to this stage."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step; take nothing from the cache."),
    layers: bool = typer.Option(True, "--layers/--no-layers", help="Use and keep the layer cache."),
    format_: str = typer.Option("oci", "--format", help="oci or docker."),
    compression: str | None = typer.Option(
        None,
        "--compression",
        help="gzip, zstd or none for the new layers (default: none in the store, as buildah keeps them, "
        "and gzip in oci: targets and on push).",
    ),
    label: list[str] = typer.Option([], "--label", help="K=V: set a label on the image."),
    annotation: list[str] = typer.Option([], "--annotation", help="K=V: set a manifest annotation."),
    iidfile: Path | None = typer.Option(None, "--iidfile", help="Write the image ID to this file."),
    timestamp: int | None = typer.Option(
        None, "--timestamp", help="Seconds since the epoch for every created time and the file mtimes."
    ),
    network: str = typer.Option("host", "--network", help="host (shared, the default) or none, for RUN."),
    secret: list[str] = typer.Option(
        [],
        "--secret",
        help="id=ID,src=FILE or id=ID,env=VARIABLE (type=file|env): a secret for RUN --mount=type=secret.",
    ),
    ignorefile: Path | None = typer.Option(None, "--ignorefile", help="Use this ignore file."),
    pull: str = typer.Option("missing", "--pull", help="always, missing or never: pull base images."),
    platform: str | None = PlatformOption,
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image ID."),
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
) -> None:
    """Build an image from a Containerfile (like `buildah build`)."""
    from .build import BuildOptions, Reporter, build
    from .build.options import parse_secret, read_build_args

    secrets = dict(parse_secret(spec) for spec in secret)
    options = BuildOptions(
        context=context,
        containerfile=file,
        tags=list(tag_),
        build_args=read_build_args(build_arg, build_arg_file),
        target=target,
        no_cache=no_cache,
        layers=layers,
        format=format_,
        compression=compression,
        labels=_pairs(label, "--label"),
        annotations=_pairs(annotation, "--annotation"),
        timestamp=timestamp,
        network=network,
        secrets=secrets,
        ignorefile=ignorefile,
        pull=pull,
        platform=platform,
        # (pybuild.remote is loaded only when a flag asks for it: a cached rebuild stays quick)
        registry=registry_options(creds, tls_verify, cert_dir, authfile)
        if (creds, tls_verify, cert_dir, authfile) != (None, None, None, None)
        else None,
    )

    class Printer(Reporter):
        def __init__(self) -> None:
            from rich.console import Console

            self.console = Console(highlight=False) if sys.stdout.isatty() else None

        def step(self, text: str) -> None:
            if quiet:
                return
            sys.stderr.flush()
            if self.console is not None:
                self.console.print(f"[bold cyan]{text}[/]", markup=True, soft_wrap=True)
            else:
                print(text, flush=True)

        def info(self, text: str) -> None:
            if not quiet:
                print(text, flush=True)

        def warn(self, text: str) -> None:
            print(f"warning: {text}", file=sys.stderr, flush=True)

    printer = Printer()
    with _quiet_output(quiet):
        result = build(_state(ctx).store, options, printer)
    if iidfile is not None:
        try:
            iidfile.write_text(f"sha256:{result.image_id}")
        except OSError as exc:
            raise UsageError(f"--iidfile {iidfile}: {exc.strerror or exc}") from None
    if quiet:
        typer.echo(result.image_id)
        return
    for tag in result.tags:
        typer.echo(f"COMMIT {tag}")
    typer.echo(f"--> {result.image_id[:12]}")
    typer.echo(f"Successfully built {result.image_id[:12]} ({result.descriptor.digest})")


@contextlib.contextmanager
def _quiet_output(quiet: bool) -> Iterator[None]:
    """With -q, what RUN steps print goes nowhere (the container inherits fds 1 and 2)."""
    if not quiet:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        for fd in (*saved, null):
            os.close(fd)


@app.command()
def unpack(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The image to unpack."),
    bundle: Path = typer.Argument(..., help="The bundle directory to create (rootfs + config.json)."),
    rootless: bool = typer.Option(
        False, "--rootless", help="Write a rootless config.json (the default when run unprivileged)."
    ),
) -> None:
    """Unpack an image into an OCI runtime bundle that runc can run."""
    from .bundle.unpack import unpack_image

    found = locate(_state(ctx), ref)
    image = load_image(found.layout, found.descriptor)
    result = unpack_image(image, bundle, rootless=True if rootless else None, source=ref)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def repack(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., help="A bundle made by `pybuild unpack`."),
    tag_: str = typer.Option(..., "-t", "--tag", help="Name for the new image (store name or oci:DIR:TAG)."),
    compression: str = typer.Option("gzip", "--compression", help="gzip, zstd or none."),
    comment: str = typer.Option("", "--comment", help="History comment for the new layer."),
) -> None:
    """Turn what changed in an unpacked bundle into a new layer on top of its image."""
    from .bundle.unpack import read_record, repack_bundle

    if compression not in ("gzip", "zstd", "none"):
        raise UsageError(f"--compression {compression!r}: expected gzip, zstd or none")
    record = read_record(bundle)
    source = Layout.open(record["layout"])
    desc = Descriptor.from_dict(record["manifest"], f"{bundle}: manifest")
    layout, name = destination(_state(ctx), tag_)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    with layout.writing():
        if layout.root != source.root:
            copy_blobs(source, layout, desc)
        image = load_image(layout, desc)
        if image.is_docker and compression == "zstd":
            raise UsageError(f"{tag_}: Docker-format images have gzip or plain tar layers, not zstd")
        new = repack_bundle(
            bundle,
            image,
            layout,
            compression=compression,
            source_date_epoch=int(epoch) if epoch and epoch.isdigit() else None,
            history_comment=comment,
        )
        layout.set_tag(name, new)
    typer.echo(str(new.digest))


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The image to run."),
    command: list[str] = typer.Argument(None, help="The command (after --); default: Entrypoint + Cmd."),
    network: str = typer.Option("host", "--network", help="host (shared, the default) or none."),
    volume: list[str] = typer.Option([], "-v", "--volume", help="SRC:DST[:ro] bind mount."),
    env: list[str] = typer.Option([], "-e", "--env", help="K=V: set an environment variable."),
    user: str | None = typer.Option(None, "--user", help="User (name or uid[:gid]); default: the image's."),
    workdir: str | None = typer.Option(None, "--workdir", help="Working directory; default: the image's."),
) -> None:
    """Run a command in a throwaway container from an image; exits with the command's status."""
    import tempfile

    from .run import RunSpec, run_container
    from .run.layers import layer_dirs, remove_tree

    if network not in ("host", "none"):
        raise UsageError(f"--network {network!r}: expected host or none")
    mounts = []
    for spec in volume:
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
        mounts.append((os.path.abspath(parts[0]), parts[1], parts[2:] == ["ro"]))
    state = _state(ctx)
    found = locate(state, ref)
    image = load_image(found.layout, found.descriptor)
    runtime = image.config.runtime
    given = list(command or [])
    if given[:1] == ["--"]:
        given = given[1:]
    args = given or list(runtime.get("Entrypoint") or []) + list(runtime.get("Cmd") or [])
    if not args:
        raise UsageError(f"{ref} has no Entrypoint or Cmd: give a command after --")
    environment = {e.partition("=")[0]: e for e in runtime.get("Env") or []}
    for k, v in _pairs(env, "--env").items():
        environment[k] = f"{k}={v}"
    lowers = layer_dirs(state.store, image)
    scratch = state.store.private.run_workspaces
    scratch.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix="ctr-", dir=scratch))
    try:
        (top / "upper").mkdir()
        result = run_container(
            RunSpec(
                lowerdirs=lowers,
                upperdir=top / "upper",
                args=args,
                env=list(environment.values()),
                cwd=workdir or runtime.get("WorkingDir") or "/",
                user=user if user is not None else runtime.get("User") or "",
                network=network,
                mounts=mounts,
            )
        )
    finally:
        remove_tree(top)
    raise typer.Exit(result.exit_status)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check that rootless builds can work here, and say how to fix what is missing."""
    from .run import doctor as run_doctor

    checks = run_doctor()
    if as_json:
        echo_json([c.__dict__ for c in checks])
    else:
        for c in checks:
            mark = "ok     " if c.ok else ("problem" if c.required else "warning")
            typer.echo(f"{mark}  {c.name}: {c.detail}")
            if not c.ok and c.fix:
                typer.echo(f"         fix: {c.fix}")
    if any(c.required and not c.ok for c in checks):
        raise typer.Exit(1)


def _one_line(text: str) -> str:
    """``text`` with control and line-separator characters escaped (they come from user input, e.g. a
    Containerfile), so an error stays on one line and cannot move the terminal's cursor."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def main() -> None:
    """Console entry point: one line per error, exit status 1 (2 for a bad command line, a failed RUN's
    own status for a build), no traceback."""
    debug = os.environ.get("PYBUILD_DEBUG") == "1"
    try:
        code = app(args=bare_bool_flags(sys.argv[1:]), standalone_mode=False)
    except PybuildError as exc:
        if debug:
            raise
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        for hint in exc.hints:
            print(f"hint: {_one_line(hint)}", file=sys.stderr)
        # a failed RUN step passes its exit status on, as `buildah build` does; a bad command line
        # exits 2, as the option parser's own errors do
        sys.exit(2 if isinstance(exc, UsageError) else getattr(exc, "exit_status", 1) or 1)
    except CliException as exc:
        if debug:
            raise
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        print(f"error: {where}{_one_line(exc.format_message())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt, _Interrupted):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
