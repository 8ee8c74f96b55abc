"""pybuild build."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from ..errors import UsageError
from .application import app, state_of
from .options import (
    AuthfileOption,
    CertDirOption,
    CredsOption,
    IsolationOption,
    TlsOption,
    isolation_value,
    pairs,
    registry_options,
)


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
    platform: str | None = typer.Option(
        None,
        "--platform",
        help="OS/ARCH[/VARIANT] to build for; several, comma-separated, build one image each, in an index "
        "(-t names it). Foreign platforms run under qemu-user emulation (see pybuild doctor).",
    ),
    all_platforms: bool = typer.Option(
        False, "--all-platforms", help="Build for every platform the base images all offer."
    ),
    manifest: str | None = typer.Option(
        None, "--manifest", help="Add the image(s) to this manifest list in the store (made if missing)."
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", help="Stages and platforms built at the same time (default: the number of cores)."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image ID."),
    isolation: str | None = IsolationOption,
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
    sbom: bool = typer.Option(
        False,
        "--sbom",
        help="Attach an SBOM of the image (an OCI 1.1 referrer, in the store and oci: targets).",
    ),
    sbom_format: str | None = typer.Option(
        None, "--sbom-format", help="spdx (SPDX 2.3 JSON, the default) or cyclonedx (CycloneDX 1.5 JSON)."
    ),
    provenance: bool = typer.Option(
        False, "--provenance", help="Attach a SLSA v1 provenance statement of the build (no secrets in it)."
    ),
    attest: list[str] = typer.Option(
        [], "--attest", help="type=sbom or type=provenance: BuildKit's spelling of --sbom and --provenance."
    ),
    cache_from: list[str] = typer.Option(
        [],
        "--cache-from",
        help="A shared build cache to take step results from: a registry repository HOST/PATH, or "
        "oci:DIR; repeat for more (looked up in order).",
    ),
    cache_to: str | None = typer.Option(
        None, "--cache-to", help="A shared build cache (HOST/PATH or oci:DIR) for every step's result."
    ),
    cache_ttl: str | None = typer.Option(
        None, "--cache-ttl", help="Ignore cached step results older than this duration (30m, 12h, 168h)."
    ),
    volume: list[str] = typer.Option(
        [], "-v", "--volume", help="HOST:CONTAINER[:ro|rw]: bind a host path into every RUN step; repeat."
    ),
) -> None:
    """Build an image from a Containerfile (like `buildah build`)."""
    from ..builder import BuildOptions, IndexResult, Reporter, build
    from ..builder.attestations import parse_attest
    from ..builder.options import Volume, parse_duration, parse_secret, read_build_args

    secrets = dict(parse_secret(spec) for spec in secret)
    kinds = {parse_attest(spec) for spec in attest}
    sbom = sbom or "sbom" in kinds
    provenance = provenance or "provenance" in kinds
    if sbom_format is not None and not sbom:
        raise UsageError(f"--sbom-format {sbom_format}: no SBOM is made without --sbom")
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
        labels=pairs(label, "--label"),
        annotations=pairs(annotation, "--annotation"),
        timestamp=timestamp,
        network=network,
        secrets=secrets,
        ignorefile=ignorefile,
        pull=pull,
        platform=platform,
        all_platforms=all_platforms,
        manifest=manifest,
        jobs=jobs,
        isolation=isolation_value(isolation),
        sbom=sbom,
        sbom_format=sbom_format or "spdx",
        provenance=provenance,
        cache_from=list(cache_from),
        cache_to=cache_to,
        cache_ttl=parse_duration(cache_ttl, "--cache-ttl") if cache_ttl is not None else None,
        volumes=[Volume.parse(v) for v in volume],
        # (pybuild.remote is loaded only when a flag asks for it: a cached rebuild stays quick)
        registry=registry_options(creds, tls_verify, cert_dir, authfile)
        if (creds, tls_verify, cert_dir, authfile) != (None, None, None, None)
        else None,
    )

    class Printer(Reporter):
        def __init__(self) -> None:
            self.console = None  # rich (bold step lines) only on a terminal: it is slow to load
            if sys.stdout.isatty() and not quiet:
                from rich.console import Console

                self.console = Console(highlight=False)

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

    printer = Printer()
    with _quiet_output(quiet):
        result = build(state_of(ctx).store, options, printer)
    if iidfile is not None:
        try:
            iidfile.write_text(f"sha256:{result.image_id}")
        except OSError as exc:
            raise UsageError(f"--iidfile {iidfile}: {exc.strerror or exc}") from None
    if quiet:
        typer.echo(result.image_id)
        return
    if isinstance(result, IndexResult):
        for platform_text, image in zip(result.platforms, result.images, strict=True):
            typer.echo(f"--> {image.image_id[:12]} {platform_text}")
    for tag in result.tags:
        typer.echo(f"COMMIT {tag}")
    each = result.images if isinstance(result, IndexResult) else [result]
    for made in (made for image in each for made in image.attestations):
        artifact = made.artifact
        typer.echo(
            f"ATTACH {artifact.artifact_type} {artifact.digest} to {made.subject.digest} in {made.where}"
        )
    if manifest is not None:
        typer.echo(f"added to manifest list {options.manifest}")
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
