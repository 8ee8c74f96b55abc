"""`pybuild build` end to end: the cache, reproducibility, formats, outputs, secrets, ADD of archives,
COPY flags, stages, build args and errors. Every build runs the real console script."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from pybuild.layout import Layout, check_layout
from tests.fixtures.cli import Pybuild, assert_fails, base_store, build_as, context
from tests.fixtures.tools import validate_layout
from tests.fixtures.trees import all_bytes

pytestmark = pytest.mark.usefixtures("store_checked")


def cached_steps(stdout: str) -> list[str]:
    """The STEP lines followed by `--> Using cache`."""
    lines = stdout.splitlines()
    return [lines[i - 1] for i, line in enumerate(lines) if line.startswith("--> Using cache") and i > 0]


def digest(pb: Pybuild, ref: str) -> str:
    return str(pb.inspect(ref)["digest"])


# --- cache --------------------------------------------------------------------------------------
CACHED = """FROM busybox
ARG V=1
COPY a.txt /a.txt
RUN echo $V > /v
RUN <<EOF
echo doc > /doc
EOF
"""


@pytest.mark.slow
def test_cache(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", CACHED, **{"a.txt": "hello\n"})
    first = pb.build(ctx, None, "cached")
    assert cached_steps(first.stdout) == []
    d1 = digest(pb, "cached")
    again = pb.build(ctx, None, "cached")
    assert "Using cache" in again.stdout
    assert cached_steps(again.stdout) == [
        "STEP 3/5: COPY a.txt /a.txt",
        "STEP 4/5: RUN echo $V > /v",
        "STEP 5/5: RUN <<EOF",
    ]
    assert digest(pb, "cached") == d1

    # the COPY source's content changes: COPY and everything after it runs again
    (ctx / "a.txt").write_text("hello, world\n")
    proc = pb.build(ctx, None, "cached")
    assert cached_steps(proc.stdout) == []
    assert (pb.rootfs("cached") / "a.txt").read_text() == "hello, world\n"
    d2 = digest(pb, "cached")
    assert d2 != d1

    # only its mode changes
    os.chmod(ctx / "a.txt", 0o600)
    proc = pb.build(ctx, None, "cached")
    assert cached_steps(proc.stdout) == []
    assert stat.S_IMODE((pb.rootfs("cached") / "a.txt").stat().st_mode) == 0o600
    d3 = digest(pb, "cached")
    assert d3 != d2

    # a --build-arg value: the RUN that sees it runs again (pybuild keys every step after the ARG
    # on the values in scope, so the COPY between them runs again too)
    proc = pb.build(ctx, None, "cached", "--build-arg", "V=2")
    assert "STEP 4/5: RUN echo $V > /v" not in cached_steps(proc.stdout)
    assert (pb.rootfs("cached") / "v").read_text() == "2\n"

    # a heredoc's body
    (ctx / "Containerfile").write_text(CACHED.replace("echo doc", "echo changed"))
    proc = pb.build(ctx, None, "cached")
    assert cached_steps(proc.stdout) == ["STEP 3/5: COPY a.txt /a.txt", "STEP 4/5: RUN echo $V > /v"]
    assert (pb.rootfs("cached") / "doc").read_text() == "changed\n"

    # --no-cache runs every step, and the result is the same image content
    proc = pb.build(ctx, None, "nocache", "--no-cache")
    assert "Using cache" not in proc.stdout
    fresh, cached = pb.inspect("nocache")["diff_ids"], pb.inspect("cached")["diff_ids"]
    assert len(fresh) == len(cached) and fresh[:2] == cached[:2]  # RUN layers differ in mtimes
    assert (pb.rootfs("nocache") / "doc").read_text() == "changed\n"


# --- reproducibility ----------------------------------------------------------------------------
REPRO = """FROM busybox
COPY a.txt /a.txt
RUN echo built > /built && mkdir -p /var/data && touch /var/data/x
ENV A=1
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--timestamp", "SOURCE_DATE_EPOCH"])
def test_reproducible(tmp_path: Path, how: str) -> None:
    ctx = context(tmp_path / "ctx", REPRO, **{"a.txt": "hello\n"})
    digests, ids = [], []
    for n in range(2):
        tool = base_store(tmp_path / f"s{n}", ("busybox",))
        if how == "--timestamp":
            proc = tool("build", "--timestamp", "0", "-t", "repro", str(ctx))
        else:
            proc = tool("build", "-t", "repro", str(ctx), env={"SOURCE_DATE_EPOCH": "0"})
        assert "Using cache" not in proc.stdout
        info = tool.inspect("repro")
        digests.append(info["digest"])
        ids.append(info["id"])
        assert len(info["diff_ids"]) == 3  # base, COPY, RUN
        assert info["created"].startswith("1970-01-01T00:00:00")
        assert check_layout(Layout.open(tool.store)) == []
        if n == 0:
            tool.validate_oci("repro")
    assert digests[0] == digests[1]
    assert ids[0] == ids[1]


