"""Build semantics BuildKit and buildah share: the default PATH of scratch images, the automatic
platform ARGs and their scoping, stages built FROM an earlier stage that copy from each other, and
build args from the environment and from files. Every build runs the real console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pybuild.layout import Layout, check_layout, host_platform
from tests.fixtures.cli import Pybuild, assert_fails, build_as, context

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


pytestmark = pytest.mark.usefixtures("store_checked")


def cat(pb: Pybuild, ref: str, *paths: str) -> str:
    return pb("run", ref, "--", "cat", *paths).stdout


# --- FROM scratch ---------------------------------------------------------------------------------
def test_scratch_images_get_the_default_path(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", "FROM scratch\nCOPY f /f\n", f="f\n")
    pb.build(ctx, None, "localhost/scratch-path")
    assert pb.config("localhost/scratch-path")["Env"] == [DEFAULT_PATH]
    # an ENV of the Containerfile comes after it, and a stage FROM a scratch stage inherits it
    ctx = context(tmp_path / "ctx2", "FROM scratch AS a\nENV A=1\nFROM a\nCOPY f /f\n", f="f\n")
    pb.build(ctx, None, "localhost/scratch-env")
    assert pb.config("localhost/scratch-env")["Env"] == [DEFAULT_PATH, "A=1"]
    pb.validate_oci("localhost/scratch-env")


# --- automatic platform ARGs ----------------------------------------------------------------------
PLATFORM_ARGS = """ARG WHERE=global
FROM --platform=$BUILDPLATFORM busybox AS build
RUN echo "[$TARGETPLATFORM][$BUILDPLATFORM][$TARGETARCH]" > /before
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT
ARG BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT
RUN echo "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT" > /after && \\
    echo "$BUILDPLATFORM|$BUILDOS|$BUILDARCH|$BUILDVARIANT" >> /after && echo "[$WHERE]" > /where
