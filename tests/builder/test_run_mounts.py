"""RUN --mount from another stage or image, and secrets, as BuildKit defines them: each case a real
build through the console script, as root and rootless, in the native overlay mode and the fallbacks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from pybuild.diff import open_layer
from pybuild.layout import ImageStore, Layout, check_layout, load_image
from tests.fixtures.cli import PYBUILD, Pybuild, assert_fails, build_as, context
from tests.fixtures.locks import wait_for, waiters
from tests.fixtures.tools import validate_layout
from tests.fixtures.trees import all_bytes

pytestmark = pytest.mark.usefixtures("store_checked")


def file_in(store: Path, tag: str, path: str) -> str:
    """What the image's layers (top first) hold at ``path``."""
    layout = ImageStore.at(store)
    image = load_image(layout, layout.lookup(tag)[1])
    for layer in reversed(image.layers):
        with (
            layout.blobs.open(layer.digest, layer.size) as blob,
            tarfile.open(fileobj=open_layer(blob, layer.media_type), mode="r|") as tar,
        ):
            for member in tar:
                if member.name == path.lstrip("/") and member.isreg():
                    data = tar.extractfile(member)
                    assert data is not None
                    return data.read().decode()
    raise AssertionError(f"{path} is in no layer of {tag}")


def checked(store: Path, tag: str, scratch: Path) -> None:
    """pybuild's check of the store, and oci-image-tool on a copy of the image in an OCI layout."""
    assert check_layout(Layout.open(store)) == []
    pb = Pybuild(store, scratch)
    out = scratch / f"oci-{uuid.uuid4().hex[:8]}"
    pb("copy", tag, f"oci:{out}:latest")
    validate_layout(out, "latest")


# --- bind and cache mounts from a stage ----------------------------------------------------------
FROM_STAGE = """FROM busybox AS src
ARG V=1
RUN mkdir -p /data/sub && echo "hello $V" > /data/sub/f && echo gone > /data/x && rm /data/x && \\
    ln -s sub/f /data/link
FROM busybox
RUN --mount=type=bind,from=src,source=/data,target=/mnt \\
    cat /mnt/sub/f /mnt/link > /seen && ls /mnt > /list && \\
    (touch /mnt/new 2>/dev/null && echo writable || echo read-only) > /ro
RUN --mount=type=bind,from=src,target=/whole,rw \\
    echo scribble > /whole/data/sub/f && touch /whole/new && cat /whole/data/sub/f > /rw
RUN --mount=type=bind,from=0,source=/data/sub,target=/again cat /again/f > /again-seen
RUN --mount=type=cache,from=src,source=/data,target=/cache,id=seeded \\
    ls /cache > /cache-list && cat /cache/sub/f > /cache-seen && echo extra > /cache/added
"""


@pytest.mark.parametrize(
    ("rootless", "mode"),
    [(False, "native"), (False, "fuse"), (False, "copy"), (True, "native"), (True, "fuse")],
    ids=["root-native", "root-fuse", "root-copy", "rootless-native", "rootless-fuse"],
)
def test_bind_and_cache_mounts_from_a_stage(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool, mode: str
) -> None:
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", FROM_STAGE)
    tag = f"localhost/from-stage-{mode}"
    env = {"PYBUILD_RUN_MODE": mode}
    store = build_as(pb, ctx, tag, rootless, user_home, env=env).store
    assert file_in(store, tag, "/seen") == "hello 1\nhello 1\n"
    assert file_in(store, tag, "/list") == "link\nsub\n"  # the stage's whiteout hides x
    assert file_in(store, tag, "/ro") == "read-only\n"
    assert file_in(store, tag, "/rw") == "scribble\n"  # the write was seen by the command ...
    assert file_in(store, tag, "/again-seen") == "hello 1\n"
    assert file_in(store, tag, "/cache-list") == "link\nsub\n"
    assert file_in(store, tag, "/cache-seen") == "hello 1\n"
    # ... and no mount point, nor anything written through a mount, reached a layer
    assert [top_names(store, tag, i) for i in (-4, -3, -2, -1)] == [
        ["list", "ro", "seen"],
        ["rw"],
        ["again-seen"],
        ["cache-list", "cache-seen"],
    ]
    # the source stage itself is unchanged by the rw mount
    stage_tag = f"{tag}-src"
    build_as(pb, ctx, stage_tag, rootless, user_home, "--target", "src", env=env)
    assert file_in(store, stage_tag, "/data/sub/f") == "hello 1\n"
    checked(store, tag, where)


