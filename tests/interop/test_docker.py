"""Docker loads and runs what pybuild writes, and pybuild reads what `docker save` writes.

Against a private dockerd (tests/fixtures/daemons.py) with Debian's docker.io client: `docker load`
of pybuild's docker-archive, `docker run --rm --network none`, `docker inspect` showing the config
pybuild wrote, `docker save` read back by `pybuild copy`, and a `--format docker` build whose
HEALTHCHECK Docker shows and runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pybuild.layout import mediatype
from tests.fixtures.cli import Pybuild
from tests.fixtures.daemons import Containerd, Dockerd, docker_inspect

from .conftest import (
    APP_OUTPUT,
    WHITEOUT_OUTPUT,
    Image,
    Images,
    archive_of,
    assert_same_image,
    ctr_import,
    ctr_run,
    pybuild_reads_back,
    validate_copy,
)

pytestmark = pytest.mark.slow


def docker_load(dockerd: Dockerd, image: Image) -> None:
    out = dockerd.docker("load", "-i", str(archive_of(image, "docker-archive"))).stdout
    assert out.splitlines() == [f"Loaded image: {image.name}"]


def docker_run(dockerd: Dockerd, *args: str) -> tuple[int, str]:
    proc = dockerd.docker("run", "--rm", "--network", "none", *args, check=False)
    return proc.returncode, proc.stdout


def test_docker_runs_pybuild_docker_archive(dockerd: Dockerd, images: Images) -> None:
    app = images.app
    docker_load(dockerd, app)
    # USER, WORKDIR, ENV, ENTRYPOINT + CMD, COPY --chown's and the RUN's chown owners
    assert docker_run(dockerd, app.name) == (0, "\n".join(APP_OUTPUT) + "\n")
    status, out = docker_run(dockerd, "--hostname", "pb", "--entrypoint", "/bin/env", app.name)
    # the image's Env, Docker's HOSTNAME, and HOME=/ for a user without a passwd entry
    assert (status, sorted(out.splitlines())) == (0, sorted(["HOSTNAME=pb", *app.runtime["Env"], "HOME=/"]))
    # arguments replace CMD and keep the ENTRYPOINT: sh -c 'exit 7'
    assert docker_run(dockerd, app.name, "echo $APP_HOME; exit 7") == (7, "/app\n")


def test_docker_inspect_shows_the_config_pybuild_wrote(dockerd: Dockerd, images: Images) -> None:
    app = images.app
    docker_load(dockerd, app)
    got = docker_inspect(dockerd, app.name)
    assert got["Id"] == app.config_digest  # Docker's image ID: the config pybuild wrote, byte for byte
    assert got["RootFS"] == {"Type": "layers", "Layers": app.diff_ids}
    assert (got["Os"], got["Architecture"]) == (app.config["os"], app.config["architecture"])
    config, wrote = got["Config"], app.runtime
    for key in ("Env", "Cmd", "Entrypoint", "User", "WorkingDir", "Labels", "ExposedPorts"):
        assert config[key] == wrote[key], key
    assert config["User"] == "1234:1234" and config["WorkingDir"] == "/app"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Labels"] == {"org.example.interop": "yes", "org.example.built-by": "pybuild"}
    # docker history pairs each non-empty history entry with a layer: pybuild's empty_layer marks
    # must agree with its diff_ids for the rows to come out as pybuild wrote them (newest first)
    rows = dockerd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", app.name).stdout
    assert rows.splitlines() == [h.get("created_by", "") for h in reversed(app.config["history"])]
    assert sum(not h.get("empty_layer", False) for h in app.config["history"]) == len(app.diff_ids)


def test_docker_save_is_read_back_by_pybuild(
    dockerd: Dockerd, images: Images, root_pybuild: Pybuild, tmp_path: Path
) -> None:
    app = images.app
    docker_load(dockerd, app)
    saved = tmp_path / "saved.tar"
    dockerd.docker("save", "-o", str(saved), app.name)
    for n, source in enumerate([f"docker-archive:{saved}:{app.name}", f"docker-archive:{saved}"]):
        back = pybuild_reads_back(root_pybuild, source, f"localhost/docker-saved-{n}:v1")
        assert_same_image(back, app)
        validate_copy(root_pybuild, back.name, tmp_path / f"layout{n}")


def test_docker_load_of_pybuild_oci_archive(dockerd: Dockerd, containerd: Containerd, images: Images) -> None:
    """Docker loads OCI archives from version 25 on; Debian's 20.10 refuses them (its loader knows
    only `docker save`'s format). That refusal is Docker's: the same file imports and runs in
    containerd, and the docker-archive of the same image loads (the other tests)."""
    app = images.app
    archive = archive_of(app, "oci-archive")
    version = dockerd.version()
    proc = dockerd.docker("load", "-i", str(archive), check=False)
    if int(version.split(".")[0]) >= 25:
        assert proc.returncode == 0, proc.stderr
        assert docker_run(dockerd, app.name) == (0, "\n".join(APP_OUTPUT) + "\n")
    else:
        # the legacy loader, finding no manifest.json, reads each directory as a v1 layer: blobs/json
        assert proc.returncode != 0
        assert "blobs/json: no such file or directory" in proc.stderr, proc.stderr
        ctr_import(containerd, app, "oci-archive")
        assert ctr_run(containerd, app.name) == (0, "\n".join(APP_OUTPUT) + "\n")


def test_docker_format_healthcheck_is_kept_and_run(dockerd: Dockerd, images: Images) -> None:
    health = images.health
    assert health.manifest_media_type == mediatype.DOCKER_MANIFEST
    wrote = health.runtime["Healthcheck"]
    check = ["CMD-SHELL", "test -f /tmp/ready"]
    assert wrote == {"Test": check, "Interval": 10**9, "Timeout": 3 * 10**9, "Retries": 3}
    docker_load(dockerd, health)
    assert docker_inspect(dockerd, health.name)["Config"]["Healthcheck"] == wrote
    # and Docker runs it: the container becomes healthy once its command made /tmp/ready
    cid = dockerd.docker("run", "-d", "--network", "none", health.name).stdout.strip()
    try:
        status = ""
        deadline = time.monotonic() + 120  # a bound on the wait, not a timing assertion
        while status != "healthy" and time.monotonic() < deadline:
            time.sleep(0.5)
            status = dockerd.docker("inspect", "--format", "{{.State.Health.Status}}", cid).stdout.strip()
        assert status == "healthy", dockerd.docker("inspect", cid).stdout
    finally:
        dockerd.docker("rm", "-f", cid, check=False)


def test_docker_archive_named_with_a_registry_port(
    dockerd: Dockerd, images: Images, root_pybuild: Pybuild, tmp_path: Path
) -> None:
    """docker-archive:FILE:localhost:5000/NAME:TAG names the image, not the file (the path was
    cut at the port before); a name without a tag gets latest, as in containers/image."""
    image = images.whiteouts["root"]
    for name, loaded in [
        ("localhost:5000/interop/ported:v1", "localhost:5000/interop/ported:v1"),
        ("localhost/interop/untagged", "localhost/interop/untagged:latest"),
    ]:
        archive = tmp_path / "named.tar"
        root_pybuild("copy", "-q", image.name, f"docker-archive:{archive}:{name}")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["named.tar"]
        out = dockerd.docker("load", "-i", str(archive)).stdout
        assert out.splitlines() == [f"Loaded image: {loaded}"]
        assert docker_run(dockerd, loaded) == (0, "\n".join(WHITEOUT_OUTPUT) + "\n")
        back = pybuild_reads_back(root_pybuild, f"docker-archive:{archive}:{name}", "localhost/ported-back")
        assert_same_image(back, image)
        archive.unlink()
