"""Builds for other platforms (issue 17): arm64 RUN steps under qemu-user emulation, rootless; a
--platform list into an index and a --manifest list; stages FROM --platform=$BUILDPLATFORM built
once; independent stages and platforms in parallel (--jobs), with prefixed output and the digests
of a build one unit at a time; a foreign RUN without emulation, failing with the fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybuild.layout import Digest, Layout, load_image, read_index
from tests.fixtures.cli import PYBUILD, Pybuild, assert_fails, build_as, context
from tests.fixtures.emulation import arm64_emulation_disabled, require_arm64_emulation
from tests.fixtures.rootless import as_test_user
from tests.fixtures.tools import validate_layout

ARM64 = {"architecture": "arm64", "os": "linux", "variant": "v8"}
AMD64 = {"architecture": "amd64", "os": "linux"}


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory, multiarch_layout: Path) -> Iterator[Pybuild]:
    """A store whose busybox is the two-platform index (linux/amd64, linux/arm64/v8)."""
    require_arm64_emulation()
    root = tmp_path_factory.mktemp("platforms")
    tool = Pybuild(root / "store", root / "scratch")
    tool.scratch.mkdir()
    tool("copy", "-q", f"oci:{multiarch_layout}:latest", "busybox")
    yield tool
    tool.check()


def _platform_of(config: dict[str, object]) -> dict[str, object]:
    return {k: config[k] for k in ("architecture", "os", "variant") if k in config}


def _index(path: Path, tag: str) -> tuple[Layout, dict[str, dict[str, object]]]:
    """The index tagged ``tag`` in the layout at ``path``: platform text -> its image's config."""
    layout = Layout.open(path)
    index = read_index(layout, layout.resolve(tag))
    configs = {}
    for entry in index.manifests:
        assert entry.platform is not None
        image = load_image(layout, entry)
        assert image.descriptor.digest == entry.digest
        configs[str(entry.platform)] = image.config.to_dict()
    return layout, configs


def _file(pb: Pybuild, ref: str, platform: str, *names: str) -> list[str]:
    """Files of the image for ``platform`` of the index ``ref`` (copied out of it, unpacked)."""
    name = f"localhost/got-{platform.replace('/', '-')}"
    pb("copy", "-q", "--platform", platform, ref, name)
    root = pb.rootfs(name)
    return [(root / n).read_text().strip() for n in names]


ARCH = """FROM busybox
ARG TARGETARCH
ARG TARGETPLATFORM
RUN uname -m > /arch && echo "$TARGETARCH $TARGETPLATFORM" > /target
"""


def test_arm64_run_under_emulation_rootless(pb: Pybuild, user_home: Path) -> None:
    ctx = context(user_home / "ctx", ARCH)
    built = build_as(
        pb, ctx, "localhost/arm", True, user_home, "--platform", "linux/arm64", "--timestamp", "0"
    )
    out = user_home / "out"
    proc = as_test_user(
        [PYBUILD, "copy", "localhost/arm", f"oci:{out}:arm"], user_home, {"PYBUILD_STORE": str(built.store)}
    )
    assert proc.returncode == 0, proc.stderr
    validate_layout(out, "arm")
    image = load_image(Layout.open(out), Layout.open(out).resolve("arm"))
    # the base's arm64 image (its config says v8), and its RUN ran as aarch64
    assert _platform_of(image.config.to_dict()) == ARM64
    pb("copy", "-q", f"oci:{out}:arm", "localhost/arm-from-user")
    root = pb.rootfs("localhost/arm-from-user")
    assert (root / "arch").read_text() == "aarch64\n"
    assert (root / "target").read_text() == "arm64 linux/arm64\n"
    # `pybuild run` of the foreign image, rootless, emulated too
    run = as_test_user(
        [PYBUILD, "run", "localhost/arm", "--", "uname", "-m"], user_home, {"PYBUILD_STORE": str(built.store)}
    )
    assert (run.returncode, run.stdout) == (0, "aarch64\n"), run.stderr