FROM scratch
COPY --from=build /before /after /where /
"""


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_platform_args_with_buildkit_scoping(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool
) -> None:
    host = host_platform()
    build_platform = f"linux/{host.architecture}" + (f"/{host.variant}" if host.variant else "")
    ctx = context((user_home if rootless else tmp_path) / "ctx", PLATFORM_ARGS)
    # a target platform other than the host: the build stage still runs on the host's platform
    built = build_as(pb, ctx, "localhost/platform-args", rootless, user_home, "--platform", "linux/arm64/v8")
    store = Pybuild(built.store, tmp_path)
    info = store.inspect("localhost/platform-args")
    assert (info["os"], info["architecture"]) == ("linux", "arm64")
    root = store.rootfs("localhost/platform-args")
    # inside a stage, only after `ARG NAME`; a global ARG is not visible in a stage without ARG
    assert (root / "before").read_text() == "[][][]\n"
    variant = host.variant or ""
    assert (root / "after").read_text() == (
        f"linux/arm64/v8|linux|arm64|v8\n{build_platform}|linux|{host.architecture}|{variant}\n"
    )
    assert (root / "where").read_text() == "[]\n"
    # without --platform, TARGET* is the host, with an empty variant where it has none
    build_as(pb, ctx, "localhost/platform-host", rootless, user_home)
    root = store.rootfs("localhost/platform-host")
    assert (root / "after").read_text() == (
        f"{build_platform}|linux|{host.architecture}|{variant}\n"
        f"{build_platform}|linux|{host.architecture}|{variant}\n"
    )
    store.validate_oci("localhost/platform-args")


def test_platform_args_in_from_and_a_bad_platform(pb: Pybuild, tmp_path: Path) -> None:
    text = "ARG IMG=busybox\nFROM --platform=$TARGETPLATFORM $IMG\nARG TARGETOS\nRUN echo $TARGETOS > /os\n"
    ctx = context(tmp_path / "ctx", text)
    pb.build(ctx, None, "localhost/platform-from")
    assert cat(pb, "localhost/platform-from", "/os") == "linux\n"
    bad = context(tmp_path / "bad", "ARG P=nonsense\nFROM --platform=$P busybox\n")
    proc = pb.build(bad, None, "localhost/platform-bad", check=False)
    assert_fails(proc, 1, "Containerfile:2: ", "invalid platform 'nonsense'")


# --- stages FROM an earlier stage that copy from each other (was a traceback) ----------------------
THREE_STAGES = """FROM busybox AS one
COPY f /f
FROM 0 AS two
COPY --from=0 /f /f
FROM 0 AS three
COPY --from=1 /f /g
RUN cat /f /g > /both
"""


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_stages_from_a_stage_copying_by_index(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool
) -> None:
    """Stage two copies a file stage one has, byte for byte (once a layer with the same diff_id as
    the one below it, ELOOP from overlay in stage three; now an unchanged file makes no layer at all,
    as in the copy mode). The repeated layer itself is pinned by the next test."""
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", THREE_STAGES, f="the file\n")
    built = build_as(pb, ctx, "localhost/three", rootless, user_home)
    assert "Traceback" not in built.proc.stderr
    store = Pybuild(built.store, tmp_path)
    build_as(pb, ctx, "localhost/two", rootless, user_home, "--target", "two")
    assert store.inspect("localhost/two")["diff_ids"] == store.inspect("localhost/three")["diff_ids"][:2]
    root = store.rootfs("localhost/three")
    assert (root / "both").read_text() == "the file\nthe file\n"
    assert check_layout(Layout.open(built.store)) == []
    store.validate_oci("localhost/three")


# the same layer twice in one stack: two steps that write the same bytes (times pinned by --timestamp)
REPEATED_LAYER = """FROM busybox AS one
RUN echo same > /f
FROM 0 AS two
RUN echo same > /f
FROM 1
RUN cat /f > /seen
"""


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_a_layer_twice_in_a_stack(pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool) -> None:
    """Stage two's RUN rewrites /f with the same bytes: with the times pinned its layer is the one
    below it, so the last stage stacks one layer directory twice (overlay refuses that with ELOOP:
    pybuild stacks it once, which shows the same tree)."""
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", REPEATED_LAYER)
    built = build_as(pb, ctx, "localhost/repeated", rootless, user_home, "--timestamp", "0")
    assert "Traceback" not in built.proc.stderr
    store = Pybuild(built.store, tmp_path)
    diff_ids = store.inspect("localhost/repeated")["diff_ids"]
    assert diff_ids[-2] == diff_ids[-3], diff_ids  # the cause: one layer twice in the stack
    assert (store.rootfs("localhost/repeated") / "seen").read_text() == "same\n"
    assert check_layout(Layout.open(built.store)) == []
    store.validate_oci("localhost/repeated")


# --- build args -----------------------------------------------------------------------------------
ARGS = """FROM busybox
ARG FROM_ENV=default-env
ARG UNSET=default-unset
ARG IN_FILE
ARG OVERRIDDEN
ARG DROPPED=default-dropped
ARG EQUALS
RUN echo "$FROM_ENV|$UNSET|$IN_FILE|$OVERRIDDEN|$DROPPED|$EQUALS" > /args
"""


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_build_arg_from_the_environment_and_files(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool
) -> None:
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", ARGS)
    args_file = ctx / "args.conf"
    args_file.write_text(
        "# comments and empty lines are skipped\n\nIN_FILE=from file\nOVERRIDDEN=file\nDROPPED=file\n"
        "EQUALS=a=b\n"
    )
    built = build_as(
        pb,
        ctx,
        "localhost/args",
        rootless,
        user_home,
        "--build-arg-file",
        str(args_file),
        "--build-arg",
        "FROM_ENV",  # from the environment
        "--build-arg",
        "UNSET",  # not in the environment: skipped, the default stays
        "--build-arg",
        "OVERRIDDEN=flag",  # --build-arg wins over the file
        "--build-arg",
        "DROPPED",  # unset in the environment: the file's value goes too (as buildah does)
        env={"FROM_ENV": "from env"},
    )
    store = Pybuild(built.store, tmp_path)
    assert (
        cat(store, "localhost/args", "/args") == "from env|default-unset|from file|flag|default-dropped|a=b\n"
    )
    history = store.inspect("localhost/args")["history"][-1]["created_by"]
    assert "FROM_ENV=from env" in history and "OVERRIDDEN=flag" in history


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--build-arg", "=value"], "--build-arg '=value': expected NAME[=VALUE]"),
        (["--build-arg-file", "/no/such/args-file"], "--build-arg-file /no/such/args-file: cannot read"),
    ],
)
def test_bad_build_args_are_a_bad_command_line(
    pb: Pybuild, tmp_path: Path, args: list[str], fragment: str
) -> None:
    ctx = context(tmp_path / "ctx", ARGS)
    proc = pb("build", "-t", "localhost/args-bad", *args, str(ctx), check=False)
    assert_fails(proc, 2, fragment)
    bad_file = tmp_path / "bad.conf"
    bad_file.write_text("OK=1\n=nothing\n")
    proc = pb("build", "--build-arg-file", str(bad_file), str(ctx), check=False)
    assert_fails(proc, 2, f"--build-arg-file {bad_file}:2: '=nothing'")


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_a_failing_run_keeps_its_status(pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool) -> None:
    where = user_home if rootless else tmp_path
    for status in (1, 2, 7, 130):
        ctx = context(where / f"ctx{status}", f"FROM busybox\nRUN exit {status}\n")
        built = build_as(pb, ctx, "localhost/fails", rootless, user_home, check=False)
        assert_fails(built.proc, status, "Containerfile:2: RUN exit", f"exited with status {status}")
    names = [i["name"] for i in json.loads(Pybuild(built.store, tmp_path)("images", "--json").stdout)]
    assert "localhost/fails:latest" not in names and "docker.io/library/busybox:latest" in names
