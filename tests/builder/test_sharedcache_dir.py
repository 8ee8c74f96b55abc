"""The shared build cache as an OCI layout (`--cache-to oci:DIR`), for pipelines that save and
restore a directory between jobs; what a key leaves out (host names, secrets); the flags' errors;
`build -v`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybuild.layout import Layout
from tests.fixtures.cli import PYBUILD, Pybuild, assert_fails, base_store, context

from .sharedcache_helpers import cached_runs, make_runner, validate_cache_layout

pytestmark = pytest.mark.slow

APP = """FROM busybox
COPY a.txt /a.txt
RUN echo {name} >> /counter/runs && cat /a.txt > /{name}
RUN --mount=type=secret,id=token test -s /run/secrets/token && echo secret >> /counter/runs
CMD ["cat", "/{name}"]
"""


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pybuild]:
    tool = base_store(tmp_path_factory.mktemp("sharedcache-dir"), ("busybox",))
    yield tool
    tool.check()


def entry_count(path: Path) -> int:
    return len(Layout.open(path).tags())


def test_oci_dir_two_builds_at_once_then_import_and_prune(pb: Pybuild, tmp_path: Path) -> None:
    cache = tmp_path / "restored" / "cache"  # (made by the first export)
    sources = {n: context(tmp_path / f"src-{n}", APP.format(name=n), **{"a.txt": "a\n"}) for n in ("x", "y")}
    runners = {n: make_runner(pb, tmp_path, f"job-{n}", src) for n, src in sources.items()}
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value\n")
    flags = [
        "--secret",
        f"id=token,src={secret}",
        "--cache-from",
        f"oci:{cache}",
        "--cache-to",
        f"oci:{cache}",
    ]
    procs = {
        n: subprocess.Popen(
            [
                PYBUILD,
                "--store",
                str(r.store),
                "build",
                "-v",
                f"{r.counter}:/counter",
                "-t",
                "localhost/job",
                "--timestamp",
                "0",
                *flags,
                str(r.context),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, r in runners.items()
    }
    for n, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
        assert "warning:" not in err, err
        assert runners[n].runs == [n, "secret"]
    # COPY is the same step in both (one entry); RUN, RUN, CMD are each one's own
    assert validate_cache_layout(cache) == 1 + 3 + 3
    assert b"s3cr3t" not in b"".join(p.read_bytes() for p in cache.rglob("*") if p.is_file())
    for n, src in sources.items():
        job = make_runner(pb, tmp_path, f"next-{n}", src)
        other = tmp_path / f"other-token-{n}"
        other.write_text("another value: a secret is never part of a key\n")
        proc = job.build(
            "-t",
            "localhost/job",
            "--timestamp",
            "0",
            "--secret",
            f"id=token,src={other}",
            "--cache-from",
            f"oci:{cache}",
        )
        assert job.runs == [] and len(cached_runs(proc.stdout)) == 2, proc.stdout
        assert job.image_id("localhost/job") == runners[n].image_id("localhost/job")
        job.check()
    kept = pb("cache", "prune", f"oci:{cache}", "--older-than", "1h")
    assert kept.stdout == f"removed 0 entries from oci:{cache}, kept 7\n"
    gone = pb("cache", "prune", f"oci:{cache}", "--older-than", "1ns")
    assert gone.stdout == f"removed 7 entries from oci:{cache}, kept 0\n"
    assert entry_count(cache) == 0 and not list((cache / "blobs" / "sha256").iterdir())
    validate_cache_layout(cache)


def test_oci_dir_killed_during_export_holds_whole_entries(pb: Pybuild, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source = context(
        tmp_path / "src",
        "FROM busybox\n"
        + "".join(
            f"RUN echo s{i} >> /counter/runs && dd if=/dev/urandom of=/f{i} bs=1k count=2048 2>/dev/null\n"
            for i in range(6)
        )
        + "RUN sleep 3\n",
    )
    a = make_runner(pb, tmp_path, "a", source)
    proc = subprocess.Popen(
        [
            PYBUILD,
            "--store",
            str(a.store),
            "build",
            "-v",
            f"{a.counter}:/counter",
            "--compression",
            "none",
            "--cache-to",
            f"oci:{cache}",
            str(a.context),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((cache / "oci-layout").exists() and entry_count(cache) >= 2):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    written = validate_cache_layout(cache)
    assert 2 <= written < 7
    b = make_runner(pb, tmp_path, "b", source)
    b.build("-t", "localhost/after", "--cache-from", f"oci:{cache}")
    assert "s0" not in b.runs
    b.check()


def test_the_key_leaves_out_the_host_name(pb: Pybuild, tmp_path: Path) -> None:
    source = context(
        tmp_path / "src", "FROM busybox\nRUN echo ran >> /counter/runs && hostname > /dev/null\n"
    )
    cache = tmp_path / "cache"
    a = make_runner(pb, tmp_path, "a", source)
    a.build("-t", "localhost/h", "--cache-to", f"oci:{cache}")
    b = make_runner(pb, tmp_path, "b", source)
    cmd = [
        PYBUILD,
        "--store",
        str(b.store),
        "build",
        "-v",
        f"{b.counter}:/counter",
        "-t",
        "localhost/h",
        "--cache-from",
        f"oci:{cache}",
        str(b.context),
    ]
    rename = 'hostname another-runner && test "$(hostname)" = another-runner && exec "$@"'
    proc = subprocess.run(
        ["unshare", "--uts", "sh", "-c", rename, "sh", *cmd], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert a.runs == ["ran"] and b.runs == []
    assert b.image_id("localhost/h") == a.image_id("localhost/h")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--cache-to", "127.0.0.1:5000/cache:v1"],
            "--cache-to '127.0.0.1:5000/cache:v1': a cache is a repository",
        ),
        (["--cache-from", "cache"], "--cache-from 'cache': expected a repository HOST/PATH"),
        (["--cache-from", "oci:"], "--cache-from 'oci:': expected oci:DIR"),
        (["--cache-to", "oci:/x", "--cache-ttl", "soon"], "--cache-ttl 'soon': expected a duration"),
        (["--cache-ttl", "0s"], "--cache-ttl '0s': expected a duration"),
        (["--cache-from", "oci:/x", "--no-layers"], "--cache-from and --cache-to need --layers"),
        (["-v", "relative"], "--volume 'relative': expected HOST:CONTAINER"),
        (["-v", "/nonexistent-dir:/x"], "does not exist"),
        (["-v", "/tmp:/x:z"], "option 'z': pybuild takes ro or rw"),
    ],
)
def test_flag_errors(pb: Pybuild, tmp_path: Path, args: list[str], fragment: str) -> None:
    ctx = context(tmp_path / "ctx", "FROM busybox\n")
    assert_fails(pb("build", *args, str(ctx), check=False), 2, fragment)


def test_prune_errors(pb: Pybuild, tmp_path: Path) -> None:
    assert_fails(
        pb("cache", "prune", "oci:/x", "--older-than", "never", check=False), 2, "--older-than 'never'"
    )
    assert_fails(
        pb("cache", "prune", f"oci:{tmp_path}/none", "--older-than", "1h", check=False), 1, "does not exist"
    )
    assert_fails(
        pb("cache", "prune", "oci:/x", "--older-than", "1h", "--tls-verify=false", check=False),
        2,
        "registry flags do not apply to an oci: layout",
    )
    assert_fails(pb("cache", "prune", "127.0.0.1:1/c", "--older-than", "1h", check=False), 1, "127.0.0.1:1")


def test_volume_binds_into_every_run_and_stays_out_of_the_image(pb: Pybuild, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    ctx = context(
        tmp_path / "ctx",
        "FROM busybox\nRUN cat /data/in.txt > /copied && echo one >> /data/out\n"
        "RUN echo two >> /data/out && ! touch /ro/x\n",
    )
    ro = tmp_path / "ro"
    ro.mkdir()
    pb("build", "-t", "localhost/vol", "-v", f"{data}:/data", "-v", f"{ro}:/ro:ro", str(ctx))
    assert (data / "out").read_text() == "one\ntwo\n"
    assert list(ro.iterdir()) == []
    rootfs = pb.rootfs("localhost/vol")
    assert (rootfs / "copied").read_text() == "from the host\n"
    assert not (rootfs / "data").exists() and not (rootfs / "ro").exists()
