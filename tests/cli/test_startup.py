"""Start-up: what a command line loads. `pybuild --version` loads no command-line framework, and a
command loads its own module and what it needs, never the others' (the table in cli/commands.py).
Checked through the modules Python reports importing (PYTHONPROFILEIMPORTTIME), never by timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pybuild
from pybuild.cli.commands import COMMANDS, command_word
from pybuild.cli.options import bare_bool_flags
from tests.fixtures.rootless import PYBUILD, as_test_user
from tests.remote.conftest import RegistryServer, start_registry, stop_registry

FRAMEWORKS = {"typer", "click", "rich", "shellingham", "zstandard", "urllib3"}
# the console script's own code (pybuild.cli:main), with every module loaded by the end of the run
# (sys.modules: whatever imported it) written as JSON to the file named first
RECORDING = (
    "import atexit, json, sys\n"
    "out = sys.argv.pop(1)\n"
    "sys.argv[0] = 'pybuild'\n"
    "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
    "from pybuild.cli import main\n"
    "main()\n"
)


def recorded(out: Path, *args: str) -> list[str]:
    """The command line that runs pybuild ``args`` and records its modules in ``out``."""
    return [sys.executable, "-c", RECORDING, str(out), *args]


def modules_in(out: Path) -> set[str]:
    return set(json.loads(out.read_text()))


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_version_loads_no_framework_and_prints_what_typer_prints(user_home: Path) -> None:
    script = as_test_user([PYBUILD, "--version"], user_home)  # the console script itself
    assert (script.returncode, script.stdout, script.stderr) == (0, f"pybuild {pybuild.__version__}\n", "")
    fast = as_test_user(recorded(user_home / "fast.json", "--version"), user_home)
    assert (fast.returncode, fast.stdout, fast.stderr) == (0, script.stdout, "")
    modules = modules_in(user_home / "fast.json")
    assert not tops(modules) & FRAMEWORKS, sorted(tops(modules) & FRAMEWORKS)
    assert {m for m in modules if m.startswith("pybuild")} == {"pybuild", "pybuild.cli"}
    # the same option after a global one goes through Typer's own --version: the same line
    store = user_home / "store"
    full = as_test_user(recorded(user_home / "full.json", "--store", str(store), "--version"), user_home)
    assert (full.returncode, full.stdout, full.stderr) == (0, script.stdout, "")
    assert "typer" in modules_in(user_home / "full.json")  # (and the check would have seen it)
    assert not store.exists()  # --version opened no store


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path / "registry")
    yield server
    stop_registry(server)


def test_push_loads_no_other_command(
    pybuild_cli: Any, busybox_layout: Path, registry: RegistryServer, tmp_path: Path
) -> None:
    pybuild_cli("copy", "--compression", "none", f"oci:{busybox_layout}:latest", "localhost/bb")
    target = f"docker://{registry.host}/startup/bb:latest"
    first = pybuild_cli("push", "-q", "localhost/bb", target).stdout.strip()
    # the second push of the unchanged image: the registry has every blob, the manifest goes again
    env = {**os.environ, "PYBUILD_STORE": str(pybuild_cli.store)}
    cmd = recorded(tmp_path / "push.json", "push", "-q", "localhost/bb", target)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert (again.returncode, again.stdout.strip(), again.stderr) == (0, first, "")
    request = urllib.request.Request(
        f"http://{registry.host}/v2/startup/bb/manifests/latest",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        assert response.headers["Docker-Content-Digest"] == first
    modules = modules_in(tmp_path / "push.json")
    assert {"pybuild.cli.transfer", "pybuild.remote.registry", "typer", "urllib3"} <= modules
    others = {f"pybuild.cli.{m}" for m in COMMANDS.values()} - {"pybuild.cli.transfer"}
    assert not modules & others, sorted(modules & others)
    assert not tops(modules) & {"rich", "zstandard"}
    heavy = ("pybuild.builder", "pybuild.run", "pybuild.bundle", "pybuild.attest", "pybuild.diff")
    assert not {m for m in modules if m in heavy or m.startswith(tuple(h + "." for h in heavy))}


def test_every_command_is_in_the_table_and_help_is_unchanged(pybuild_cli: Any, tmp_path: Path) -> None:
    """The whole app (every module loaded, as `pybuild.cli.app` is) against the lazy console script:
    the same commands, in the table's order, and each command's --help word for word."""
    script = (
        "import contextlib, io, json, sys\n"
        "from pybuild.cli import app\n"
        "import typer.main\n"
        "group = typer.main.get_command(app)\n"
        "out = {'names': list(group.list_commands(None)), 'help': {}}\n"
        "for name in out['names']:\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        try:\n"
        "            app([name, '--help'], prog_name='pybuild', standalone_mode=False)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    out['help'][name] = buf.getvalue()\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "COLUMNS": "100"}
    whole = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    full = json.loads(whole.stdout)
    assert full["names"] == list(COMMANDS)
    listing = pybuild_cli("--help", env={"COLUMNS": "100"}).stdout
    section = listing.split("Commands:\n", 1)[1].splitlines()
    listed = [line.split()[0] for line in section if line.startswith("  ") and line[2] != " "]
    assert listed == list(COMMANDS)
    for name in COMMANDS:
        out = tmp_path / f"{name}.json"
        proc = subprocess.run(recorded(out, name, "--help"), capture_output=True, text=True, env=env)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, full["help"][name], ""), name
        loaded = {m for m in modules_in(out) if m.startswith("pybuild.cli.")}
        own = f"pybuild.cli.{COMMANDS[name]}"
        assert own in loaded
        assert not loaded & {f"pybuild.cli.{m}" for m in COMMANDS.values()} - {own}, name


def test_bad_command_lines_still_exit_2_in_one_line(pybuild_cli: Any) -> None:
    for args, fragment in [
        (["push", "--no-such-flag"], "No such option"),
        (["nosuchcommand"], "No such command"),
        (["--store"], "requires an argument"),
    ]:
        proc = pybuild_cli(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert fragment in proc.stderr
        assert "Traceback" not in proc.stderr


def test_the_command_word_skips_global_options() -> None:
    assert command_word(["--store", "/s", "push", "a", "b"]) == "push"
    assert command_word(["--store=/s", "pull", "x"]) == "pull"
    assert command_word(["--help"]) is None
    assert command_word([]) is None
    # a bare --tls-verify means true wherever the command sits, so the next word stays the image
    # (the store's path is no longer taken for the command)
    assert bare_bool_flags(["--store", "/s", "pull", "--tls-verify", "host/img"]) == [
        "--store",
        "/s",
        "pull",
        "--tls-verify=true",
        "host/img",
    ]
    assert bare_bool_flags(["--store", "/s", "tag", "--tls-verify", "x"])[3] == "--tls-verify"
