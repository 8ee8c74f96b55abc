from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.rootless import user_home  # noqa: F401 - the fixture, shared by every test folder

PROJECT = Path(__file__).resolve().parent.parent
CORPORA = PROJECT.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def corpora() -> Path:
    """../shared/corpora, the read-only test data from other projects."""
    if not CORPORA.is_dir():
        pytest.fail(f"{CORPORA} is missing: the tests expect shared/ beside the project")
    return CORPORA


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox-static tree (read-only: copy it before changing it)."""
    from tests.fixtures.rootfs import make_busybox_rootfs

    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def busybox_tar(busybox_rootfs: Path) -> bytes:
    from tests.fixtures.images import tar_tree

    return tar_tree(busybox_rootfs)


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory, busybox_tar: bytes) -> Path:
    """An OCI layout holding the busybox image tagged `latest` (read-only: copy it before changing it)."""
    from pybuild.layout import Layout
    from tests.fixtures.images import make_image

    path = tmp_path_factory.mktemp("busybox-layout") / "oci"
    make_image(Layout.create(path), [busybox_tar], "latest")
    return path


@pytest.fixture
def pybuild_cli(tmp_path: Path) -> Any:
    """Run the real `pybuild` console script with a private store; returns CompletedProcess."""
    import os
    import subprocess
    import sys

    store = tmp_path / "store"
    exe = Path(sys.executable).parent / "pybuild"

    def run(
        *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(exe), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PYBUILD_STORE": str(store), **(env or {})},
        )
        if check and proc.returncode != 0:
            pytest.fail(f"pybuild {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    run.store = store  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="session")
def debian_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout with a debootstrap'd Debian image tagged `latest` (slow the first time)."""
    from pybuild.layout import Layout
    from tests.fixtures.debian import debian_rootfs
    from tests.fixtures.images import make_image, tar_tree

    path = tmp_path_factory.mktemp("debian-layout") / "oci"
    make_image(Layout.create(path), [tar_tree(debian_rootfs(), keep_owners=True)], "latest")
    return path


@pytest.fixture(scope="session")
def multiarch_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout whose `latest` is an index of two busybox images, linux/amd64 and
    linux/arm64/v8 (read-only: copy it before changing it)."""
    from pybuild.layout import Layout
    from tests.fixtures.multiarch import make_multiarch_image

    path = tmp_path_factory.mktemp("multiarch-layout") / "oci"
    make_multiarch_image(Layout.create(path), "latest")
    return path
