"""The daemon fixtures fail loudly, with the daemon's own words, when a daemon cannot start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.daemons import Containerd, start_containerd, start_dockerd


def test_containerd_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    base = tmp_path / "c"
    (base / "containerd.sock").mkdir(parents=True)  # its socket path is taken by a directory
    (base / "containerd.sock" / "keep").write_text("")
    with pytest.raises(pytest.fail.Exception) as failed:
        start_containerd(base)
    message = str(failed.value)
    assert "containerd exited with status 1 while starting" in message
    assert "containerd.sock" in message.split("its log", 1)[1]  # the log tail names what failed


def test_dockerd_that_cannot_start_fails_with_its_log(tmp_path: Path, containerd: Containerd) -> None:
    base = tmp_path / "d"
    base.mkdir()
    (base / "data").write_text("")  # its --data-root is a file
    with pytest.raises(pytest.fail.Exception) as failed:
        start_dockerd(base, containerd)
    message = str(failed.value)
    for driver in ("overlay2", "vfs"):
        assert f"dockerd --storage-driver={driver} exited with status 1 while starting" in message
    assert str(base / "data") in message.split("its log", 1)[1]