# --- formats ------------------------------------------------------------------------------------
FORMATS = """FROM busybox
HEALTHCHECK --interval=5s CMD true
ONBUILD RUN touch /x
SHELL ["/bin/sh", "-ec"]
"""


def test_format_docker_keeps_fields_oci_warns(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", FORMATS)
    pb.build(ctx, None, "fmt-docker", "--format", "docker")
    info = pb.inspect("fmt-docker")
    assert info["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    config = info["runtime"]
    assert config["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert config["Healthcheck"]["Interval"] == 5_000_000_000
    assert config["OnBuild"] == ["RUN touch /x"]
    assert config["Shell"] == ["/bin/sh", "-ec"]

    proc = pb.build(ctx, None, "fmt-oci")
    info = pb.inspect("fmt-oci")
    assert info["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    for name in ("Healthcheck", "OnBuild", "Shell"):
        assert name not in info["runtime"], name
    for instruction in ("HEALTHCHECK", "ONBUILD", "SHELL"):
        assert f"warning: {instruction} is not part of the OCI image format" in proc.stderr, instruction


def test_layer_compression_default_and_choices(pb: Pybuild, tmp_path: Path) -> None:
    """New layers stay uncompressed in the store (buildah's storage does the same, for --format
    docker too); --compression picks another, and oci: targets then get the layers as they are."""
    ctx = context(tmp_path / "ctx", "FROM busybox\nRUN echo hi > /hi\n")

    def new_layer(ref: str) -> str:
        return str(pb.inspect(ref)["layers"][-1]["mediaType"])

    pb.build(ctx, None, "comp-default")
    assert new_layer("comp-default") == "application/vnd.oci.image.layer.v1.tar"
    assert (pb.rootfs("comp-default") / "hi").read_text() == "hi\n"
    pb.build(ctx, None, "comp-docker", "--format", "docker")
    assert new_layer("comp-docker") == "application/vnd.docker.image.rootfs.diff.tar"
    # gzipped on the way out, and OCI there: an oci: layout takes only OCI (as skopeo converts)
    pb("copy", "comp-docker", f"oci:{tmp_path}/docker-out:t")
    exported = pb.inspect(f"oci:{tmp_path}/docker-out:t")
    assert exported["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert new_layer(f"oci:{tmp_path}/docker-out:t") == "application/vnd.oci.image.layer.v1.tar+gzip"
    ctx2 = context(tmp_path / "ctx2", "FROM comp-default\nRUN echo more > /more\n")
    pb.build(ctx2, None, "comp-docker2", "--format", "docker")  # on an uncompressed OCI base
    assert {layer["mediaType"] for layer in pb.inspect("comp-docker2")["layers"][1:]} == {
        "application/vnd.docker.image.rootfs.diff.tar"
    }
    bad = pb.build(ctx, None, "comp-docker-zstd", "--format", "docker", "--compression", "zstd", check=False)
    assert bad.returncode == 2 and "Docker-format images have gzip or plain tar layers" in bad.stderr
    pb.build(ctx, None, "comp-gzip", "--compression", "gzip")
    assert new_layer("comp-gzip") == "application/vnd.oci.image.layer.v1.tar+gzip"
    for choice, media in (("zstd", "+zstd"), ("none", "")):
        out = tmp_path / f"layout-{choice}"
        pb.build(ctx, None, f"oci:{out}:t", "--compression", choice)
        assert new_layer(f"oci:{out}:t") == f"application/vnd.oci.image.layer.v1.tar{media}"
    validate_layout(tmp_path / "layout-none", "t")
    bad = pb.build(ctx, None, "comp-bad", "--compression", "lz4", check=False)
    assert bad.returncode == 2 and bad.stderr == "error: --compression 'lz4': expected gzip, zstd or none\n"


# --- outputs: -t oci:, --iidfile, -q ------------------------------------------------------------
def test_tag_oci_layout_iidfile_quiet(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", "FROM busybox\nCOPY a.txt /\nLABEL x=y\n", **{"a.txt": "a\n"})
    out = tmp_path / "layout"
    iid = tmp_path / "iid"
    proc = pb.build(ctx, None, f"oci:{out}:v1", "-t", "named", "--iidfile", str(iid), "-q")
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    image_id = lines[0]
    assert len(image_id) == 64 and int(image_id, 16) >= 0
    assert "STEP" not in proc.stdout + proc.stderr
    assert iid.read_text().strip() in (image_id, f"sha256:{image_id}")
    assert pb.inspect("named")["id"] == image_id
    assert [name for name, _ in Layout.open(out).tags()] == ["v1"]
    validate_layout(out, "v1")
    # the store keeps the new layer uncompressed (as buildah does); the OCI layout gets it gzipped,
    # so the manifests differ but the image (config, diff_ids) is the same
    stored, exported = pb.inspect("named"), pb.inspect(f"oci:{out}:v1")
    assert exported["id"] == stored["id"] == image_id
    assert exported["diff_ids"] == stored["diff_ids"]
    assert stored["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert stored["layers"][-1]["digest"] == stored["diff_ids"][-1]
    assert {layer["mediaType"] for layer in exported["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    }
    assert exported["digest"] != stored["digest"]
    assert (pb.rootfs(f"oci:{out}:v1") / "a.txt").read_text() == "a\n"


# --- --target, COPY --from, ARG before FROM, WORKDIR ---------------------------------------------
STAGES = """ARG BASE=busybox
ARG GREETING=hello
FROM ${BASE} AS builder
ARG GREETING
RUN echo "$GREETING" > /greeting && mkdir -p /out/sub && echo deep > /out/sub/f
FROM ${BASE} AS other
RUN echo other > /other
FROM scratch
COPY --from=builder /greeting /copied
COPY --from=builder /out /out
WORKDIR /made/here
"""


def test_stages_target_copy_from_arg_before_from_workdir(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", STAGES)
    proc = pb.build(ctx, None, "final", "--build-arg", "GREETING=bonjour")
    assert "STEP" in proc.stdout and "RUN echo other" not in proc.stdout  # an unneeded stage is skipped
    root = pb.rootfs("final")
    assert (root / "copied").read_text() == "bonjour\n"
    assert (root / "out" / "sub" / "f").read_text() == "deep\n"
    assert (root / "made" / "here").is_dir()  # WORKDIR creates the directory
    assert not (root / "bin").exists() and not (root / "other").exists()
    assert pb.config("final")["WorkingDir"] == "/made/here"

    pb.build(ctx, None, "target", "--target", "builder")
    root = pb.rootfs("target")
    assert (root / "greeting").read_text() == "hello\n"  # the global ARG's default
    assert (root / "bin" / "sh").exists()

    proc = pb.build(ctx, None, "x", "--target", "nosuch", check=False)
    assert_fails(proc, None, "nosuch")


def test_unused_build_arg_warns(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(tmp_path / "ctx", "FROM busybox\nARG USED\nRUN echo $USED\n")
    proc = pb.build(ctx, None, "args", "--build-arg", "USED=1", "--build-arg", "UNUSED=2")
    assert "one or more build args were not consumed: ['UNUSED']" in proc.stderr
    proc = pb.build(ctx, None, "args", "--build-arg", "USED=1")
    assert "not consumed" not in proc.stderr


# --- secrets ------------------------------------------------------------------------------------
def test_secret_is_readable_and_left_out(pb: Pybuild, tmp_path: Path) -> None:
    secret = "s3cr3t-value-8d1f4e"
    (tmp_path / "secret.txt").write_text(secret)
    ctx = context(
        tmp_path / "ctx",
        "FROM busybox\n"
        "RUN --mount=type=secret,id=mysecret cat /run/secrets/mysecret > /dev/null && "
        "cp /run/secrets/mysecret /dev/null && echo len=$(wc -c < /run/secrets/mysecret) && "
        "grep -q s3cr3t /run/secrets/mysecret && echo ok > /ran\n",
    )
    proc = pb.build(ctx, None, "secret", "--secret", f"id=mysecret,src={tmp_path / 'secret.txt'}")
    assert f"len={len(secret)}" in proc.stdout
    root = pb.rootfs("secret")
    assert (root / "ran").read_text() == "ok\n"
    assert not (root / "run" / "secrets" / "mysecret").exists()
    for path, data in all_bytes(pb.store / "blobs"):
        assert secret.encode() not in data, path


# --- ADD of local archives ----------------------------------------------------------------------
def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_add_local_archives_are_extracted(pb: Pybuild, tmp_path: Path) -> None:
    raw = _tar({"dir/inner.txt": b"inside\n", "top.txt": b"top\n"})
    ctx = context(
        tmp_path / "ctx",
        "FROM busybox\nADD a.tar.gz /gz/\nADD a.tar.xz /xz\nADD a.tar.zst /zst/\nADD plain.gz /plain/\n",
        **{
            "a.tar.gz": gzip.compress(raw),
            "a.tar.xz": lzma.compress(raw),
            "a.tar.zst": zstandard.ZstdCompressor().compress(raw),
            "plain.gz": gzip.compress(b"not a tar\n"),
        },
    )
    pb.build(ctx, None, "archives")
    root = pb.rootfs("archives")
    for folder in ("gz", "xz", "zst"):
        assert (root / folder / "dir" / "inner.txt").read_text() == "inside\n", folder
        assert (root / folder / "top.txt").read_text() == "top\n", folder
        assert stat.S_IMODE((root / folder / "top.txt").stat().st_mode) == 0o640
    # a compressed file that holds no tar is copied as it is
    assert (root / "plain" / "plain.gz").read_bytes() == (ctx / "plain.gz").read_bytes()


# --- COPY --chown / --chmod ---------------------------------------------------------------------
def test_copy_chown_chmod(pb: Pybuild, tmp_path: Path) -> None:
    ctx = context(
        tmp_path / "ctx",
        "FROM busybox\n"
        "COPY --chown=1000:1001 --chmod=0640 a.txt /octal\n"
        "COPY --chmod=u=rwx,g=rx,o= a.txt /symbolic\n"
        "COPY --chmod=a+x a.txt /plusx\n"
        "COPY --chown=nobody:nobody d/ /dir/\n",
        **{"a.txt": "a\n", "d/f.txt": "f\n"},
    )
    os.chmod(ctx / "a.txt", 0o644)
    pb.build(ctx, None, "chown")
    root = pb.rootfs("chown")
    st = (root / "octal").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o640)
    assert stat.S_IMODE((root / "symbolic").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "plusx").stat().st_mode) == 0o755
    nobody = next(
        line for line in (root / "etc" / "passwd").read_text().splitlines() if line.startswith("nobody:")
    )
    uid, gid = int(nobody.split(":")[2]), int(nobody.split(":")[3])
    st = (root / "dir" / "f.txt").stat()
    assert (st.st_uid, st.st_gid) == (uid, gid)


# --- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("FROM busybox\nRUN true\nRUNN true\n", 3, 'unknown instruction "RUNN"'),
        ("FROM busybox\n\nCOPY\n", 3, "COPY"),
        ("RUN true\nFROM busybox\n", 1, "FROM"),
        ("FROM busybox\nCOPY nosuch.txt /\n", 2, "nosuch.txt"),
    ],
)
def test_errors_name_file_and_line(pb: Pybuild, tmp_path: Path, text: str, line: int, fragment: str) -> None:
    ctx = context(tmp_path / "ctx", text)
    proc = pb.build(ctx, None, "bad", check=False)
    assert_fails(proc, 1, f"Containerfile:{line}:", fragment)


# --- gc -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_gc_sweeps_what_builds_leave_behind(tmp_path: Path) -> None:
    own = base_store(tmp_path / "gc", ("busybox",))
    ctx = context(tmp_path / "ctx", "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n")
    keep = context(tmp_path / "keep", "FROM busybox\nRUN echo kept > /kept\n")
    own.build(ctx, None, "localhost/gone")
    own.build(keep, None, "localhost/kept")
    layers = own.store / ".pybuild" / "layers"
    records = own.store / ".pybuild" / "build-cache"
    kept_diff_ids = {d.split(":")[1] for d in own.inspect("localhost/kept")["diff_ids"]}
    gone_diff_ids = {d.split(":")[1] for d in own.inspect("localhost/gone")["diff_ids"]} - kept_diff_ids
    assert gone_diff_ids and gone_diff_ids <= {p.name for p in layers.iterdir()}
    (own.store / ".pybuild" / "build" / "step-stale").mkdir()  # a workspace a killed build left
    n_records = len(list(records.iterdir()))
    own("rm", "localhost/gone")
    out = own("gc").stdout
    assert "removed 2 layer directories" in out and "1 stale build workspaces" in out
    left = {p.name for p in layers.iterdir()}
    assert kept_diff_ids <= left and not gone_diff_ids & left
    assert not list((own.store / ".pybuild" / "build").iterdir())
    # the records of the removed image's two RUN steps are gone; the kept image still rebuilds from cache
    assert "2 build cache records" in out and len(list(records.iterdir())) == n_records - 2
    assert cached_steps(own.build(keep, None, "localhost/kept").stdout) == ["STEP 2/2: RUN echo kept > /kept"]
    # and the removed one builds again from scratch, correctly
    rebuilt = own.build(ctx, None, "localhost/gone").stdout
    assert cached_steps(rebuilt) == []
    assert own("run", "localhost/gone", "--", "cat", "/one", "/two").stdout == "one\ntwo\n"
    own.check()


def test_containerfile_on_standard_input(pb: Pybuild, tmp_path: Path) -> None:
    import subprocess

    from tests.fixtures.cli import PYBUILD

    env = {**os.environ, "PYBUILD_STORE": str(pb.store)}
    text = "FROM busybox\nRUN echo from-stdin > /s\n"
    proc = subprocess.run(
        [PYBUILD, "build", "-q", "-f", "-", "-t", "localhost/stdin", str(tmp_path)],
        input=text,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert pb("run", "localhost/stdin", "--", "cat", "/s").stdout == "from-stdin\n"
    bad = subprocess.run(
        [PYBUILD, "build", "-f", "-", str(tmp_path)],
        input="FROM busybox\nRUNN x\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1 and bad.stderr == 'error: Containerfile:2: unknown instruction "RUNN"\n'


def test_rebuild_of_a_workdir_that_exists_gives_the_same_image(pb: Pybuild, tmp_path: Path) -> None:
    # WORKDIR's directory is made at the end of the stage when no later step makes it; where it
    # already exists that makes no layer and no history entry, on the first build and from the cache
    ctx = context(tmp_path / "ctx", "FROM busybox\nWORKDIR /tmp\n")
    first = pb.build(ctx, None, None, "-q").stdout.strip()
    second = pb.build(ctx, None, None, "-q").stdout.strip()
    assert first == second
    assert pb.config(first[:12])["WorkingDir"] == "/tmp"


def test_copy_heredoc_expands_like_buildkit(pb: Pybuild, tmp_path: Path) -> None:
    text = (
        "FROM busybox\nARG WHO=world\n"
        "COPY <<EOF /expanded\nhello \"$WHO\" ${MISSING:-fallback} 'kept'\nEOF\n"
        "COPY <<'EOF' /verbatim\nhello $WHO\nEOF\n"
    )
    ctx = context(tmp_path / "ctx", text)
    pb.build(ctx, None, "localhost/heredoc-expand")
    out = pb("run", "localhost/heredoc-expand", "--", "cat", "/expanded", "/verbatim").stdout
    assert out == "hello \"world\" fallback 'kept'\nhello $WHO\n"


# --- RUN mounts leave no trace ------------------------------------------------------------------
MOUNTS = """FROM busybox
RUN --mount=type=cache,target=/var/cache/deep/c \\
    --mount=type=bind,source=data.txt,target=/mnt/in/data.txt \\
    --mount=type=tmpfs,target=/scratch/t \\
    cat /mnt/in/data.txt > /etc/result && touch /var/cache/deep/c/kept-in-cache /scratch/t/gone
"""


def _last_layer_names(store: Path, ref: str) -> list[str]:
    from pybuild.diff import open_layer
    from pybuild.layout import ImageStore, load_image

    layout = ImageStore.at(store)
    image = load_image(layout, layout.lookup(ref)[1])
    layer = image.layers[-1]
    with (
        layout.blobs.open(layer.digest, layer.size) as blob,
        tarfile.open(fileobj=open_layer(blob, layer.media_type), mode="r|") as tar,
    ):
        return sorted(m.name for m in tar)


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_run_mount_points_stay_out_of_the_layer(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool
) -> None:
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", MOUNTS, **{"data.txt": "from the context\n"})
    names = _last_layer_names(
        build_as(pb, ctx, "localhost/mounts", rootless, user_home).store, "localhost/mounts"
    )
    # only what the command wrote: no mount point, nor a directory made only to hold one; /etc
    # itself is there with the time the command gave it (busybox has no /etc/hosts, so /etc also
    # held a mount point, whose removal must not take the command's change away)
    assert names == ["etc", "etc/result"]


HIDDEN_BELOW = """FROM busybox
RUN mkdir -p /gone/sub /opq/sub && echo below > /opq/sub/f
RUN rm -rf /gone /opq && mkdir /opq && echo kept > /opq/kept
RUN --mount=type=cache,target=/gone/sub/c --mount=type=bind,source=data.txt,target=/opq/sub/m \\
    cat /opq/sub/m > /seen
"""


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_run_mount_points_under_deleted_and_opaque_directories(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool
) -> None:
    """Mount targets under a directory an upper layer deleted (/gone: a whiteout) or made opaque
    (/opq, recreated): the layers below still hold /gone/sub and /opq/sub, but the image does not,
    so the directories made to hold the mount points are plumbing and stay out of the layer (overlay's
    rules, diff/overlay.py's LowerStack, decide what lies below)."""
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", HIDDEN_BELOW, **{"data.txt": "from the context\n"})
    store = build_as(pb, ctx, "localhost/hidden-below", rootless, user_home).store
    assert _last_layer_names(store, "localhost/hidden-below") == ["seen"]


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_run_mount_target_through_a_symlink_stays_inside(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool
) -> None:
    """A mount target under an image symlink that points at a host path (/foo -> /HOST/probe):
    the mount point is made inside the root, never on the host, and leaves nothing in the layer."""
    where = user_home if rootless else tmp_path
    probe = where / "probe"  # exists on the host, writable by whoever builds
    probe.mkdir()
    text = (
        "FROM busybox\nCOPY links/ /\n"
        "RUN --mount=type=cache,target=/foo/sub touch /foo/sub/x && ls /foo/sub > /seen\n"
    )
    ctx = context(where / "ctx", text)
    (ctx / "links").mkdir()
    os.symlink(str(probe), ctx / "links" / "foo")
    store = build_as(pb, ctx, "localhost/mount-link", rootless, user_home).store
    assert list(probe.iterdir()) == []
    assert _last_layer_names(store, "localhost/mount-link") == ["seen"]


ETC_LINKS = """FROM busybox
COPY links/ /
RUN readlink /etc/resolv.conf > /link-seen && cat /etc/resolv.conf > /resolv-seen && \\
    cat /etc/hostname > /hostname-seen
"""


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_run_keeps_etc_symlinks(pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool) -> None:
    """An image whose /etc/resolv.conf is a symlink (systemd-resolved's) keeps it: the generated
    file is mounted where it points, and neither it nor the directories made for it reach the
    layer; links into /proc and loops are left alone."""
    ctx = context((user_home if rootless else tmp_path) / "ctx", ETC_LINKS)
    etc = ctx / "links" / "etc"
    etc.mkdir(parents=True)
    os.symlink("../run/systemd/resolve/stub-resolv.conf", etc / "resolv.conf")
    os.symlink("/proc/sys/kernel/hostname", etc / "hostname")
    os.symlink("/etc/hosts.loop", etc / "hosts")
    os.symlink("/etc/hosts", etc / "hosts.loop")
    store = build_as(pb, ctx, "localhost/etc-links", rootless, user_home).store
    assert _last_layer_names(store, "localhost/etc-links") == ["hostname-seen", "link-seen", "resolv-seen"]
    bundle = tmp_path / "bundle"
    pb("--store", str(store), "unpack", "localhost/etc-links", str(bundle))
    root = bundle / "rootfs"
    assert os.readlink(root / "etc" / "resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    assert (root / "link-seen").read_text() == "../run/systemd/resolve/stub-resolv.conf\n"
    assert (root / "hostname-seen").read_text().strip()  # the container's hostname, through /proc
    assert not (root / "run" / "systemd").exists()