def test_platform_list_makes_an_index_and_a_manifest_list_rootless(pb: Pybuild, user_home: Path) -> None:
    ctx = context(user_home / "ctx", ARCH)
    out = user_home / "out"
    built = build_as(
        pb,
        ctx,
        f"oci:{out}:multi",
        True,
        user_home,
        "--platform",
        "linux/amd64,linux/arm64",
        "--manifest",
        "localhost/list",
        "--timestamp",
        "0",
    )
    lines = built.proc.stdout.splitlines()
    # each platform's steps, prefixed; one image line each, the index committed under its tag
    for platform in ("linux/amd64", "linux/arm64"):
        assert (
            f'[{platform}] STEP 4/4: RUN uname -m > /arch && echo "$TARGETARCH $TARGETPLATFORM" > /target'
            in lines
        )
        assert any(line.startswith("--> ") and line.endswith(f" {platform}") for line in lines), lines
    assert f"COMMIT oci:{out}:multi" in lines and "added to manifest list localhost/list:latest" in lines
    validate_layout(out, "multi")
    _, configs = _index(out, "multi")
    assert {p: _platform_of(c) for p, c in configs.items()} == {"linux/amd64": AMD64, "linux/arm64/v8": ARM64}
    pb("copy", "-q", f"oci:{out}:multi", "localhost/multi")
    assert _file(pb, "localhost/multi", "linux/arm64", "arch", "target") == ["aarch64", "arm64 linux/arm64"]
    assert _file(pb, "localhost/multi", "linux/amd64", "arch", "target") == ["x86_64", "amd64 linux/amd64"]
    # the list in the user's store names the same images (before their layers were gzipped)
    env = {"PYBUILD_STORE": str(built.store)}
    listed = as_test_user([PYBUILD, "images", "--json"], user_home, env)
    lists = [i for i in json.loads(listed.stdout) if i.get("platforms")]
    assert [(i["name"], i["platforms"]) for i in lists if i["name"] == "localhost/list:latest"] == [
        ("localhost/list:latest", ["linux/amd64", "linux/arm64/v8"])
    ]
    table = as_test_user([PYBUILD, "images"], user_home, env).stdout
    assert "manifest list: linux/amd64, linux/arm64/v8" in table
    run = as_test_user(
        [PYBUILD, "run", "--platform", "linux/arm64", "localhost/list", "--", "cat", "/arch"], user_home, env
    )
    assert (run.returncode, run.stdout) == (0, "aarch64\n"), run.stderr
    # a rebuild replaces the list's images for the same platforms instead of adding more
    again = as_test_user(
        [
            PYBUILD,
            "build",
            "--platform",
            "linux/arm64",
            "--manifest",
            "localhost/list",
            "--build-arg",
            "X=1",
            str(ctx),
        ],
        user_home,
        env,
    )
    assert again.returncode == 0, again.stderr
    inspected = json.loads(
        as_test_user([PYBUILD, "manifest", "inspect", "localhost/list"], user_home, env).stdout
    )
    assert sorted(m["platform"]["architecture"] for m in inspected["manifests"]) == ["amd64", "arm64"]


SHARED = """FROM --platform=$BUILDPLATFORM busybox AS tools
RUN uname -m > /built-on && cat /proc/sys/kernel/random/uuid > /once
FROM --platform=$BUILDPLATFORM busybox AS cross
ARG TARGETARCH
RUN echo "$TARGETARCH from $(uname -m)" > /cross
FROM busybox
COPY --from=tools /built-on /once /
COPY --from=cross /cross /
RUN uname -m > /arch
"""


