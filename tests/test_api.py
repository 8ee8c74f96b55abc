"""The Python API (pybuild/__init__.py): the README's first ```python block runs as written (as root
and rootless), every public name loads and is documented, `import pybuild` loads none of the parts,
options refuse bad values when they are made, and warnings are collected."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

import pybuild
from pybuild.errors import PybuildWarning, UsageError, collect_warnings, warn
from tests.fixtures.rootless import TEST_USER, as_test_user
from tests.fixtures.tools import validate_layout

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block() -> str:
    """The first ```python block of the README's "Python API" section."""
    text = README.read_text()
    section = text[text.index("## Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no ```python block in the Python API section"
    return match.group(1)


def check_result(work: Path, stdout: str) -> None:
    assert stdout.startswith("built ") and stdout.endswith("hello from pybuild\n"), stdout
    validate_layout(work / "layout", "hello")  # pybuild's check and oci-image-tool
    rootfs = work / "bundle" / "rootfs"
    assert (rootfs / "hello.txt").read_text() == "hello from pybuild\n"
    assert (work / "bundle" / "config.json").is_file()


def test_readme_block_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # tempfile.mkdtemp() lands here
    namespace: dict[str, Any] = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_block(), "README.md", "exec"), namespace)
    work = namespace["work"]
    assert Path(work).parent == tmp_path
    check_result(Path(work), out.getvalue())
    assert pybuild.check(pybuild.open_store(Path(work) / "store")) == []


@pytest.mark.rootless
def test_readme_block_runs_rootless(user_home: Path) -> None:
    script = user_home / "readme.py"
    script.write_text(readme_block() + "print(work, end='')\n")
    subprocess.run(["chown", TEST_USER, str(script)], check=True)
    proc = as_test_user([sys.executable, str(script)], user_home, {"TMPDIR": str(user_home)})
    assert proc.returncode == 0, proc.stderr
    *lines, work = proc.stdout.split("\n")
    check_result(Path(work), "\n".join(lines) + "\n")


def test_every_name_loads_and_is_documented() -> None:
    for name in pybuild.__all__:
        value = getattr(pybuild, name)
        if name != "__version__":
            assert value.__doc__, name
    assert sorted(dir(pybuild)) == sorted(set(dir(pybuild)))
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        _ = pybuild.nosuch  # type: ignore[attr-defined]


def test_import_pybuild_loads_no_part() -> None:
    code = "import sys, pybuild; print(sorted(m for m in sys.modules if m.startswith('pybuild.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda ctx: pybuild.BuildOptions(context=ctx, format="tarball"), "--format 'tarball'"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, compression="lz4"), "--compression 'lz4'"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, pull="sometimes"), "--pull 'sometimes'"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, network="bridge"), "--network 'bridge'"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, platform="linux"), "invalid platform 'linux'"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, platform="linux/arm64,x"), "invalid platform 'x'"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, jobs=0), "--jobs 0"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, manifest="bad name!"), "bad name!"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, tags=["Bad Name"]), "invalid image name"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, tags="localhost/x"), "expected a list"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, timestamp=-1), "--timestamp -1"),
        (lambda ctx: pybuild.BuildOptions(context=ctx / "nosuch"), "is not a directory"),
        (lambda ctx: pybuild.BuildOptions(context=ctx, labels={"": "v"}), "--label ''"),
        (
            lambda ctx: pybuild.BuildOptions(context=ctx, format="docker", compression="zstd"),
            "--compression zstd",
        ),
        (lambda ctx: pybuild.ConfigChanges(exposed_ports=["http"]), "--expose 'http'"),
        (lambda ctx: pybuild.ConfigChanges(volumes=["relative"]), "--volume 'relative'"),
        (lambda ctx: pybuild.ConfigChanges(clear=["everything"]), "--clear 'everything'"),
        (lambda ctx: pybuild.Bind.parse("nocolon"), "--volume 'nocolon'"),
    ],
)
def test_options_refuse_bad_values_when_made(tmp_path: Path, make: Any, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        make(tmp_path)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_build_options_are_frozen_values_that_hide_secrets(tmp_path: Path) -> None:
    options = pybuild.BuildOptions(
        context=str(tmp_path), tags=["localhost/a"], build_args={"A": "1"}, secrets={"tok": b"s3cr3t"}
    )
    assert options.context == tmp_path and options.tags == ("localhost/a",)
    assert "s3cr3t" not in repr(options) and "tok" not in repr(options)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.format = "docker"  # type: ignore[misc]
    with pytest.raises(TypeError):
        options.build_args["B"] = "2"  # type: ignore[index]
    assert pybuild.ConfigChanges(exposed_ports=["80"]).exposed_ports == ("80/tcp",)


def test_warnings_are_collected_or_go_to_python_warnings() -> None:
    with collect_warnings() as outer:
        with collect_warnings() as inner:
            warn("one")  # passed on to the handler installed before (the CLI's printer, or here outer)
        with collect_warnings(forward=False) as kept:
            warn("kept")
    assert inner == ["one"] and outer == ["one"] and kept == ["kept"]
    with pytest.warns(PybuildWarning, match="two"):
        warn("two")


def test_a_build_lists_its_warnings(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM scratch\nHEALTHCHECK NONE\n")
    store = pybuild.open_store(tmp_path / "store")
    options = pybuild.BuildOptions(context=ctx, build_args={"UNUSED": "1"}, timestamp=0)
    with collect_warnings() as found:
        result = pybuild.build(store, options)
    assert found == result.warnings
    assert any("not consumed: ['UNUSED']" in w for w in found)
    assert any(w.startswith("HEALTHCHECK is not part of the OCI image format") for w in found)
    assert pybuild.check(store) == []
