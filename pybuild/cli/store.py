"""The store's upkeep: rm, gc."""

from __future__ import annotations

import typer

from ..errors import UsageError, warn
from ..layout import ImageStore, Layout, gc, untag
from .application import State, app, state_of
from .output import human_size


@app.command()
def rm(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(..., help="Names to remove (blobs go at the next gc)."),
) -> None:
    """Remove image names from the store or an OCI layout."""
    state = state_of(ctx)
    for text in refs:
        untag(state.store, text)
        typer.echo(f"removed {text}")


@app.command(name="gc")
def gc_command(
    ctx: typer.Context,
    layout: str | None = typer.Argument(None, help="oci:DIR to collect instead of the store."),
) -> None:
    """Remove blobs no image references, and stale temp files."""
    target = _layout_argument(state_of(ctx), layout)
    result = gc(target)
    for problem in result.problems:
        warn(problem)
    typer.echo(
        f"removed {len(result.removed)} blobs ({human_size(result.freed)}) "
        f"and {result.temp_files} temp files from {target.label}"
    )
    if result.referrers:
        typer.echo(f"removed {len(result.referrers)} artifacts whose subject is gone")
    if isinstance(target, ImageStore):
        from ..run.layers import sweep

        swept = sweep(target)
        typer.echo(
            f"removed {swept.layer_dirs} layer directories, {swept.records} build cache records, "
            f"{swept.workspaces} stale build workspaces and {swept.run_workspaces} of ended runs"
        )


def _layout_argument(state: State, text: str | None) -> Layout:
    if text is None:
        return state.store
    if not text.startswith("oci:"):
        raise UsageError(f"expected oci:DIR, not {text!r}")
    return Layout.open(text[4:], label=text)
