"""Looking at images: images, history, inspect, check."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer

from ..errors import PybuildError, UsageError, warn
from ..layout import (
    Descriptor,
    Image,
    ImageConfig,
    Layout,
    Located,
    check_layout,
    is_list,
    load_image,
    locate,
    mediatype,
)
from .application import app, state_of
from .options import AuthfileOption, CertDirOption, CredsOption, TlsOption, registry_options
from .output import echo_json, human_size, image_summary, list_summary, print_table


@app.command()
def images(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the images in the store (`<none>` for those without a name, as podman lists them)."""
    store = state_of(ctx).store
    out = []
    for tag, desc in store.listing():
        try:
            if is_list(desc):  # a manifest list: its own ID (the index digest), its platforms
                out.append(list_summary(store, desc, tag))
                continue
            image = load_image(store, desc)
        except PybuildError as exc:  # one broken image never hides the others
            warn(f"{tag or desc.digest} is broken: {exc}")
            continue
        out.append(image_summary(image, tag))
    if as_json:
        keys = ("name", "id", "digest", "created", "size", "mediaType", "platforms")
        echo_json([{k: v for k, v in s.items() if k in keys} for s in out])
        return
    rows = []
    for s in out:
        repo, _, tag = (s["name"] or "<none>:<none>").rpartition(":")
        created = (s["created"] or "")[:19].replace("T", " ")
        if "platforms" in s:
            created = f"manifest list: {', '.join(s['platforms']) or 'empty'}"
        rows.append([repo, tag, s["id"][:12], created, human_size(s["size"])])
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
    found = locate(state_of(ctx).store, ref)
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

    from ..layout import Manifest
    from ..remote import inspect_remote

    manifest_raw, config_raw = inspect_remote(ref, options=options)
    manifest = Manifest.parse(manifest_raw, f"{ref}: manifest", lenient=True)
    config = ImageConfig.parse(config_raw, f"{ref}: config")
    scratch = Layout(Path(tempfile.gettempdir()), label=ref)
    return Image(scratch, manifest.descriptor(), manifest, config), ref


def _archive_image(ref: str, scratch: Path) -> Located:
    """The image a docker-archive: or oci-archive: reference names: its documents (no layer) read
    into a throwaway layout in ``scratch``, as skopeo inspect reads them."""
    from ..remote import ArchiveReference, parse_image_reference
    from ..remote.archivedocs import archive_documents

    parsed = parse_image_reference(ref)
    assert isinstance(parsed, ArchiveReference)
    layout = Layout.create(scratch / "documents", label=ref)
    return Located(layout, archive_documents(parsed, layout), ref)


@app.command()
def inspect(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., help="NAME[:TAG], an image ID, oci:DIR[:TAG], docker://REF, docker-archive:F, oci-archive:F."
    ),
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
    """Show an image's manifest and config (docker://, docker-archive: and oci-archive: references are
    read without pulling or extracting layers)."""
    name: str | None
    options = registry_options(creds, tls_verify, cert_dir, authfile, needed=ref.startswith("docker://"))
    if artifact_type is not None and not referrers:
        raise UsageError("--artifact-type goes with --referrers")
    if artifact_type is not None and not mediatype.is_valid(artifact_type):
        raise UsageError(f"--artifact-type {artifact_type[:80]!r}: expected TYPE/SUBTYPE")
    if ref.startswith("docker://"):
        if referrers:
            from ..remote import parse_registry_reference
            from ..remote.referrers import remote_referrers

            found_remote = remote_referrers(
                parse_registry_reference(ref), options=options, artifact_type=artifact_type
            )
            _print_referrers(found_remote, as_json)
            return
        image, name = _remote_image(ref, options)
    else:
        with contextlib.ExitStack() as stack:
            if ref.startswith(("docker-archive:", "oci-archive:")):
                found = _archive_image(ref, Path(stack.enter_context(tempfile.TemporaryDirectory())))
            else:
                found = locate(state_of(ctx).store, ref)
            image, name = load_image(found.layout, found.descriptor), found.name
            if referrers:
                from ..layout import referrers as layout_referrers

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
    lines += [
        f"{key + ':':<14}{json.dumps(runtime[key])}"
        for key in ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "StopSignal")
        if runtime.get(key)
    ]
    lines += [
        f"{key + ':':<14}{', '.join(sorted(runtime[key]))}"
        for key in ("Labels", "ExposedPorts", "Volumes")
        if runtime.get(key)
    ]
    lines.append(f"Layers:       {len(summary['layers'])} ({human_size(summary['size'])})")
    lines += [
        f"  {layer['digest']}  {human_size(layer['size']):>9}  {layer['mediaType']}"
        for layer in summary["layers"]
    ]
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
def check(
    ctx: typer.Context,
    ref: str | None = typer.Argument(
        None, help="An image (NAME or oci:DIR:TAG), or oci:DIR for a whole layout."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Verify digests, sizes, media types and diff_ids; report every problem found."""
    state = state_of(ctx)
    layout: Layout
    roots: list[Descriptor] | None
    if ref is None:
        layout, roots = state.store, None
    elif ref.startswith("oci:") and ":" not in ref[4:]:
        layout, roots = Layout.open(ref[4:], label=ref), None
    else:
        found = locate(state.store, ref)
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
