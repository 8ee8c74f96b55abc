"""The console entry point: one line per error, the exit status, no traceback."""

from __future__ import annotations

import os
import sys

import typer

from ..errors import PybuildError, UsageError, warnings_to

try:  # Typer >= 0.26 carries its own copy of click
    from typer.exceptions import TyperException as CliException
except ImportError:  # pragma: no cover - older Typer on click
    from click.exceptions import ClickException as CliException  # type: ignore[no-redef,unused-ignore]

from .application import Interrupted, app
from .commands import load_commands
from .options import bare_bool_flags
from .output import one_line, print_warning


def main() -> None:
    """Console entry point: one line per error, exit status 1 (2 for a bad command line, a failed RUN's
    own status for a build), no traceback."""
    debug = os.environ.get("PYBUILD_DEBUG") == "1"
    argv = sys.argv[1:]
    try:
        load_commands(argv)  # only the named command's module (every one for --help)
        with warnings_to(print_warning):
            code = app(args=bare_bool_flags(argv), standalone_mode=False)
    except PybuildError as exc:
        if debug:
            raise
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        for hint in exc.hints:
            print(f"hint: {one_line(hint)}", file=sys.stderr)
        # a failed RUN step passes its exit status on, as `buildah build` does; a bad command line
        # exits 2, as the option parser's own errors do
        sys.exit(2 if isinstance(exc, UsageError) else getattr(exc, "exit_status", 1) or 1)
    except CliException as exc:
        if debug:
            raise
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        print(f"error: {where}{one_line(exc.format_message())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt, Interrupted):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
