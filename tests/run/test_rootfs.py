"""run_function: a Python function with the image's root as /, as root and as the unprivileged user."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybuild.errors import RunError
from pybuild.run import run_function
from tests.fixtures.rootless import TEST_USER, as_test_user
from tests.fixtures.trees import many_layers

PROJECT = Path(__file__).resolve().parents[2]


def make_lower(base: Path) -> Path:
    lower = base / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "os-release").write_text("ID=test\n")
    os.symlink("/", lower / "link")
    os.symlink("../../../../../../..", lower / "up")
    return lower


def change_root() -> list[str]:
    with open("/etc/new", "w") as f:
        f.write("new\n")
    os.mkdir("/made")
    # through a symlink to / and a relative one climbing far: both stay in the merged root
    with open("/link/etc/via-link", "w") as f:
        f.write("x")
    with open("/up/escaped", "w") as f:
        f.write("x")
    return sorted(os.listdir("/"))


def fail() -> None:
    raise RunError("no such source: missing.txt")


def test_changes_land_in_the_upperdir_and_stay_inside(tmp_path: Path) -> None:
    lower, upper = make_lower(tmp_path), tmp_path / "upper"
    upper.mkdir()
    listing = run_function([lower], upper, change_root)
    assert listing == ["escaped", "etc", "link", "made", "up"]
    assert (upper / "etc" / "new").read_text() == "new\n"
    assert (upper / "made").is_dir()
    assert (upper / "etc" / "via-link").exists() and (upper / "escaped").exists()
    assert not Path("/etc/via-link").exists() and not Path("/escaped").exists()
    assert not (lower / "etc" / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lower", "upper"]  # temp dirs removed


def test_a_pybuild_error_comes_back_with_its_class(tmp_path: Path) -> None:
    lower, upper = make_lower(tmp_path), tmp_path / "upper"
    upper.mkdir()
    with pytest.raises(RunError, match=r"no such source: missing\.txt"):
        run_function([lower], upper, fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lower", "upper"]


def test_descriptors_opened_before_stay_usable(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "src.txt").write_text("from the context")
    lower, upper = make_lower(tmp_path), tmp_path / "upper"
    upper.mkdir()
    dir_fd = os.open(context, os.O_RDONLY | os.O_DIRECTORY)

    def copy_in() -> int:
        fd = os.open("src.txt", os.O_RDONLY, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as src, open("/etc/copied", "wb") as dst:
            return dst.write(src.read())

    try:
        assert run_function([lower], upper, copy_in) == len("from the context")
    finally:
        os.close(dir_fd)
    assert (upper / "etc" / "copied").read_text() == "from the context"


def test_scratch_and_many_layers(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    assert run_function([], upper, lambda: os.listdir("/")) == []
    base = tmp_path / ("a-long-directory-name-for-many-layers-" * 2)
    layers = many_layers(base)
    assert len(":".join(map(str, layers))) > 4096
    upper2 = tmp_path / "upper2"
    upper2.mkdir()
    assert len(run_function(layers, upper2, lambda: os.listdir("/"))) == 150


def test_overhead_is_small(tmp_path: Path) -> None:
    lower, upper = make_lower(tmp_path), tmp_path / "upper"
    upper.mkdir()
    run_function([lower], upper, lambda: None)
    started = time.perf_counter()
    for _ in range(10):
        run_function([lower], upper, lambda: None)
    print(f"run_function overhead: {(time.perf_counter() - started) * 100:.1f} ms")


ROOTLESS_SCRIPT = """
import json, os, sys
from pathlib import Path
from pybuild.errors import RunError
from pybuild.run import run_function
from tests.run.test_rootfs import change_root, fail, make_lower
home = Path(sys.argv[1])
lower, upper = make_lower(home), home / "upper"
upper.mkdir()
out = {"listing": run_function([lower], upper, change_root)}
def chown_it():
    os.chown("/etc/new", 123, 456)
    return os.getuid()
out["uid"] = run_function([lower], upper, chown_it)
try:
    run_function([lower], upper, fail)
except RunError as exc:
    out["error"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.mark.rootless
def test_run_function_rootless(user_home: Path) -> None:
    proc = as_test_user(
        [sys.executable, "-c", ROOTLESS_SCRIPT, str(user_home)], user_home, env={"PYTHONPATH": str(PROJECT)}
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["listing"] == ["escaped", "etc", "link", "made", "up"]
    assert out["uid"] == 0
    assert out["error"] == ["RunError", "no such source: missing.txt"]
    upper = user_home / "upper"
    st = os.lstat(upper / "etc" / "new")
    assert stat.S_ISREG(st.st_mode)
    sub = {
        line.split(":")[0]: int(line.split(":")[1]) for line in Path("/etc/subuid").read_text().splitlines()
    }
    assert st.st_uid == sub[TEST_USER] + 122
    assert (upper / "made").is_dir() and (upper / "escaped").exists()
    assert not Path("/escaped").exists()
    leftovers = subprocess.run(["ls", str(user_home)], capture_output=True, text=True).stdout.split()
    assert sorted(leftovers) == ["lower", "run", "upper"]


def _listing_of_d() -> list[str]:
    return sorted(os.listdir("/d"))


@pytest.mark.parametrize("mode", ["native", "fuse", "copy"])
def test_an_opaque_directory_in_a_layer_hides_the_layers_below(tmp_path: Path, mode: str) -> None:
    # layer directories mark opaque directories with user.overlay.opaque (as an unprivileged
    # extraction must); as root too, the lower content must stay hidden
    below, above, upper = tmp_path / "below", tmp_path / "above", tmp_path / "upper"
    for d in (below / "d", above / "d", upper):
        d.mkdir(parents=True)
    (below / "d" / "old").write_text("old")
    (above / "d" / "new").write_text("new")
    os.setxattr(above / "d", "user.overlay.opaque", b"y")
    assert run_function([above, below], upper, _listing_of_d, mode=mode) == ["new"]


def _listing_of_root() -> list[str]:
    return sorted(os.listdir("/"))


@pytest.mark.parametrize("mode", ["native", "fuse", "copy"])
def test_a_layer_directory_twice_in_the_stack_shows_one_view(tmp_path: Path, mode: str) -> None:
    """Two steps can make the same diff_id, so an image's stack can name one layer directory twice;
    kernel overlay refuses that with ELOOP. Only the topmost occurrence is kept: the same view."""
    base, twice, middle, upper = (tmp_path / n for n in ("base", "twice", "middle", "upper"))
    for d in (base, twice, middle, upper):
        d.mkdir()
    (base / "b").write_text("b")
    (twice / "t").write_text("t")
    os.mknod(middle / "t", stat.S_IFCHR, 0)  # the middle layer deletes t; the upper copy brings it back
    (middle / "m").write_text("m")
    stack = [twice, middle, twice, base]
    assert run_function(stack, upper, _listing_of_root, mode=mode) == ["b", "m", "t"]


def test_a_mount_that_fails_is_one_line(tmp_path: Path) -> None:
    """The OSError of a failed overlay mount comes back as a RunError of one line, no traceback."""
    upper = tmp_path / "upper"
    upper.mkdir()
    with pytest.raises(RunError) as info:
        run_function([tmp_path / "no-such-layer"], upper, _listing_of_root, mode="native")
    message = str(info.value)
    assert message.startswith("cannot mount the root filesystem (native mode, 1 layers): "), message
    assert "No such file or directory" in message and "\n" not in message and "Traceback" not in message