def top_names(store: Path, tag: str, index: int) -> list[str]:
    """The sorted names of the layer ``index`` of the image (its members, as paths)."""
    layout = ImageStore.at(store)
    image = load_image(layout, layout.lookup(tag)[1])
    layer = image.layers[index]
    with (
        layout.blobs.open(layer.digest, layer.size) as blob,
        tarfile.open(fileobj=open_layer(blob, layer.media_type), mode="r|") as tar,
    ):
        return sorted(m.name for m in tar)


def cached_steps(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return [lines[i - 1] for i, line in enumerate(lines) if line.startswith("--> Using cache") and i > 0]


def test_mount_from_a_stage_reruns_when_the_stage_changes(pb: Pybuild, tmp_path: Path) -> None:
    text = (
        "FROM busybox AS src\nCOPY data.txt /data.txt\n"
        "FROM busybox\nRUN --mount=type=bind,from=src,target=/src cat /src/data.txt > /copied\n"
        "RUN --mount=type=cache,from=src,target=/c cat /c/data.txt > /from-cache\n"
    )
    ctx = context(tmp_path / "ctx", text, **{"data.txt": "one\n"})
    pb.build(ctx, None, "localhost/rerun")
    assert pb("run", "localhost/rerun", "--", "cat", "/copied", "/from-cache").stdout == "one\none\n"
    again = pb.build(ctx, None, "localhost/rerun").stdout
    assert len(cached_steps(again)) == 3, again  # nothing changed: every step is a hit
    (ctx / "data.txt").write_text("two\n")
    changed = pb.build(ctx, None, "localhost/rerun").stdout
    assert cached_steps(changed) == [], changed  # the stage changed, so both mounting steps rerun
    # a cache seeded from a different tree is a cache of its own, seeded from that tree
    assert pb("run", "localhost/rerun", "--", "cat", "/copied", "/from-cache").stdout == "two\ntwo\n"


def test_mount_from_an_image_and_from_scratch(pb: Pybuild, tmp_path: Path) -> None:
    text = (
        "FROM scratch AS empty\n"
        "FROM busybox\n"
        "RUN --mount=type=bind,from=busybox,source=/bin,target=/other-bin ls /other-bin/busybox > /found\n"
        "RUN --mount=type=bind,from=empty,target=/e ls -A /e | wc -l > /empty-count\n"
    )
    ctx = context(tmp_path / "ctx", text)
    pb.build(ctx, None, "localhost/from-image")
    out = pb("run", "localhost/from-image", "--", "cat", "/found", "/empty-count").stdout
    assert out.split() == ["/other-bin/busybox", "0"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "RUN --mount=type=bind,from=src,source=/nope,target=/m true",
            "source /nope: no such file or directory",
        ),
        (
            "RUN --mount=type=cache,from=src,source=/data/f,target=/m true",
            "source /data/f is not a directory",
        ),
        ("RUN --mount=type=bind,from=src,target=/m,bogus=1 true", "unknown option 'bogus'"),
        ("RUN --mount=type=bind,from=no-such-image-here,target=/m true", "no-such-image-here"),
        ("RUN --mount=type=secret,id=s,mode=999 true", "mode=999: expected an octal mode"),
        ("RUN --mount=type=tmpfs,target=/t,size=lots true", "size=lots: expected a size in bytes"),
        (
            "RUN --mount=type=cache,target=/c,sharing=all true",
            "sharing=all: expected shared, private or locked",
        ),
        ("RUN --mount=type=bind,target=/c,sharing=locked true", "unknown option 'sharing'"),
        ("RUN --mount=type=tmpfs,target=/t,size=-1m true", "size=-1m: expected a size in bytes"),
        ("RUN --mount=type=bind,from=1,target=/m true", "from=1: names stage 1, which is not built before"),
        ("COPY --from=1 /f /f", "COPY --from=1: names stage 1, which is not built before"),
    ],
)
def test_mount_errors_are_one_line(pb: Pybuild, tmp_path: Path, text: str, fragment: str) -> None:
    ctx = context(
        tmp_path / "ctx", f"FROM busybox AS src\nRUN mkdir /data && echo f > /data/f\nFROM busybox\n{text}\n"
    )
    proc = pb.build(ctx, None, "localhost/bad-mount", "--pull", "never", check=False)
    assert_fails(proc, 1, "Containerfile:4: ", fragment)