def test_buildplatform_stage_is_built_once(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", SHARED)
    proc = pb.build(ctx, None, "localhost/shared", "--platform", "linux/amd64,linux/arm64", "--no-cache")
    lines = proc.stdout.splitlines()
    # `tools` reads no target ARG: one build, labelled by stage only; `cross` reads TARGETARCH:
    # one build per target, natively (the build platform) for both
    assert (
        lines.count("[tools] STEP 2/9: RUN uname -m > /built-on && cat /proc/sys/kernel/random/uuid > /once")
        == 1
    )
    for platform in ("linux/amd64", "linux/arm64"):
        assert f'[{platform}] [cross] STEP 5/9: RUN echo "$TARGETARCH from $(uname -m)" > /cross' in lines
        assert f"[{platform}] [2] STEP 9/9: RUN uname -m > /arch" in lines
    amd = _file(pb, "localhost/shared", "linux/amd64", "built-on", "once", "cross", "arch")
    arm = _file(pb, "localhost/shared", "linux/arm64", "built-on", "once", "cross", "arch")
    assert amd[:2] == arm[:2] and amd[0] == "x86_64"  # the same run of `tools` in both
    assert (amd[2], arm[2]) == ("amd64 from x86_64", "arm64 from x86_64")
    assert (amd[3], arm[3]) == ("x86_64", "aarch64")


PARALLEL = """FROM busybox AS a
RUN for i in 1 2 3; do echo a-line-$i; done && echo a > /a
FROM busybox AS b
RUN for i in 1 2 3; do echo b-line-$i; done && echo b > /b
FROM scratch
COPY --from=a /a /a
COPY --from=b /b /b
"""


def test_parallel_stages_give_the_sequential_digests(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", PARALLEL)
    digests = {}
    for jobs in ("1", "2"):
        store = tmp_path / f"store{jobs}"
        pb("copy", "-q", "busybox", f"oci:{tmp_path / 'base'}:latest")
        pb("--store", str(store), "copy", "-q", f"oci:{tmp_path / 'base'}:latest", "busybox")
        proc = pb(
            "--store",
            str(store),
            "build",
            "--jobs",
            jobs,
            "--timestamp",
            "0",
            "--iidfile",
            str(tmp_path / "iid"),
            str(ctx),
        )
        lines = proc.stdout.splitlines()
        # every line of a stage carries its label, the commands' own output too, whole
        for stage, n in (("a", 2), ("b", 4)):
            run = f"RUN for i in 1 2 3; do echo {stage}-line-$i; done && echo {stage} > /{stage}"
            assert f"[{stage}] STEP {n}/7: {run}" in lines
            assert [x for x in lines if x.endswith(f"{stage}-line-2")] == [f"[{stage}] {stage}-line-2"]
        assert "[2] STEP 6/7: COPY --from=a /a /a" in lines
        digests[jobs] = (tmp_path / "iid").read_text()
        validate_layout(store)
    assert digests["1"] == digests["2"]


def test_all_platforms_builds_what_the_base_offers(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", ARCH)
    proc = pb.build(ctx, None, f"oci:{tmp_path / 'out'}:all", "--all-platforms", "--timestamp", "0")
    assert "[linux/arm64/v8] STEP 1/4: FROM busybox" in proc.stdout.splitlines()
    _, configs = _index(tmp_path / "out", "all")
    assert sorted(configs) == ["linux/amd64", "linux/arm64/v8"]
    validate_layout(tmp_path / "out", "all")
    scratch = context(tmp_path / "scratch", "FROM scratch\nCOPY Containerfile /\n")
    assert_fails(
        pb.build(scratch, None, "localhost/none", "--all-platforms", check=False),
        2,
        "--all-platforms: no stage",
    )


def test_one_failing_platform_fails_the_build(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", "FROM busybox\nRUN test $(uname -m) = x86_64 || exit 7\n")
    proc = pb.build(
        ctx,
        None,
        "localhost/half",
        "--platform",
        "linux/amd64,linux/arm64",
        "--manifest",
        "localhost/half-list",
        check=False,
    )
    assert_fails(
        proc, 7, "Containerfile:2: RUN test $(uname -m) = x86_64 || exit 7: the command exited with status 7"
    )
    names = [i["name"] for i in json.loads(pb("images", "--json").stdout)]
    assert "localhost/half:latest" not in names and "localhost/half-list:latest" not in names


def test_foreign_run_without_emulation_names_the_fix(pb: Pybuild, user_home: Path) -> None:
    ctx = context(user_home / "ctx", "FROM busybox\nRUN uname -m > /arch\n")
    with arm64_emulation_disabled():
        built = build_as(
            pb, ctx, "localhost/no-emu", True, user_home, "--platform", "linux/arm64", check=False
        )
    line = assert_fails(
        built.proc, 1, "Containerfile:2: RUN uname -m > /arch: linux/arm64/v8 binaries cannot run here"
    )
    assert "the binfmt_misc entry qemu-aarch64 for arm64 is disabled" in line
    assert line.endswith("fix: as root: echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64")
    listed = as_test_user([PYBUILD, "images", "--json"], user_home, {"PYBUILD_STORE": str(built.store)})
    assert "localhost/no-emu:latest" not in [i["name"] for i in json.loads(listed.stdout)]
    # with the emulator back, the same build runs (nothing of the failed one was kept as cached)
    again = build_as(pb, ctx, "localhost/no-emu", True, user_home, "--platform", "linux/arm64")
    assert again.proc.returncode == 0


def test_exec_format_error_names_the_platform_and_the_fix(pb: Pybuild, tmp_path: Path) -> None:
    """An image whose config says amd64 but whose /bin/sh is arm64's: no check can see it coming;
    the exec's ENOEXEC is said with the binary's platform and the fix, never alone."""
    arm = tmp_path / "arm"
    pb("copy", "-q", "--platform", "linux/arm64", "busybox", f"oci:{arm}:latest")
    ctx = context(tmp_path / "ctx", f"FROM scratch\nCOPY --from=oci:{arm}:latest / /\nRUN true\n")
    with arm64_emulation_disabled():
        proc = pb.build(ctx, None, "localhost/mislabelled", "--platform", "linux/amd64", check=False)
    line = assert_fails(proc, 1, "Containerfile:3: cannot run /bin/sh: linux/arm64 binaries cannot run here")
    assert "fix: as root: echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64" in line


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--platform", "linux"], "invalid platform 'linux'"),
        (["--platform", "linux/amd64,"], "--platform 'linux/amd64,'"),
        (["--platform", "linux/arm64", "--all-platforms"], "--all-platforms and --platform"),
        (["--jobs", "0"], "--jobs 0"),
        (["--manifest", "oci:/tmp/x"], "--manifest 'oci:/tmp/x'"),
    ],
)
def test_bad_platform_flags(pb: Pybuild, tmp_path: Path, args: list[str], fragment: str) -> None:
    ctx = context(tmp_path / "ctx", ARCH)
    assert_fails(pb.build(ctx, None, "localhost/bad", *args, check=False), 2, fragment)


def test_manifest_naming_an_image_is_refused(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", "FROM busybox\nRUN true\n")
    pb.build(ctx, None, "localhost/plain")
    before = (pb.store / "index.json").read_bytes()
    proc = pb.build(ctx, None, None, "--manifest", "localhost/plain", check=False)
    assert_fails(proc, 2, "localhost/plain:latest in store", "is an image, not a manifest list")
    tags = [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in json.loads(before)["manifests"]
    ]
    after = [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in json.loads((pb.store / "index.json").read_bytes())["manifests"]
    ]
    assert [t for t in after if t and not t.startswith("localhost/pybuild-untagged")] == [
        t for t in tags if t and not t.startswith("localhost/pybuild-untagged")
    ]


def _leftovers(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if marker in line]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_stopped_parallel_build_leaves_nothing_running(pb: Pybuild, tmp_path: Path, how: str) -> None:
    """Ctrl-C (SIGINT to the whole group) ends the build with `error: interrupted` (130); SIGTERM
    to pybuild alone takes its workers and their containers with it."""
    marker = f"sleep 6{len(how)}"
    ctx = context(tmp_path / "ctx", f"FROM busybox\nRUN {marker}\n")
    proc = subprocess.Popen(
        [PYBUILD, "build", "--no-cache", "--platform", "linux/amd64,linux/arm64", str(ctx)],
        env={**os.environ, "PYBUILD_STORE": str(pb.store)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len(_leftovers(marker)) < 2:  # both platforms' commands are running
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if how == "ctrl-c":
        assert (proc.returncode, err.strip()) == (130, "error: interrupted")
    else:
        assert proc.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while _leftovers(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(marker) == []


def test_a_platform_list_through_the_shared_cache(
    pb: Pybuild, multiarch_layout: Path, tmp_path: Path
) -> None:
    """Each platform's steps go to an oci: cache (one set of caches for the whole build); another
    runner's empty store builds the same index from it without running a RUN (the counter bound
    with -v is unchanged)."""
    counter = tmp_path / "counter"
    counter.mkdir()
    ctx = context(
        tmp_path / "ctx",
        "FROM busybox\nARG TARGETARCH\nRUN echo $TARGETARCH >> /counter/runs && uname -m > /arch\n",
    )
    cache = f"oci:{tmp_path / 'cache'}"
    flags = ["--platform", "linux/amd64,linux/arm64", "-v", f"{counter}:/counter", "--timestamp", "0"]
    flags += ["--cache-from", cache, "--cache-to", cache, "-t", "localhost/multi-cached", str(ctx)]
    pb("build", *flags)
    assert sorted((counter / "runs").read_text().split()) == ["amd64", "arm64"]
    other = Pybuild(tmp_path / "other" / "store", tmp_path / "other" / "scratch")
    other.scratch.mkdir(parents=True)
    other("copy", "-q", f"oci:{multiarch_layout}:latest", "busybox")
    other("build", *flags)
    assert sorted((counter / "runs").read_text().split()) == ["amd64", "arm64"]  # no RUN ran
    assert _configs(other, "localhost/multi-cached") == _configs(pb, "localhost/multi-cached")  # same images
    assert _file(other, "localhost/multi-cached", "linux/arm64", "arch") == ["aarch64"]


def _configs(tool: Pybuild, ref: str) -> list[str]:
    """The config digest (the image ID) of each image of the index ``ref``, in order: the layers of
    images taken from a shared cache are gzipped there, so the manifests differ, not the images."""
    store = Layout.open(tool.store)
    index = read_index(store, store.resolve(f"{ref}:latest"))
    return [str(load_image(store, child).manifest.config.digest) for child in index.manifests]


def test_a_platform_list_into_oci_carries_each_images_attestations(pb: Pybuild, tmp_path: Path) -> None:
    """`--sbom --provenance` with a platform list and an oci: target: each image of the index there
    has its SBOM and provenance as referrers, the statement naming that image's manifest."""
    from pybuild.layout import referrers

    ctx = context(tmp_path / "ctx", "FROM busybox\nRUN echo hi > /hi\n")
    out = tmp_path / "out"
    pb(
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--sbom",
        "--provenance",
        "-t",
        f"oci:{out}:v1",
        str(ctx),
    )
    validate_layout(out, "v1")  # (the tag: oci-image-tool 1.0 knows no artifact to check)
    layout = Layout.open(out)
    index = read_index(layout, layout.resolve("v1"))
    assert len(index.manifests) == 2
    for child in index.manifests:
        found = {r.artifact_type: r for r in referrers(layout, child.digest)}
        assert set(found) == {"application/spdx+json", "application/vnd.in-toto+json"}
        artifact = json.loads(layout.blobs.read(found["application/vnd.in-toto+json"].digest))
        statement = json.loads(layout.blobs.read(Digest.parse(artifact["layers"][0]["digest"])))
        assert statement["subject"][0]["digest"] == {"sha256": child.digest.encoded}
