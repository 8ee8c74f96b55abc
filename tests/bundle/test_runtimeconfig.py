from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pybuild.bundle.runtimeconfig import make_runtime_config, resolve_user
from pybuild.errors import BundleError
from pybuild.layout import ImageConfig
from tests.fixtures.tools import CORPORA, runtime_schema_errors

FIXTURES = CORPORA / "runtime-spec" / "schema" / "test" / "config"


@pytest.mark.parametrize("path", sorted((FIXTURES / "good").glob("*.json")), ids=lambda p: p.stem)
def test_validator_accepts_good_fixtures(path: Path) -> None:
    assert runtime_schema_errors(json.loads(path.read_text())) == []


@pytest.mark.parametrize(
    "path",
    [p for p in sorted((FIXTURES / "bad").glob("*.json")) if p.stem != "invalid-json"],
    ids=lambda p: p.stem,
)
def test_validator_rejects_bad_fixtures(path: Path) -> None:
    assert runtime_schema_errors(json.loads(path.read_text())) != []


def config(runtime: dict[str, Any], **extra: Any) -> ImageConfig:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    doc.update(extra)
    return ImageConfig.new(doc)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    )
    (root / "etc/group").write_text("root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n")
    return root


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_conversion(rootfs: Path, rootless: bool) -> None:
    cfg = config(
        {
            "Entrypoint": ["/bin/echo"],
            "Cmd": ["hello"],
            "Env": ["A=1"],
            "WorkingDir": "/srv",
            "User": "app",
            "Labels": {"org.example": "x"},
            "StopSignal": "SIGINT",
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        },
        author="kilroy",
        created="2023-11-14T22:13:20Z",
    )
    spec = make_runtime_config(cfg, rootfs, rootless=rootless, host_uid=1001, host_gid=1001)
    assert runtime_schema_errors(spec) == []
    proc = spec["process"]
    assert proc["args"] == ["/bin/echo", "hello"]
    assert proc["env"][0].startswith("PATH=") and "A=1" in proc["env"]
    assert proc["cwd"] == "/srv" and proc["terminal"] is False
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 29]}
    ann = spec["annotations"]
    assert ann["org.example"] == "x"
    assert ann["org.opencontainers.image.stopSignal"] == "SIGINT"
    assert ann["org.opencontainers.image.exposedPorts"] == "53/udp,80/tcp"
    assert ann["org.opencontainers.image.author"] == "kilroy"
    kinds = {n["type"] for n in spec["linux"]["namespaces"]}
    if rootless:
        assert "user" in kinds and "network" not in kinds
        assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]
    else:
        assert "network" in kinds and "user" not in kinds


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", (0, 0, [])),
        ("root", (0, 0, [])),
        ("app", (1000, 1000, [10, 29])),
        ("1000", (1000, 1000, [10, 29])),
        ("app:wheel", (1000, 10, [])),
        ("app:7", (1000, 7, [])),
        ("4242", (4242, 0, [])),
        ("4242:4243", (4242, 4243, [])),
    ],
)
def test_resolve_user(rootfs: Path, spec: str, expected: tuple[int, int, list[int]]) -> None:
    user = resolve_user(rootfs, spec)
    assert (user.uid, user.gid, user.additional_gids) == expected


def test_unknown_user_and_group(rootfs: Path) -> None:
    with pytest.raises(BundleError, match="user 'ghost' is not in the image's /etc/passwd"):
        resolve_user(rootfs, "ghost")
    with pytest.raises(BundleError, match="group 'ghosts' is not in the image's /etc/group"):
        resolve_user(rootfs, "app:ghosts")


def test_passwd_symlink_cannot_escape(rootfs: Path, tmp_path: Path) -> None:
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:0:0::/:/bin/sh\n")
    (rootfs / "etc/passwd").unlink()
    depth = "../" * (len(rootfs.parts) + 2)
    os.symlink(f"{depth}{host}", rootfs / "etc/passwd")
    with pytest.raises(BundleError, match="not in the image's /etc/passwd"):
        resolve_user(rootfs, "evil")
    os.unlink(rootfs / "etc/passwd")
    os.symlink(str(host), rootfs / "etc/passwd")  # absolute: resolved inside the root
    with pytest.raises(BundleError):
        resolve_user(rootfs, "evil")