# --- tmpfs ------------------------------------------------------------------------------------------
TMPFS = """FROM busybox
RUN --mount=type=tmpfs,target=/scratch/t,size=1m \\
    df /scratch/t | tail -n 1 > /df && grep " /scratch/t " /proc/mounts > /mounts && \\
    stat -c %a /scratch/t > /mode && touch /scratch/t/kept && \\
    (dd if=/dev/zero of=/scratch/t/big bs=1024 count=2048 2> /dd-err && echo wrote || echo refused) > /dd
RUN --mount=type=tmpfs,target=/big dd if=/dev/zero of=/big/f bs=1024 count=4096 2>/dev/null && \\
    grep " /big " /proc/mounts > /unlimited
RUN (test -e /scratch/t/kept && echo leaked || echo gone) > /after
"""


@pytest.mark.parametrize(
    ("rootless", "mode"),
    [(False, "native"), (False, "copy"), (True, "native"), (True, "fuse")],
    ids=["root-native", "root-copy", "rootless-native", "rootless-fuse"],
)
def test_tmpfs_mount_is_a_tmpfs_with_its_size(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool, mode: str
) -> None:
    """RUN --mount=type=tmpfs is a real tmpfs in the step's mount namespace: df shows it with the
    size asked for (BuildKit's size=, in bytes with an optional binary unit), writing past it fails
    with ENOSPC, and nothing of it (nor its mount point) reaches the layer."""
    where = user_home if rootless else tmp_path
    ctx = context(where / "ctx", TMPFS)
    tag = f"localhost/tmpfs-{mode}"
    store = build_as(pb, ctx, tag, rootless, user_home, env={"PYBUILD_RUN_MODE": mode}).store
    df = file_in(store, tag, "/df").split()
    assert df[0] == "tmpfs" and df[1] == "1024" and df[-1] == "/scratch/t", df  # 1K-blocks: 1 MiB
    source, target, fstype, options = file_in(store, tag, "/mounts").split()[:4]
    assert (source, target, fstype) == ("tmpfs", "/scratch/t", "tmpfs")
    assert "nosuid" in options.split(",") and "size=1024k" in options.split(","), options
    assert file_in(store, tag, "/mode") == "1777\n"
    assert file_in(store, tag, "/dd") == "refused\n"
    assert "No space left on device" in file_in(store, tag, "/dd-err")
    assert "size=" not in file_in(store, tag, "/unlimited")  # no size=: the kernel's default
    assert file_in(store, tag, "/after") == "gone\n"
    assert top_names(store, tag, -3) == ["dd", "dd-err", "df", "mode", "mounts"]
    assert top_names(store, tag, -2) == ["unlimited"]
    checked(store, tag, where)


