"""Output helpers: JSON, tables, sizes, one-line messages, files written whole, progress bars."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from ..errors import PybuildError, UsageError
from ..layout import (
    Descriptor,
    Image,
    Layout,
    load_image,
    read_index,
)
from ..layout.imagestore import UNTAGGED


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
    """Plain columns; a rich table on a terminal (rich is loaded only then: it costs more to import
    than `pybuild images` takes otherwise)."""
    console = None
    if sys.stdout.isatty():
        from rich.console import Console

        console = Console(soft_wrap=True)
    if console is None or not console.is_terminal:
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        for row in [headers, *rows]:
            typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return
    from rich.table import Table

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


def list_summary(layout: Layout, desc: Descriptor, name: str | None) -> dict[str, Any]:
    """A manifest list as ``images`` shows it: its own ID (the index's digest), the platforms of its
    images and their size (the layers of each, once)."""
    index = read_index(layout, desc)
    layers: dict[str, int] = {}
    for entry in index.manifests:
        with contextlib.suppress(PybuildError):  # an image not in the store (listed by digest only)
            for layer in load_image(layout, entry).layers:
                layers[str(layer.digest)] = layer.size
    if name is not None and name.startswith(UNTAGGED + ":"):
        name = None
    return {
        "name": name,
        "digest": str(desc.digest),
        "mediaType": desc.media_type,
        "id": desc.digest.encoded,
        "created": None,
        "size": sum(layers.values()),
        "platforms": [str(e.platform) if e.platform else "?" for e in index.manifests],
        "manifests": [e.to_dict() for e in index.manifests],
    }


# --- commands ------------------------------------------------------------------------------------


def print_warning(message: str) -> None:
    """The CLI's printer for :func:`pybuild.errors.warn`: ``warning: <message>``, one line, on stderr."""
    sys.stdout.flush()
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    """``text`` with control and line-separator characters escaped (they come from user input, e.g. a
    Containerfile), so an error stays on one line and cannot move the terminal's cursor."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temp file beside it, then a rename)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


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
