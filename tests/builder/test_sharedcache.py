"""The shared build cache through a registry (docker-registry on 127.0.0.1): runners with stores of
their own, contexts at paths of their own, one as root and one as the test user. A RUN appends to
a file in a host directory bound into it (`build -v`), so a hit is proven by that file not
changing, not by a message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybuild.layout import EMPTY_DESCRIPTOR, Digest, Layout, Manifest, mediatype
from pybuild.remote import Registry, parse_registry_reference
from pybuild.remote.buildcache import RECORD_TYPE, TAG_PREFIX
from pybuild.remote.buildcache.entry import RECORD_ANNOTATION
from tests.fixtures.cli import PYBUILD, Pybuild, base_store, context
from tests.remote.conftest import RegistryServer, skopeo, start_registry, stop_registry
from tests.remote.proxy import Proxy

from .sharedcache_helpers import (
    cached_runs,
    entries_complete,
    make_runner,
    registry_tags,
    validate_cache_layout,
    warnings_of,
)

pytestmark = pytest.mark.slow

APP = """FROM busybox
ARG V=1
ENV GREETING=hello
WORKDIR /app
COPY a.txt .
RUN echo first >> /counter/runs && cat a.txt > out && echo "$GREETING $V" > greeting
RUN --mount=type=bind,source=b.txt,target=/b.txt echo second >> /counter/runs && cat /b.txt > b
COPY . /src/
LABEL stage=app
CMD ["cat", "/app/greeting"]
"""
FILES = {
    "a.txt": "alpha\n",
    "b.txt": "bravo\n",
    "local.txt": "this runner's own\n",
    ".containerignore": "local.txt\n",
}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path / "registry")
    yield server
    stop_registry(server)


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pybuild]:
    tool = base_store(tmp_path_factory.mktemp("sharedcache"), ("busybox",))
    yield tool
    tool.check()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return context(tmp_path / "source", APP, **FILES)


def test_two_runners_root_and_rootless_same_image_no_run(
    pb: Pybuild, tmp_path: Path, user_home: Path, registry: RegistryServer, source: Path
) -> None:
    repo = f"{registry.host}/ci/cache"
    a = make_runner(pb, tmp_path, "runner-a", source)
    b = make_runner(pb, tmp_path, "runner-b", source, home=user_home)
    (b.context / "local.txt").write_text("another runner, another ignored file\n")
    os.utime(b.context / "a.txt", (1, 1))  # mtimes are not part of a key
    built = a.build("-t", "localhost/app", "--cache-to", repo)
    assert a.runs == ["first", "second"] and warnings_of(built) == []
    tags = registry_tags(registry.host, "ci/cache")
    assert len(tags) == 9  # ARG ENV WORKDIR COPY RUN RUN COPY LABEL CMD: one entry per step

    # runner B: rootless, another store, the context at another path: no RUN runs, same image ID
    hit = b.build("-t", "localhost/app", "--cache-from", repo, "--tls-verify=false")
    assert b.runs == []
    assert len(cached_runs(hit.stdout)) == 2, hit.stdout
    assert warnings_of(hit) == []
    assert b.image_id("localhost/app") == a.image_id("localhost/app")
    b.check()
    # a RUN as the test user sees the image's files and writes to the bound host directory
    rerun = b.build("-t", "localhost/app2", "--no-cache")
    assert b.runs == ["first", "second"]
    assert (b.counter / "runs").stat().st_uid != 0
    assert "Using cache" not in rerun.stdout

    # a changed source reruns only the steps after it (B's first RUN is a hit, its second is not)
    (b.context / "b.txt").write_text("bravo, changed\n")
    changed = b.build("-t", "localhost/app3", "--cache-from", repo)
    assert b.runs == ["first", "second", "second"]
    assert [line.split(": ", 1)[1][:14] for line in cached_runs(changed.stdout)] == ["RUN echo first"]
    assert b.image_id("localhost/app3") != a.image_id("localhost/app")


def test_a_full_hit_downloads_only_the_final_image_layers(
    pb: Pybuild, tmp_path: Path, registry: RegistryServer
) -> None:
    source = context(
        tmp_path / "source",
        "FROM busybox AS builder\n"
        "RUN echo builder >> /counter/runs && mkdir /out && echo built > /out/f"
        " && dd if=/dev/urandom of=/big bs=1k count=256 2>/dev/null\n"
        "FROM busybox\n"
        "COPY --from=builder /out /out\n"
        "RUN echo final >> /counter/runs && cat /out/f > /final\n",
    )
    repo = f"{registry.host}/lazy"
    a = make_runner(pb, tmp_path, "a", source)
    a.build("-t", "localhost/lazy", "--cache-to", repo)
    assert a.runs == ["builder", "final"]
    with Proxy(registry.host) as proxy:
        b = make_runner(pb, tmp_path, "b", source)
        b.build("-t", "localhost/lazy", "--cache-from", f"{proxy.host}/lazy")
        assert b.runs == []
        assert b.image_id("localhost/lazy") == a.image_id("localhost/lazy")
        final = {layer["digest"] for layer in b.inspect("localhost/lazy")["layers"]}  # type: ignore[attr-defined]
        base = {layer["digest"] for layer in b.inspect("busybox")["layers"]}  # type: ignore[attr-defined]
        got = blobs_got(proxy)
        # every key looked up with a HEAD; the layers downloaded are the final image's new ones
        assert {m for m, p in proxy.requests if "/manifests/" in p} == {"HEAD", "GET"}
        assert got == final - base
        gc = b.pb("--store", str(b.store), "gc")
        assert gc.stdout.startswith("removed 0 blobs"), gc.stdout  # nothing fetched that is not used
        b.check()

        # a RUN that misses downloads what it must see: the COPY --from layer, never the builder's
        proxy.requests.clear()
        c = make_runner(pb, tmp_path, "c", source)
        containerfile = c.context / "Containerfile"
        containerfile.write_text(containerfile.read_text().replace("echo final >", "echo changed >"))
        c.build("-t", "localhost/lazy", "--cache-from", f"{proxy.host}/lazy")
        assert c.runs == ["changed"]  # the builder's RUN is not run again, nor its layer fetched
        copied = {layer["digest"] for layer in c.inspect("localhost/lazy")["layers"]}  # type: ignore[attr-defined]
        assert blobs_got(proxy) == (copied - base) & final
        assert len((copied - base) & final) == 1  # the COPY --from layer alone
        c.check()


def blobs_got(proxy: Proxy) -> set[str]:
    return {p.rsplit("/", 1)[1] for m, p in proxy.requests if m == "GET" and "/blobs/sha256:" in p}


def entry_for(registry: RegistryServer, repository: str, created_by: str) -> tuple[str, Manifest]:
    """The tag and manifest of the entry whose history says ``created_by`` (a fragment of it)."""
    for tag, manifest in entries_of(registry, repository).items():
        record = json.loads(manifest.annotations[RECORD_ANNOTATION])
        if created_by in record["history"].get("created_by", ""):
            return tag, manifest
    raise AssertionError(f"no entry for {created_by!r}")


def entries_of(registry: RegistryServer, repository: str) -> dict[str, Manifest]:
    client = Registry(registry.host)
    try:
        out = {}
        for tag in registry_tags(registry.host, repository):
            _, raw = client.get_manifest(parse_registry_reference(f"{registry.host}/{repository}:{tag}"), "t")
            out[tag] = Manifest.parse(raw, tag)
        return out
    finally:
        client.close()


def put_raw(registry: RegistryServer, repository: str, tag: str, record: str) -> None:
    """Push an entry-shaped artifact made by hand, whose record annotation is ``record``."""
    client = Registry(registry.host)
    scope = f"repository:{repository}:pull,push"
    try:
        session = client.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, what="t", ok=(202,))
        location = session.header("Location") or ""
        session.read(1 << 16)
        sep = "&" if "?" in location else "?"
        put = f"{location}{sep}digest={EMPTY_DESCRIPTOR.digest}"
        client.request("PUT", put, scope=scope, what="t", body=lambda: b"{}", ok=(201,)).read(1 << 16)
        doc = {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "artifactType": RECORD_TYPE,
            "config": EMPTY_DESCRIPTOR.to_dict(),
            "layers": [EMPTY_DESCRIPTOR.to_dict()],
            "annotations": {RECORD_ANNOTATION: record},
        }
        raw = json.dumps(doc).encode()
        client.request(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            scope=scope,
            what="t",
            headers={"Content-Type": mediatype.OCI_MANIFEST},
            body=lambda: raw,
            ok=(201,),
        ).read(1 << 16)
    finally:
        client.close()


DAMAGES = [
    "layer-deleted",
    "layer-corrupt",
    "manifest-corrupt",
    "not-an-entry",
    "record-not-json",
    "unreachable",
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_or_unreachable_cache_still_builds(
    pb: Pybuild, tmp_path: Path, registry: RegistryServer, source: Path, damage: str
) -> None:
    repo = f"{registry.host}/damaged"
    a = make_runner(pb, tmp_path, "a", source)
    a.build("-t", "localhost/app", "--cache-to", repo)
    tag, manifest = entry_for(registry, "damaged", "echo first")
    if damage == "layer-deleted":
        registry.blob_path(str(manifest.layers[0].digest)).unlink()
    elif damage == "layer-corrupt":  # same size, other bytes: only the digest can tell
        path = registry.blob_path(str(manifest.layers[0].digest))
        path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    elif damage == "manifest-corrupt":
        path = registry.blob_path(str(Digest.of_bytes(manifest.to_bytes())))
        path.write_bytes(path.read_bytes().replace(b"echo first", b"echo FIRST"))
    elif damage == "not-an-entry":  # an image under the entry's tag
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{pb.store}:docker.io/library/busybox:latest",
            f"docker://{repo}:{tag}",
        )
    elif damage == "record-not-json":
        put_raw(registry, "damaged", tag, "this is no record")
    cache = "127.0.0.1:1/damaged" if damage == "unreachable" else repo
    b = make_runner(pb, tmp_path, "b", source)
    proc = b.build("-t", "localhost/app", "--cache-from", cache)
    warned = warnings_of(proc)
    assert len(warned) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # the damaged step runs as if there were no cache (the next RUN too, unless the first gave the
    # very layer A's did: file times are seconds, so a build in the same second may hit it)
    assert b.runs in (["first"], ["first", "second"]), (proc.stdout, proc.stderr)
    assert (
        b.pb("--store", str(b.store), "run", "localhost/app", "--", "cat", "/app/out").stdout
    ) == "alpha\n"
    b.check()
    if damage in ("layer-deleted", "layer-corrupt", "manifest-corrupt"):
        fragment = {
            "layer-deleted": "missing",
            "layer-corrupt": "digest",
            "manifest-corrupt": "digest",
        }
        assert fragment[damage] in warned[0], warned[0]


def test_a_failed_export_warns_and_the_build_succeeds(pb: Pybuild, tmp_path: Path, source: Path) -> None:
    a = make_runner(pb, tmp_path, "a", source)
    proc = a.build("-t", "localhost/app", "--cache-to", "127.0.0.1:1/cache")
    assert proc.returncode == 0
    warned = warnings_of(proc)
    assert len(warned) == 1 and "127.0.0.1:1/cache was not written" in warned[0], proc.stderr
    assert a.runs == ["first", "second"]
    a.check()


def test_two_runners_export_at_once_and_both_entries_import(
    pb: Pybuild, tmp_path: Path, registry: RegistryServer, source: Path
) -> None:
    """Both runners build and export at once. Their first steps have the same keys: one entry each
    is kept, and with --timestamp their layers are the same bytes, so both chains import whole."""
    repo = f"{registry.host}/shared"
    changed = APP.replace("echo first >> /counter/runs", "echo other >> /counter/runs && echo o > /o")
    other = context(tmp_path / "other", changed, **FILES)
    a = make_runner(pb, tmp_path, "a", source)
    b = make_runner(pb, tmp_path, "b", other)
    flags = ["-t", "localhost/app", "--timestamp", "0", "--cache-from", repo, "--cache-to", repo]
    procs = [
        subprocess.Popen(
            [
                PYBUILD,
                "--store",
                str(r.store),
                "build",
                "-v",
                f"{r.counter}:/counter",
                *flags,
                str(r.context),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (a, b)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
        assert "warning:" not in err, err
    assert a.runs == ["first", "second"] and b.runs == ["other", "second"]
    # 9 steps each, the first 4 (ARG, ENV, WORKDIR, COPY a.txt) the same: 14 entries, all whole
    assert entries_complete(registry.host, "shared") == 14
    for name, src, built in (("c", source, a), ("d", other, b)):
        runner = make_runner(pb, tmp_path, name, src)
        proc = runner.build("-t", "localhost/app", "--timestamp", "0", "--cache-from", repo)
        assert runner.runs == [], proc.stdout + proc.stderr
        assert runner.image_id("localhost/app") == built.image_id("localhost/app")


SLOW = """FROM busybox
RUN echo one >> /counter/runs && dd if=/dev/urandom of=/one bs=1k count=512 2>/dev/null
RUN echo two >> /counter/runs && dd if=/dev/urandom of=/two bs=1k count=512 2>/dev/null
RUN echo three >> /counter/runs && dd if=/dev/urandom of=/three bs=1k count=512 2>/dev/null
RUN echo four >> /counter/runs && sleep 3
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_during_export_leaves_whole_entries_only(
    pb: Pybuild, tmp_path: Path, registry: RegistryServer, sig: signal.Signals
) -> None:
    """The build is killed (kill -9) or interrupted (Ctrl-C) once the first entries are in the
    registry and the others are being written: every tag there names a whole entry, and a build
    from it takes them."""
    source = context(tmp_path / "source", SLOW)
    repo = f"{registry.host}/killed"
    a = make_runner(pb, tmp_path, "a", source)
    cmd = [PYBUILD, "--store", str(a.store), "build", "-v", f"{a.counter}:/counter", "--cache-to", repo]
    proc = subprocess.Popen(
        [*cmd, str(a.context)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not registry_tags(registry.host, "killed") and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130), err
    assert "Traceback" not in err
    written = entries_complete(registry.host, "killed")
    assert 1 <= written < 4, written
    steps = ["one", "two", "three", "four"]
    records = [json.loads(m.annotations[RECORD_ANNOTATION]) for m in entries_of(registry, "killed").values()]
    there = {s for s in steps for r in records if f"echo {s} " in r["history"].get("created_by", "")}
    # exports run side by side, and a step without a layer ("four": it only writes to the bound
    # directory) is written at once: under load a later entry may land first
    taken = 0  # the steps b takes: those whose entry and whose parents' entries are there
    while taken < len(steps) and steps[taken] in there:
        taken += 1
    b = make_runner(pb, tmp_path, "b", source)
    proc = b.build("-t", "localhost/after", "--cache-from", repo)
    assert warnings_of(proc) == [], proc.stderr
    assert b.runs == steps[taken:], (there, b.runs)  # what was written is taken, the rest runs
    b.check()


def test_prune_and_ttl(pb: Pybuild, tmp_path: Path, registry: RegistryServer, source: Path) -> None:
    repo = f"{registry.host}/pruned"
    a = make_runner(pb, tmp_path, "a", source)
    a.build("-t", "localhost/app", "--cache-to", repo)
    assert len(registry_tags(registry.host, "pruned")) == 9
    # --cache-ttl: entries older than it are not taken (the newest here is a second old at most)
    b = make_runner(pb, tmp_path, "b", source)
    b.build("-t", "localhost/app", "--cache-from", repo, "--cache-ttl", "1ns")
    assert b.runs == ["first", "second"]
    c = make_runner(pb, tmp_path, "c", source)
    c.build("-t", "localhost/app", "--cache-from", repo, "--cache-ttl", "1h")
    assert c.runs == []
    # prune: nothing is older than an hour; everything is older than a nanosecond
    layer = registry.blob_path(str(entry_for(registry, "pruned", "echo first")[1].layers[0].digest))
    kept = pb("cache", "prune", repo, "--older-than", "1h")
    assert kept.stdout == f"removed 0 entries from {repo}, kept 9\n"
    gone = pb("cache", "prune", repo, "--older-than", "1ns")
    assert gone.stdout == f"removed 9 entries from {repo}, kept 0\n"
    assert registry_tags(registry.host, "pruned") == []
    # the registry's own garbage collection then frees the blobs no manifest names any more
    assert layer.exists()
    config = registry.storage.parent / "config.yml"
    subprocess.run(["docker-registry", "garbage-collect", str(config)], check=True, capture_output=True)
    assert not layer.exists()
    d = make_runner(pb, tmp_path, "d", source)
    d.build("-t", "localhost/app", "--cache-from", repo)
    assert d.runs == ["first", "second"]


def test_entries_are_oci_manifests_skopeo_copies_and_a_push_shares_layers(
    pb: Pybuild, tmp_path: Path, registry: RegistryServer, source: Path
) -> None:
    a = make_runner(pb, tmp_path, "a", source)
    a.build("-t", "localhost/app")
    a.pb("--store", str(a.store), "push", "localhost/app", f"docker://{registry.host}/app:1")
    blobs_before = set((registry.storage / "docker/registry/v2/blobs/sha256").glob("*/*"))
    # exporting after a push: every step is a local hit, the layers are there already (mounted)
    proc = a.build("-t", "localhost/app", "--cache-to", f"{registry.host}/cache")
    assert a.runs == ["first", "second"] and warnings_of(proc) == []
    new = set((registry.storage / "docker/registry/v2/blobs/sha256").glob("*/*")) - blobs_before
    assert new and all((p / "data").stat().st_size < 4096 for p in new)  # manifests and {} only
    tag, manifest = entry_for(registry, "cache", "echo first")
    pushed = a.pb("inspect", f"docker://{registry.host}/app:1", "--json").stdout
    assert str(manifest.layers[0].digest) in pushed  # the same blob as the pushed image's
    out = tmp_path / "copied"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/cache:{tag}", f"oci:{out}:{tag}")
    assert validate_cache_layout(out) == 1
    copied = Layout.open(out)
    copied_manifest = copied.blobs.read(copied.resolve(tag).digest)
    assert json.loads(copied_manifest)["artifactType"] == RECORD_TYPE
    assert all(t.startswith(TAG_PREFIX) for t in registry_tags(registry.host, "cache"))


def test_credentials_from_auth_json_and_several_cache_from(pb: Pybuild, tmp_path: Path, source: Path) -> None:
    """A registry that wants credentials: they come from auth.json (`pybuild login`), as for push;
    without them the cache is one warning and the build runs whole. Several --cache-from are looked
    up in order: a key missing from the first is taken from the second."""
    htpasswd = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), "alice", "s3cret"], check=True, capture_output=True)
    server = start_registry(tmp_path / "registry", htpasswd)
    try:
        authfile = tmp_path / "auth.json"
        pb("login", "--creds", "alice:s3cret", "--authfile", str(authfile), server.host)
        repo = f"{server.host}/team/cache"
        a = make_runner(pb, tmp_path, "a", source)
        built = a.build("-t", "localhost/app", "--cache-to", repo, "--authfile", str(authfile))
        assert a.runs == ["first", "second"] and warnings_of(built) == [], built.stderr
        b = make_runner(pb, tmp_path, "b", source)
        denied = b.build("-t", "localhost/app", "--cache-from", repo)
        warned = warnings_of(denied)
        assert len(warned) == 1 and server.host in warned[0], denied.stderr
        assert "authentication required" in warned[0], warned[0]
        assert b.runs == ["first", "second"]
        c = make_runner(pb, tmp_path, "c", source)
        empty = f"{server.host}/team/empty"
        hit = c.build(
            "-t", "localhost/app", "--cache-from", empty, "--cache-from", repo, "--authfile", str(authfile)
        )
        assert c.runs == [] and warnings_of(hit) == [], hit.stderr
        assert c.image_id("localhost/app") == a.image_id("localhost/app")
        c.check()
    finally:
        stop_registry(server)