@pytest.mark.parametrize(
    ("size", "spec"),
    [
        ("64", 64),
        ("2k", 2048),
        ("1.5K", 1536),
        ("3m", 3 << 20),
        ("1g", 1 << 30),
        ("512KiB", 512 << 10),
        ("0", 0),
    ],
)
def test_tmpfs_size_as_buildkit_reads_it(size: str, spec: int) -> None:
    from pybuild.builder.containerfile import plan
    from pybuild.builder.mounts import parse_mount

    inst = (
        plan(f"FROM busybox\nRUN --mount=type=tmpfs,target=/t,size={size} true\n").stages[0].instructions[0]
    )
    mount = parse_mount(inst, f"type=tmpfs,target=/t,size={size}", {}, "/", Path("/"), lambda _: [])
    assert mount.size == spec and mount.spec == ["tmpfs", "/t", spec]


# --- cache sharing: two builds (processes) at once ------------------------------------------------
# /sync is a cache shared by both builds (BuildKit's default sharing): the log of what each RUN did,
# in order. A RUN waits there until both have started, or until the test releases it.
SHARING = """FROM busybox
ARG N
RUN --mount=type=cache,id=sync-{u},target=/sync \\
    --mount=type=cache,id=cache-{u},target=/c,sharing={sharing} \\
    echo "start $N" >> /sync/log && ls /c > /sync/seen-{u}-$N && touch /c/$N /sync/ready-{u}-$N && \\
    while [ ! -e /sync/release ] && [ "$(grep -c start /sync/log)" -lt 2 ]; do sleep 0.1; done && \\
    rm /c/$N && echo "end $N" >> /sync/log && echo "$N" > /c/last-{u}-$N
"""


def _cache_folder(store: Path, name: str) -> Path:
    """The store's folder of the cache mount whose RUN writes ``name`` into it."""
    found = [p.parent for p in (store / ".pybuild" / "cache-mounts").glob(f"*/{name}")]
    assert len(found) <= 1, found
    return found[0] if found else Path("/nonexistent")


def _two_builds(pb: Pybuild, tmp_path: Path, sharing: str, u: str) -> tuple[list[str], Path]:
    """Build A, and once its RUN runs, B, with the same cache mount (``u`` makes the cache ids and
    file names of a test its own); returns /sync/log's lines and the /sync folder."""
    ctx = context(tmp_path / "ctx", SHARING.format(u=u, sharing=sharing))
    env = {**os.environ, "PYBUILD_STORE": str(pb.store)}

    def start(n: str) -> subprocess.Popen[str]:
        args = [PYBUILD, "build", "--build-arg", f"N={n}", "-t", f"localhost/sharing-{n}", str(ctx)]
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    a = start("a")
    wait_for(lambda: _cache_folder(pb.store, f"ready-{u}-a").is_dir() or a.poll() is not None, "A's RUN")
    assert a.poll() is None, a.communicate()[0]
    sync = _cache_folder(pb.store, f"ready-{u}-a")
    b = start("b")
    try:
        if sharing == "locked":  # B waits for A's lock (the kernel says so), then A is let go
            lock = pb.store / ".pybuild" / "cache-locks"
            wait_for(
                lambda: any(waiters(p) for p in lock.iterdir()) or "start b" in (sync / "log").read_text(),
                "B to wait for the lock, or to start",
            )
        else:  # B runs beside A (private: with a cache of its own), which lets A go on
            wait_for(lambda: "start b" in (sync / "log").read_text() or b.poll() is not None, "B's RUN")
        (sync / "release").touch()
    finally:
        outs = [a.communicate(timeout=300)[0], b.communicate(timeout=300)[0]]
    assert a.returncode == 0 and b.returncode == 0, outs
    return (sync / "log").read_text().splitlines(), sync


def test_cache_sharing_locked_serialises_two_builds(pb: Pybuild, tmp_path: Path) -> None:
    """sharing=locked: B's RUN starts only once A's is over (the log is never interleaved), and sees
    what A left in the cache."""
    u = uuid.uuid4().hex[:8]
    log, sync = _two_builds(pb, tmp_path, "locked", u)
    assert log == ["start a", "end a", "start b", "end b"]
    assert (sync / f"seen-{u}-a").read_text() == ""
    assert (sync / f"seen-{u}-b").read_text() == f"last-{u}-a\n"  # A's file was there, A's marker gone
    checked(pb.store, "localhost/sharing-b", tmp_path)


