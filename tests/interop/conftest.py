"""The images the interop tests hand to containerd and Docker, built by pybuild once per session.

The application image is built rootless, as the test user (as developers build), and written by
that user as an oci-archive and a docker-archive; containerd and dockerd (private daemons, see
tests/fixtures/daemons.py) then run as root. The whiteout image is built both as root and rootless:
the two run modes make their layers from different overlays.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pybuild.layout import ImageStore, load_image
from tests.fixtures.cli import PYBUILD, Pybuild, base_store
from tests.fixtures.daemons import Containerd, containerd, daemon_dir, dockerd  # noqa: F401 - fixtures
from tests.fixtures.rootless import TEST_USER, as_test_user, user_home_dir
from tests.fixtures.tools import validate_layout

APP = """FROM busybox
ENV GREETING="hello from pybuild" APP_HOME=/app
COPY --chown=1234:1234 greeting.txt /app/greeting.txt
RUN mkdir -p /app/data && echo built > /app/data/made && chown -R 1234:1234 /app/data
USER 1234:1234
WORKDIR /app
LABEL org.example.interop=yes org.example.built-by=pybuild
EXPOSE 8080/tcp 53/udp
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["id -u; id -g; pwd; cat greeting.txt; echo \\"$GREETING\\"; \\
    stat -c %u:%g greeting.txt data/made; cat data/made"]
"""
# what the application image's CMD prints in any runtime that honours its config
APP_OUTPUT = ["1234", "1234", "/app", "hi there", "hello from pybuild", "1234:1234", "1234:1234", "built"]

# the second RUN deletes /data/gone (a whiteout) and replaces /opq (an opaque directory)
WHITEOUTS = """FROM busybox
RUN mkdir -p /data/keep /opq/sub && echo gone > /data/gone && echo kept > /data/keep/file \\
    && echo old > /opq/old && echo old > /opq/sub/deeper
RUN rm /data/gone && rm -rf /opq && mkdir /opq && echo new > /opq/new
CMD ["sh", "-c", "find /data /opq | sort; cat /data/keep/file /opq/new"]
"""
WHITEOUT_OUTPUT = ["/data", "/data/keep", "/data/keep/file", "/opq", "/opq/new", "kept", "new"]

HEALTH = """FROM busybox
HEALTHCHECK --interval=1s --timeout=3s --retries=3 CMD test -f /tmp/ready
CMD ["sh", "-c", "touch /tmp/ready && exec sleep 120"]
"""


@dataclass(frozen=True)
class Image:
    """An image pybuild built: its name, what it wrote, and where the archives of it are."""

    name: str
    manifest_digest: str
    manifest_media_type: str
    config_digest: str
    diff_ids: list[str]
    config: dict[str, Any]  # the image config document
    oci_archive: Path | None = None  # written as oci-archive:FILE:NAME
    docker_archive: Path | None = None  # written as docker-archive:FILE:NAME

    @property
    def runtime(self) -> dict[str, Any]:
        """The config's `config` object (Env, Cmd, User, ...)."""
        return dict(self.config.get("config") or {})


def _read(store: Path, name: str, oci: Path | None = None, docker: Path | None = None) -> Image:
    images = ImageStore.at(store)
    _, desc = images.lookup(name)
    image = load_image(images, desc)
    return Image(
        name,
        str(desc.digest),
        desc.media_type,
        str(image.manifest.config.digest),
        [str(d) for d in image.diff_ids],
        image.config.to_dict(),
        oci,
        docker,
    )


class RootlessBuilder:
    """`pybuild` as the test user, over a store in its home (busybox copied in)."""

    def __init__(self, home: Path, root_pb: Pybuild) -> None:
        self.home = home
        self.store = home / "store"
        oci = home / "busybox-oci"
        root_pb("copy", "-q", "busybox", f"oci:{oci}:latest")
        subprocess.run(["chown", "-R", TEST_USER, str(oci)], check=True)
        self("copy", "-q", f"oci:{oci}:latest", "busybox")

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = as_test_user([PYBUILD, *args], self.home, {"PYBUILD_STORE": str(self.store)}, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"pybuild {' '.join(args)} (as {TEST_USER}) exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def build(self, name: str, containerfile: str, *extra: str, **files: str) -> Image:
        return build_image(self, self.home, self.store, name, containerfile, *extra, owner=TEST_USER, **files)


def build_image(
    pb: Callable[..., object],
    where: Path,
    store: Path,
    name: str,
    containerfile: str,
    *extra: str,
    owner: str | None = None,
    **files: str,
) -> Image:
    """`pybuild build -t NAME` of a context made under ``where`` (owned by ``owner``), then the
    image written as oci-archive:FILE:NAME and docker-archive:FILE:NAME, and the store checked."""
    ctx = where / name.replace("/", "_").replace(":", "_")
    ctx.mkdir()
    (ctx / "Containerfile").write_text(containerfile)
    for file, text in files.items():
        (ctx / file).write_text(text)
    if owner is not None:
        subprocess.run(["chown", "-R", owner, str(ctx)], check=True)
    pb("build", "-q", "-t", name, *extra, str(ctx))
    oci, docker = ctx.with_suffix(".oci.tar"), ctx.with_suffix(".docker.tar")
    pb("copy", "-q", name, f"oci-archive:{oci}:{name}")
    pb("copy", "-q", name, f"docker-archive:{docker}:{name}")
    pb("check")
    return _read(store, name, oci, docker)


@dataclass(frozen=True)
class Images:
    app: Image  # rootless, OCI format
    health: Image  # rootless, --format docker
    whiteouts: dict[str, Image]  # "root" and "rootless"


@pytest.fixture(scope="session")
def root_pybuild(tmp_path_factory: pytest.TempPathFactory) -> Pybuild:
    """pybuild as root over a store holding the busybox base."""
    return base_store(tmp_path_factory.mktemp("interop-root"), ("busybox",))


@pytest.fixture(scope="session")
def images(root_pybuild: Pybuild) -> Iterator[Images]:
    with user_home_dir() as home:
        rootless = RootlessBuilder(home, root_pybuild)
        app = rootless.build("localhost/interop/app:v1", APP, **{"greeting.txt": "hi there\n"})
        health = rootless.build("localhost/interop/health:v1", HEALTH, "--format", "docker")
        pb = root_pybuild
        whiteouts = {
            "root": build_image(pb, pb.scratch, pb.store, "localhost/interop/whiteouts-root:v1", WHITEOUTS),
            "rootless": rootless.build("localhost/interop/whiteouts-rootless:v1", WHITEOUTS),
        }
        yield Images(app, health, whiteouts)


def pybuild_reads_back(pb: Pybuild, source: str, name: str) -> Image:
    """`pybuild copy SOURCE NAME` as root into ``pb``'s store, which pybuild's check then passes."""
    pb("copy", "-q", source, name)
    pb.check()
    return _read(pb.store, name)


def assert_same_image(back: Image, original: Image) -> None:
    """Config (digest and document) and diff_ids as pybuild wrote them."""
    assert (back.config_digest, back.diff_ids) == (original.config_digest, original.diff_ids)
    assert back.config == original.config


def validate_copy(pb: Pybuild, name: str, layout: Path) -> None:
    """Copy ``name`` from ``pb``'s store to an OCI layout, then pybuild's check and oci-image-tool
    validate it."""
    pb("copy", "-q", name, f"oci:{layout}:back")
    validate_layout(layout, "back")


# --- containerd -------------------------------------------------------------------------------
_ids = itertools.count()


def archive_of(image: Image, kind: str) -> Path:
    path = image.oci_archive if kind == "oci-archive" else image.docker_archive
    assert path is not None and path.is_file(), path
    return path


def ctr_import(daemon: Containerd, image: Image, kind: str) -> None:
    """`ctr images import` of pybuild's archive; the image is then listed under its name."""
    archive = archive_of(image, kind)
    out = daemon.ctr("images", "import", str(archive)).stdout
    assert f"unpacking {image.name} " in out, out
    listed = daemon.ctr("images", "ls", "-q", f"name=={image.name}").stdout.split()
    assert listed == [image.name]
    if kind == "oci-archive":
        # containerd keeps the manifest pybuild wrote
        row = daemon.ctr("images", "ls", f"name=={image.name}").stdout.splitlines()[1].split()
        assert row[2] == archive_manifest(archive)


def archive_manifest(archive: Path) -> str:
    """The digest of the one manifest an oci-archive's index.json lists."""
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert len(index["manifests"]) == 1, index
    return str(index["manifests"][0]["digest"])


def ctr_run(daemon: Containerd, name: str, *args: str, snapshotter: str | None = None) -> tuple[int, str]:
    """`ctr run --rm IMAGE ID [ARGS]`: its exit status and output."""
    proc = daemon.ctr(
        "run", "--rm", name, f"pybuild-interop-{next(_ids)}", *args, check=False, snapshotter=snapshotter
    )
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout
