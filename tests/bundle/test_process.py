"""bundle/process.py: an image config's process (conversion.md), the one reading shared by unpack's
config.json, `pybuild run` and the builder's RUN; and Bind, the checked `-v SRC:DST[:ro]`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.bundle import Bind, Process, image_process
from pybuild.bundle.process import DEFAULT_PATH
from pybuild.errors import UsageError


def test_entrypoint_cmd_env_workdir_user() -> None:
    runtime = {
        "Entrypoint": ["/entry"],
        "Cmd": ["arg"],
        "Env": ["A=1", "PATH=/bin"],
        "WorkingDir": "/w",
        "User": "1000",
    }
    assert image_process(runtime) == Process(("/entry", "arg"), ("A=1", "PATH=/bin"), "/w", "1000")


def test_overrides_and_defaults() -> None:
    process = image_process(
        {"Cmd": ["sh"], "Env": ["A=1", "B=2"]}, command=["id"], env={"A": "9", "C": "3"}, user="", cwd="/c"
    )
    # the default PATH first (the image has none), the image's Env in order, overrides in place
    assert process.env == (f"PATH={DEFAULT_PATH}", "A=9", "B=2", "C=3")
    assert process.args == ("id",) and process.cwd == "/c" and process.user == ""
    assert process.environment["A"] == "9"
    bare = image_process({})
    assert bare.args == () and bare.cwd == "/" and bare.user == "" and bare.env == (f"PATH={DEFAULT_PATH}",)


def test_bind_parse(tmp_path: Path) -> None:
    assert Bind.parse(f"{tmp_path}:/data:ro") == Bind(str(tmp_path), "/data", True)
    assert Bind.parse(f"{tmp_path}:/data") == Bind(str(tmp_path), "/data", False)
    for bad in ("nocolon", f"{tmp_path}:relative", f"{tmp_path}:/d:rx", ":/d"):
        with pytest.raises(UsageError, match="expected SRC:DST"):
            Bind.parse(bad)
    with pytest.raises(UsageError, match="does not exist"):
        Bind.parse(f"{tmp_path}/nosuch:/d")