def test_cache_sharing_private_gives_separate_contents(pb: Pybuild, tmp_path: Path) -> None:
    """sharing=private: B's RUN, started while A's uses the cache, gets a cache of its own (it does
    not see A's marker); both run at once."""
    u = uuid.uuid4().hex[:8]
    log, sync = _two_builds(pb, tmp_path, "private", u)
    assert log[:2] == ["start a", "start b"] and sorted(log[2:]) == ["end a", "end b"]
    assert (sync / f"seen-{u}-a").read_text() == ""
    assert (sync / f"seen-{u}-b").read_text() == ""  # not A's folder, where A's marker was then
    a_folder = _cache_folder(pb.store, f"last-{u}-a")
    b_folder = _cache_folder(pb.store, f"last-{u}-b")
    assert a_folder.is_dir() and b_folder.is_dir() and a_folder != b_folder
    assert b_folder.name == a_folder.name + "-1"  # kept for the next private RUN that needs one
    checked(pb.store, "localhost/sharing-b", tmp_path)


def test_cache_sharing_shared_is_one_folder_at_once(pb: Pybuild, tmp_path: Path) -> None:
    """sharing=shared (BuildKit's default): both RUNs use the one folder at the same time."""
    u = uuid.uuid4().hex[:8]
    log, sync = _two_builds(pb, tmp_path, "shared", u)
    assert log[:2] == ["start a", "start b"]
    assert (sync / f"seen-{u}-b").read_text() == "a\n"  # A's marker, in the folder A was using
    assert _cache_folder(pb.store, f"last-{u}-a") == _cache_folder(pb.store, f"last-{u}-b")


# --- secrets --------------------------------------------------------------------------------------
SECRETS = """FROM busybox
RUN test -e /run/secrets/absent && echo mounted > /absent || echo absent > /absent
RUN --mount=type=secret,id=absent,env=ABSENT echo "[${ABSENT-unset}]" > /absent-env
RUN --mount=type=secret,id=tok stat -c '%a %u %g' /run/secrets/tok > /default-mode && \\
    sha256sum < /run/secrets/tok > /file-sum
RUN --mount=type=secret,id=tok,target=/etc/tok.conf,mode=0440,uid=1000,gid=1001 \\
    stat -c '%a %u %g' /etc/tok.conf > /custom-mode
RUN mkdir -m 777 /out
USER 1000
RUN --mount=type=secret,id=tok,dst=/home/t,uid=1000 cat /home/t | sha256sum > /out/user-sum
USER 0
RUN --mount=type=secret,id=envtok,env=TOKEN printf %s "$TOKEN" | sha256sum > /env-sum && \\
    test ! -e /run/secrets/envtok && echo no-file > /env-file
RUN --mount=type=secret,id=tok,env=BOTH,target=/run/secrets/tok \\
    printf %s "$BOTH" | sha256sum > /both-sum && \\
    sha256sum < /run/secrets/tok > /both-file-sum
RUN echo "[$TOKEN][$BOTH]" > /later
"""


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_secrets_as_buildkit_defines_them(
    pb: Pybuild, tmp_path: Path, user_home: Path, rootless: bool
) -> None:
    where = user_home if rootless else tmp_path
    value = f"file-secret-{uuid.uuid4()}"
    env_value = f"env-secret-{uuid.uuid4()}"
    ctx = context(where / "ctx", SECRETS)
    (where / "tok.txt").write_text(value)
    os.chmod(where / "tok.txt", 0o644)
    out = where / "out"
    tag = "localhost/secrets"
    args = ["--secret", f"id=tok,src={where / 'tok.txt'}", "--secret", "id=envtok,env=MY_SECRET_VAR"]
    args += ["-t", f"oci:{out}:latest"]
    built = build_as(pb, ctx, tag, rootless, user_home, *args, env={"MY_SECRET_VAR": env_value})
    store = built.store

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest() + "  -\n"

    assert file_in(store, tag, "/absent") == "absent\n"
    assert file_in(store, tag, "/absent-env") == "[unset]\n"
    assert file_in(store, tag, "/default-mode") == "400 0 0\n"
    assert file_in(store, tag, "/file-sum") == sha(value)
    assert file_in(store, tag, "/custom-mode") == "440 1000 1001\n"
    assert file_in(store, tag, "/out/user-sum") == sha(value)
    assert file_in(store, tag, "/env-sum") == sha(env_value)
    assert file_in(store, tag, "/env-file") == "no-file\n"
    assert file_in(store, tag, "/both-sum") == sha(value)
    assert file_in(store, tag, "/both-file-sum") == sha(value)
    assert file_in(store, tag, "/later") == "[][]\n"
    # never in a layer, the config, the history, a cache record, a layer directory, the output
    for root in (store, out):
        for path, data in all_bytes(root):
            assert value.encode() not in data, path
            assert env_value.encode() not in data, path
    assert value not in built.proc.stdout + built.proc.stderr
    assert env_value not in built.proc.stdout + built.proc.stderr
    checked(store, tag, where)
    validate_layout(out, "latest")


def test_secret_errors_never_show_the_value(pb: Pybuild, tmp_path: Path) -> None:
    value = f"secret-{uuid.uuid4()}"
    ctx = context(
        tmp_path / "ctx", 'FROM busybox\nRUN --mount=type=secret,id=s,env=S test -z "$S" || exit 3\n'
    )
    env = {"SECRET_SOURCE": value}
    secret = ["--secret", "id=s,type=env,src=SECRET_SOURCE"]
    failed = pb("build", "-t", "localhost/secret-fails", *secret, str(ctx), env=env, check=False)
    line = assert_fails(failed, 3, "Containerfile:2: ", "exited with status 3")
    assert value not in failed.stdout + failed.stderr, line
    # required and not given: one line naming the id; nothing is tagged
    required = context(
        tmp_path / "req", "FROM busybox\nRUN --mount=type=secret,id=apikey,required=true true\n"
    )
    proc = pb.build(required, None, "localhost/secret-required", check=False)
    assert_fails(proc, 1, "Containerfile:2: ", "secret 'apikey' is required")
    assert "secret-required" not in pb("images").stdout
    # a secret from an unset variable is a bad command line
    proc = pb.build(
        required, None, "localhost/secret-required", "--secret", "id=apikey,env=NOT_SET_ANYWHERE", check=False
    )
    assert_fails(proc, 2, "--secret", "NOT_SET_ANYWHERE is not set")
    # `id=ID` alone takes the variable ID
    pb(
        "build",
        "-t",
        "localhost/secret-required",
        "--secret",
        "id=apikey",
        str(required),
        env={"apikey": value},
    )
    for path, data in all_bytes(pb.store):
        assert value.encode() not in data, path


def test_a_context_bind_never_follows_a_symlink_out_of_the_context(pb: Pybuild, tmp_path: Path) -> None:
    """source= is resolved inside the context: a link to /etc names the context's own etc (absent)."""
    ctx = context(tmp_path / "ctx", "FROM busybox\nRUN --mount=type=bind,source=hostetc,target=/m ls /m\n")
    os.symlink("/etc", ctx / "hostetc")
    proc = pb.build(ctx, None, "localhost/bind-link", check=False)
    assert_fails(proc, 1, "Containerfile:2: ", "source 'hostetc' is not in the build context")
    (ctx / "etc").mkdir()
    (ctx / "etc" / "inside").write_text("inside\n")
    (ctx / "Containerfile").write_text(
        "FROM busybox\nRUN --mount=type=bind,source=hostetc,target=/m ls /m > /seen\n"
    )
    pb.build(ctx, None, "localhost/bind-link")
    assert pb("run", "localhost/bind-link", "--", "cat", "/seen").stdout == "inside\n"
