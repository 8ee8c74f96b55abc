"""Which module of :mod:`pybuild.cli` holds each command, so that a run loads only the one it needs.

Imports nothing heavy: it runs before Typer is loaded."""

from __future__ import annotations

import os

#: command -> module in pybuild.cli, in the order `pybuild --help` lists them (each module registers
#: its commands when imported, so modules are imported in the order they first appear here)
COMMANDS: dict[str, str] = {
    "images": "inspect",
    "history": "inspect",
    "inspect": "inspect",
    "check": "inspect",
    "sbom": "sbom",
    "tag": "transfer",
    "copy": "transfer",
    "pull": "transfer",
    "push": "transfer",
    "login": "login",
    "logout": "login",
    "rm": "store",
    "gc": "store",
    "config": "config",
    "build": "build",
    "unpack": "bundle",
    "repack": "bundle",
    "run": "run",
    "doctor": "run",
    "manifest": "manifest",  # a group: listed after the commands, wherever it is registered
    "cache": "cache",  # a group too
}
#: the global options that take a value (they come before the command)
VALUE_OPTIONS = ("--store",)


def command_word(argv: list[str]) -> str | None:
    """The command named on a command line (the arguments after ``pybuild``), past the global
    options; None when there is none."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg in VALUE_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return None


def load_commands(argv: list[str]) -> None:
    """Register the command ``argv`` names on the app; every command when it names none (``--help``),
    one that does not exist (the parser's error may suggest another), or a shell is completing."""
    word = command_word(argv)
    if word in COMMANDS and not os.environ.get("_PYBUILD_COMPLETE"):
        modules = [COMMANDS[word]]
    else:
        modules = list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        # the import statement's own path (not importlib.import_module): `python -X importtime`
        # reports what it loads, as for every other import
        __import__(f"{__package__}.{module}")
