"""pybuild cache: the shared build cache (--cache-to / --cache-from) and its upkeep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from ..errors import UsageError
from .application import app
from .options import AuthfileOption, CertDirOption, CredsOption, TlsOption, registry_options

cache_app = typer.Typer(
    name="cache",
    help="The shared build cache that `build --cache-to` writes and `--cache-from` reads.",
    no_args_is_help=True,
)
app.add_typer(cache_app)


@cache_app.command(name="prune")
def prune_command(
    cache: str = typer.Argument(..., help="The cache: a registry repository HOST/PATH, or oci:DIR."),
    older_than: str = typer.Option(
        ..., "--older-than", help="Remove the entries written longer ago than this (30m, 12h, 168h)."
    ),
    creds: str | None = CredsOption,
    tls_verify: str | None = TlsOption,
    authfile: Path | None = AuthfileOption,
    cert_dir: Path | None = CertDirOption,
) -> None:
    """Remove old entries of a shared build cache (a registry deletes their manifests, and its own
    garbage collection the blobs no manifest names; an oci: layout is collected at once)."""
    from ..builder.options import parse_duration
    from ..remote.buildcache import parse_cache_ref, prune_cache

    ref = parse_cache_ref(cache, "cache prune")
    age = parse_duration(older_than, "--older-than")
    options = None
    if ref.path is None:
        options = registry_options(creds, tls_verify, cert_dir, authfile)
    elif (creds, tls_verify, cert_dir, authfile) != (None, None, None, None):
        raise UsageError(f"cache prune {cache}: registry flags do not apply to an oci: layout")
    cutoff = datetime.now(UTC) - timedelta(seconds=age)
    result = prune_cache(ref, cutoff, options)
    typer.echo(f"removed {result.removed} entries from {ref.label}, kept {result.kept}")
    if result.skipped:
        typer.echo(f"left {result.skipped} tags named like entries that are no pybuild cache entry")
