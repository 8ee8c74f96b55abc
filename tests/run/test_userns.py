"""User namespaces (run/userns.py): the id maps, and Python code run in a child that is root in a new
user namespace, as root (where it simply runs) and as the unprivileged test user."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pybuild.errors import LayerError, RunError
from pybuild.run import current_id_map, run_in_userns, subordinate_range
from pybuild.run.userns import call_in_child, result_payload
from tests.fixtures.rootless import as_test_user, subordinate_start, user_uid

PROJECT = Path(__file__).resolve().parents[2]


def test_subordinate_range(tmp_path: Path) -> None:
    path = tmp_path / "subuid"
    path.write_text("# ranges\nother:100000:65536\nbroken:x:1\n1234:200000:1000\nme:300000:5\nme:400000:5\n")
    assert subordinate_range(path, "me", 99) == (300000, 5)  # the first range
    assert subordinate_range(path, "nameless", 1234) == (200000, 1000)  # by uid
    assert subordinate_range(path, "broken", 7) is None
    assert subordinate_range(path, "nobody", 7) is None
    assert subordinate_range(tmp_path / "missing", "me", 99) is None


def test_as_root_code_runs_in_this_process() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (CI does)")
    # root with CAP_SETUID, CAP_SETGID and CAP_SETFCAP maps every id it has, as they are
    assert current_id_map() == ([(0, 0, 4294967295)], [(0, 0, 4294967295)])
    assert run_in_userns(os.getpid) == os.getpid()


def test_payloads_carry_results_and_errors() -> None:
    assert result_payload(lambda: {"a": 1}).startswith(b"R")
    assert result_payload(lambda: (_ for _ in ()).throw(LayerError("bad layer"))) == b"ELayerError\tbad layer"
    failed = result_payload(lambda: 1 / 0)
    assert failed.startswith(b"ERunError\tTraceback") and b"ZeroDivisionError" in failed


def test_call_in_child_without_a_new_namespace() -> None:
    assert call_in_child(lambda: result_payload(os.getpid), new_userns=False) != os.getpid()
    with pytest.raises(LayerError, match=r"^bad layer$"):
        call_in_child(
            lambda: result_payload(lambda: (_ for _ in ()).throw(LayerError("bad layer"))), new_userns=False
        )
    with pytest.raises(RunError, match="ZeroDivisionError"):
        call_in_child(lambda: result_payload(lambda: 1 / 0), new_userns=False)


ROOTLESS = """
import json, os, sys
from pybuild.errors import LayerError, RunError
from pybuild.run import current_id_map, run_in_userns

def inside():
    with open("/proc/self/uid_map") as f:
        uid_map = [line.split() for line in f]
    with open("/proc/self/gid_map") as f:
        gid_map = [line.split() for line in f]
    return os.getuid(), os.getgid(), uid_map, gid_map

def fails():
    raise LayerError("a layer error inside")

out = {"map": current_id_map(), "inside": run_in_userns(inside), "parent_pid": os.getpid()}
try:
    run_in_userns(fails)
except LayerError as exc:
    out["error"] = [type(exc).__name__, str(exc)]
try:
    run_in_userns(lambda: 1 / 0)
except RunError as exc:
    out["bug"] = "ZeroDivisionError" in str(exc)
print(json.dumps(out))
"""


@pytest.mark.rootless
def test_rootless_child_is_root_in_a_mapped_namespace(user_home: Path) -> None:
    proc = as_test_user([sys.executable, "-c", ROOTLESS], user_home, env={"PYTHONPATH": str(PROJECT)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    uid, sub_uid, sub_gid = user_uid(), subordinate_start("uid"), subordinate_start("gid")
    gid = int(os.popen("id -g pybuild-test").read())
    assert out["map"] == [[[0, uid, 1], [1, sub_uid, 65536]], [[0, gid, 1], [1, sub_gid, 65536]]]
    got_uid, got_gid, uid_map, gid_map = out["inside"]
    assert (got_uid, got_gid) == (0, 0)
    assert uid_map == [["0", str(uid), "1"], ["1", str(sub_uid), "65536"]]
    assert gid_map == [["0", str(gid), "1"], ["1", str(sub_gid), "65536"]]
    assert out["error"] == ["LayerError", "a layer error inside"]  # class and message come back
    assert out["bug"] is True  # anything else: a RunError carrying the child's traceback
