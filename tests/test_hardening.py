"""Hardening under faults, each case a real run of the `pybuild` console script: concurrent builds into
one store and one oci: layout, SIGKILL at random moments, SIGINT during a RUN (as root and rootless), a
full disk during a commit, and fuzzed Containerfile text."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybuild.builder import plan
from pybuild.errors import ContainerfileError
from pybuild.layout import Layout, check_layout
from tests.fixtures.cli import PYBUILD, Pybuild, assert_fails, base_store, context
from tests.fixtures.rootless import TEST_USER, as_test_user
from tests.fixtures.tools import validate_layout


def start(pb: Pybuild, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`pybuild ARGS` in its own session (so its whole process group can be signalled)."""
    return subprocess.Popen(
        [PYBUILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYBUILD_STORE": str(pb.store), **(env or {})},
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"{proc.args!r} did not finish in {timeout}s:\n{out}\n{err}")
    return proc.returncode, out, err


def kill_group(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def mounts_under(path: Path) -> list[str]:
    """The lines of /proc/self/mountinfo that mention ``path``."""
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(path) in line]


def processes_running(*argv: str) -> list[int]:
    """The pids whose command line is exactly ``argv``."""
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline == want:
            found.append(int(entry))
    return found


def validate_tag(path: Path, tag: str) -> None:
    """pybuild's check plus `oci-image-tool validate --type image` of the image tagged ``tag``."""
    validate_layout(path, tag)


def wait_gone(*argv: str, timeout: float = 3) -> list[int]:
    """Wait (a little) for the processes running ``argv`` to end; the pids still there."""
    deadline = time.monotonic() + timeout
    while (pids := processes_running(*argv)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def leftovers(store: Path) -> list[str]:
    """What is left in the store's build and run scratch folders."""
    found = []
    for sub in (".pybuild/build", ".pybuild/run"):
        folder = store / sub
        if folder.is_dir():
            found += [f"{sub}/{name}" for name in os.listdir(folder)]
    return found


def names_in(pb: Pybuild) -> str:
    return pb("images").stdout


def assert_clean(pb: Pybuild) -> None:
    """`pybuild check` finds nothing wrong."""
    proc = pb("check", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


# --- concurrent builds ----------------------------------------------------------------------------
CONCURRENT = {
    "one": "FROM busybox\nRUN echo shared > /shared\nRUN echo one > /mark\n",
    "two": "FROM busybox\nRUN echo shared > /shared\nRUN echo two > /mark\n",
    "three": "FROM busybox\nCOPY f.txt /f.txt\nRUN echo three > /mark\n",
    "four": "FROM busybox\nRUN echo shared > /shared\nENV X=four\nRUN echo $X > /mark\n",
}


@pytest.mark.slow
def test_concurrent_builds_into_one_store(tmp_path: Path) -> None:
    pb = base_store(tmp_path, ("busybox",))
    procs = {}
    for tag, text in CONCURRENT.items():
        ctx = context(tmp_path / f"ctx-{tag}", text, **{"f.txt": "f\n"})
        procs[tag] = start(pb, "build", "-t", tag, str(ctx))
    for tag, proc in procs.items():
        status, out, err = finish(proc)
        assert status == 0, (tag, out, err)
    listing = names_in(pb)
    for tag in CONCURRENT:
        assert tag in listing, listing
        assert pb("run", tag, "--", "cat", "/mark").stdout == f"{tag}\n"
    assert_clean(pb)
    pb.validate_oci("one")


@pytest.mark.slow
def test_concurrent_builds_into_one_oci_layout(tmp_path: Path) -> None:
    pb = base_store(tmp_path, ("busybox",))
    out = tmp_path / "oci"
    tags = ["t1", "t2", "t3"]
    procs = {}
    for i, tag in enumerate(tags):
        text = f"FROM busybox\nRUN echo shared > /shared\nRUN echo {tag} > /mark\nLABEL n={i}\n"
        ctx = context(tmp_path / f"ctx-{tag}", text)
        procs[tag] = start(pb, "build", "-t", f"oci:{out}:{tag}", str(ctx))
    for tag, proc in procs.items():
        status, stdout, err = finish(proc)
        assert status == 0, (tag, stdout, err)
    assert check_layout(Layout.open(out)) == []
    for tag in tags:
        validate_tag(out, tag)
        pb("copy", "-q", f"oci:{out}:{tag}", f"back-{tag}")
        assert pb("run", f"back-{tag}", "--", "cat", "/mark").stdout == f"{tag}\n"
    assert_clean(pb)


# --- SIGKILL at random moments --------------------------------------------------------------------
KILLED = """FROM busybox
ARG NAP=0
RUN sleep $NAP && head -c 20000000 /dev/urandom > /big && echo done > /mark
COPY f.txt /f.txt
"""


@pytest.mark.slow
def test_sigkill_during_builds_leaves_a_valid_store(tmp_path: Path) -> None:
    pb = base_store(tmp_path, ("busybox",))
    ctx = context(tmp_path / "ctx", KILLED, **{"f.txt": "f\n"})
    rng = random.Random(os.environ.get("PYBUILD_SEED", "sigkill"))
    for round_ in range(8):
        nap = f"{rng.uniform(0, 1.5):.2f}"
        proc = start(pb, "build", "--build-arg", f"NAP={nap}", "-t", f"killed{round_}", str(ctx))
        try:
            time.sleep(rng.uniform(0.2, 3.0))
        finally:
            kill_group(proc)
            proc.communicate()
        assert mounts_under(pb.store) == [], f"round {round_}: a mount is left"
        assert wait_gone("sleep", nap) == [], f"round {round_}: the RUN's process is left"
        assert_clean(pb)
        pb("gc")
        assert_clean(pb)
        assert leftovers(pb.store) == [], f"round {round_}: gc left temp dirs"
        assert "busybox" in names_in(pb)
    assert mounts_under(pb.store) == []
    pb.build(ctx, None, "after", "--build-arg", "NAP=0")
    assert pb("run", "after", "--", "cat", "/mark", "/f.txt").stdout == "done\nf\n"
    assert pb("run", "after", "--", "wc", "-c", "/big").stdout.split()[0] == "20000000"
    assert_clean(pb)


# --- SIGINT during a RUN --------------------------------------------------------------------------
def wait_for(argv: tuple[str, ...], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not processes_running(*argv):
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_group(proc)
            out, err = proc.communicate()
            pytest.fail(f"the RUN never started {argv} (exit {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen[str], argv: tuple[str, ...], store: Path) -> tuple[int, str, str]:
    """SIGINT to the build's process group once ``argv`` runs; checks that nothing is left."""
    wait_for(argv, proc)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    began = time.monotonic()
    status, out, err = finish(proc, timeout=30)
    took = time.monotonic() - began
    assert took < 5, f"pybuild took {took:.1f}s to stop after SIGINT"
    assert status != 0, (out, err)
    assert "interrupted" in err, err
    assert "Traceback" not in err, err
    assert wait_gone(*argv, timeout=1) == [], "the container's process is left"
    assert mounts_under(store) == []
    assert leftovers(store) == []
    return status, out, err


def nap_seconds() -> str:
    """A `sleep` argument no other test runs, so its process can be told apart."""
    return str(300 + random.randrange(100000))


@pytest.mark.slow
def test_sigint_during_run_as_root(tmp_path: Path) -> None:
    pb = base_store(tmp_path, ("busybox",))
    nap = nap_seconds()
    ctx = context(tmp_path / "ctx", f"FROM busybox\nRUN echo before > /before\nRUN sleep {nap}\n")
    proc = start(pb, "build", "-t", "interrupted", str(ctx))
    try:
        interrupt(proc, ("sleep", nap), pb.store)
    finally:
        kill_group(proc)
    assert "interrupted" not in names_in(pb)
    assert_clean(pb)
    # the store still builds (and the first step was kept in the cache)
    again = context(tmp_path / "again", "FROM busybox\nRUN echo before > /before\nRUN echo after > /after\n")
    assert "Using cache" in pb.build(again, None, "again").stdout
    assert pb("run", "again", "--", "cat", "/before", "/after").stdout == "before\nafter\n"


@pytest.mark.slow
@pytest.mark.rootless
def test_sigint_during_run_rootless(tmp_path: Path, user_home: Path) -> None:
    nap = nap_seconds()
    ctx = user_home / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f"FROM busybox\nRUN echo before > /before\nRUN sleep {nap}\n")
    store = user_home / "store"
    base = tmp_path / "base"
    from tests.fixtures.images import make_busybox_image

    make_busybox_image(Layout.create(base), "latest")
    subprocess.run(["cp", "-a", str(base), str(user_home / "base")], check=True)
    subprocess.run(["chown", "-R", f"{TEST_USER}:{TEST_USER}", str(user_home)], check=True)
    user_cmd = [PYBUILD, "--store", str(store)]
    copied = as_test_user([*user_cmd, "copy", "-q", f"oci:{user_home / 'base'}:latest", "busybox"], user_home)
    assert copied.returncode == 0, copied.stderr
    env = {"HOME": str(user_home), "XDG_RUNTIME_DIR": str(user_home / "run"), "PATH": "/usr/bin:/bin"}
    clean_env = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    proc = subprocess.Popen(
        ["runuser", "-u", TEST_USER, "--", *clean_env, *user_cmd, "build", "-t", "interrupted", str(ctx)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=user_home,
        start_new_session=True,
    )
    try:
        interrupt(proc, ("sleep", nap), store)
    finally:
        kill_group(proc)
    checked = as_test_user([*user_cmd, "check"], user_home)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = as_test_user([*user_cmd, "images"], user_home)
    assert "interrupted" not in listed.stdout


# --- disk full during a commit ----------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs at ``tmp_path/store`` (64 MiB until the test shrinks it), unmounted afterwards."""
    folder = tmp_path / "store"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize(mount: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size // 1024}k", str(mount)], check=True)


@pytest.mark.slow
def test_disk_full_during_a_commit(tmp_path: Path, small_disk: Path) -> None:
    pb = base_store(tmp_path, ("busybox",))
    assert pb.store == small_disk
    data = 6 << 20
    # room for the RUN's upperdir (the data) and half as much again: the layer blob does not fit
    st = os.statvfs(small_disk)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    resize(small_disk, used + data * 3 // 2)
    ctx = context(tmp_path / "ctx", f"FROM busybox\nRUN head -c {data} /dev/urandom > /big && echo ok\n")
    lines = []
    for _ in range(3):  # where the write fails varies (threads, buffers): try a few times
        proc = pb.build(ctx, None, "big", "--no-cache", check=False)
        lines.append(assert_fails(proc, 1))
        assert "ok" in proc.stdout, "the RUN itself should have fit"
        assert mounts_under(small_disk)[1:] == [], "a mount other than the tmpfs is left"
        assert_clean(pb)
        assert "busybox" in names_in(pb)
        assert "big" not in names_in(pb)
        for name in leftovers(pb.store):
            subprocess.run(["rm", "-rf", str(pb.store / name)], check=True)
        pb("gc")
        assert_clean(pb)
    # with room again, the same build works
    resize(small_disk, 64 << 20)
    pb.build(ctx, None, "big")
    assert pb("run", "big", "--", "wc", "-c", "/big").stdout.split()[0] == str(data)
    assert_clean(pb)
    # the error says why (checked last, so the store checks above run whatever it says)
    for line in lines:
        assert "no space" in line.lower(), lines
        assert str(small_disk) in line or "store" in line, lines


# --- fuzzed Containerfile text ----------------------------------------------------------------------
KEYWORDS = [
    "FROM", "from", "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "ENV", "ARG", "LABEL", "WORKDIR", "USER",
    "EXPOSE", "VOLUME", "SHELL", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD", "MAINTAINER", "RUNN", "#",
    "# syntax=docker/dockerfile:1", "# escape=`", "# escape=\\\\", "# check=skip=all",
]  # fmt: skip
WORDS = [
    "busybox", "scratch", "AS", "as", "base", "--from=base", "--from=0", "--chown=1:1", "--chmod=755",
    "--mount=type=cache,target=/c", "--mount=type=secret,id=s", "--network=none", "--platform=linux/amd64",
    "--link", "--exclude=*.txt", "--parents", "--interval=1s", "--retries=x", "--bogus", "-x", "NONE",
    "a=b", "A=", "=b", "a b", "/", "/dst/", ".", "..", "*", "**/x", "[", "]", '["sh", "-c", "true"]',
    '["a",', "[]", "{}", "'", '"', "'quoted word'", '"double $X"', "\\", "\\\n", "`", "`\n", "<<EOF",
    "<<-EOF", "<<'EOF'", '<<"EOF"', "EOF", "<<", "$X", "${X}", "${X:-d}", "${X:+a}", "${X?err}", "${",
    "${X", "$", "$$", "${X#*}", "${X%%.*}", "${X/a/b}", "\\$X", "0", "1", "-1", "80/tcp", "99999999999",
    "true", "exit 3", "&&", ";", "|", "#", "\t", " ", "\r", "\x00", "\ufeff", "é", "日本", "\U0001f600",
    "\u202e", "\x7f",
]  # fmt: skip


@st.composite
def containerfile_text(draw: st.DrawFn) -> str:
    line = st.tuples(
        st.sampled_from(KEYWORDS) | st.text(max_size=6),
        st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=6),
        st.sampled_from(["", " ", "\\", " \\", "\r"]),
    ).map(lambda t: " ".join([t[0], *t[1]]) + t[2])
    lines = draw(st.lists(line, max_size=12))
    if draw(st.booleans()):
        lines.insert(0, "FROM busybox")
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n", "\r\n"]))


TEMPLATES = [
    "RUN echo {} > /f", "RUN exit 3", "ENV A={}", "ARG X={}", "LABEL l={}", "WORKDIR /w{}", "COPY . /ctx/",
    "RUN <<EOF\necho {}\nEOF", "USER 0", 'CMD ["sh", "{}"]', "EXPOSE 80/tcp", 'RUN test -n "$X{}"',
    'SHELL ["/bin/sh", "-c"]', "ONBUILD RUN true {}", "VOLUME /v{}", "STOPSIGNAL SIGTERM", "HEALTHCHECK NONE",
    'ENTRYPOINT ["sh"]', "RUN --network=none echo {}", "ADD . /add/", "FROM busybox AS s2{}",
    "COPY --from=0 /bin/sh /sh{}", "COPY <<EOF /here\n{}\nEOF", "RUN echo ${{X:-{}}} >> /f",
    "RUN --mount=type=bind,from=0,target=/m{} ls /m",
    "RUN --mount=type=cache,from=0,source=/bin,target=/c{} true",
    "RUN --mount=type=secret,id=s{},required=true true", "RUN --mount=type=secret,id=s,env=E{} true",
    "RUN --mount=type=bind,from={},target=/m true", "COPY --from={} /f /f", "FROM 0 AS s3{}",
    "FROM --platform=$BUILDPLATFORM busybox AS p{}", "ARG TARGETARCH{}", "RUN --mount={} true",
]  # fmt: skip


@st.composite
def buildable_text(draw: st.DrawFn) -> str:
    """Mostly valid instructions after `FROM busybox`, with random words in them."""
    word = st.sampled_from(WORDS) | st.text(max_size=8)
    line = st.builds(lambda t, w: t.format(w), st.sampled_from(TEMPLATES), word)
    return "\n".join(["FROM busybox", *draw(st.lists(line, max_size=6))]) + "\n"


# stages FROM earlier stages (by index or name), copying from and mounting each other, with the
# same file copied back and forth (layers with equal diff_ids stacked twice)
STAGE_LINES = [
    "COPY --from={j} /f /f", "COPY --from=s{j} /f /g", "COPY --from={j} /bin/busybox /b", "RUN echo {i} > /f",
    "COPY f /f", "RUN --mount=type=bind,from={j},target=/m ls /m > /dev/null",
    "RUN --mount=type=bind,from=s{j},source=/f,target=/mf cat /mf",
    "RUN --mount=type=bind,from={j},source=/bin,target=/m,rw touch /m/x",
    "RUN --mount=type=cache,from={j},target=/c true",
    "RUN --mount=type=cache,from={j},source=/nope,target=/c true",
    "RUN --mount=type=tmpfs,target=/t touch /t/x", "RUN --mount=type=secret,id=tok,env=T test -n \"$T\"",
    "RUN --mount=type=bind,target=/ctx cat /ctx/f", "RUN rm -f /f", "ARG TARGETARCH",
    "RUN test -n \"$TARGETARCH\" || exit 4",
]  # fmt: skip
STAGE_BASES = ["busybox", "{j}", "s{j}", "scratch", "--platform=$BUILDPLATFORM busybox"]


@st.composite
def multi_stage_text(draw: st.DrawFn) -> str:
    """Two to four stages, each FROM busybox, scratch or an earlier stage, with COPY --from and RUN
    --mount lines naming earlier stages by index or name."""
    stages = draw(st.integers(min_value=2, max_value=4))
    lines = []
    for i in range(stages):
        base = draw(st.sampled_from(STAGE_BASES if i else STAGE_BASES[:1] + STAGE_BASES[3:]))
        earlier = st.integers(min_value=0, max_value=max(0, i - 1))
        lines.append(f"FROM {base.format(j=draw(earlier))} AS s{i}")
        choices = STAGE_LINES if i else [t for t in STAGE_LINES if "{j}" not in t]  # no self-reference
        for template in draw(st.lists(st.sampled_from(choices), max_size=4)):
            lines.append(template.format(i=i, j=draw(earlier) if i else 0))
    return "\n".join(lines) + "\n"


def check_plan(text: str) -> ContainerfileError | None:
    """`plan` either succeeds or raises a ContainerfileError that names the file and a real line."""
    try:
        plan(text, "Containerfile")
    except ContainerfileError as exc:
        message = str(exc)
        assert message.startswith("Containerfile:"), message
        if exc.line is not None:
            assert message.startswith(f"Containerfile:{exc.line}: "), message
            assert 1 <= exc.line <= max(1, len(text.splitlines()) + 1), (exc.line, text)
        return exc
    return None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(containerfile_text())
def test_fuzzed_containerfile_plan(text: str) -> None:
    check_plan(text)


@settings(max_examples=600, deadline=None)
@given(st.text(max_size=200) | buildable_text() | multi_stage_text())
def test_fuzzed_containerfile_plan_any_text(text: str) -> None:
    check_plan(text)


@pytest.mark.slow
def test_fuzzed_containerfiles_through_the_cli(tmp_path: Path) -> None:
    pb = base_store(tmp_path, ("busybox",))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    seen: list[str] = []
    statuses: list[int] = []

    @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(buildable_text() | containerfile_text())
    def one(text: str) -> None:
        seen.append(text)
        (ctx / "Containerfile").write_text(text)
        proc = pb.build(ctx, None, f"fuzz{len(seen)}", check=False)
        assert "Traceback" not in proc.stderr, (text, proc.stderr)
        statuses.append(proc.returncode)
        if proc.returncode not in (0, 1):
            # a RUN's own status is passed on; then the error says so
            assert "error: " in proc.stderr, (text, proc.stderr)
        if proc.returncode != 0:
            assert_fails(proc, None)

    one()
    assert len(seen) >= 10
    assert 0 in statuses, statuses  # some builds got through
    assert_clean(pb)


@pytest.mark.slow
def test_fuzzed_multi_stage_builds_through_the_cli(tmp_path: Path) -> None:
    """No Containerfile gives a traceback: stages from stages, --from by index and name, mounts."""
    pb = base_store(tmp_path, ("busybox",))
    ctx = context(tmp_path / "ctx", "", f="context file\n")
    seen: list[str] = []
    statuses: list[int] = []
    secret = tmp_path / "tok"
    secret.write_text("fuzz-secret-value")

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(multi_stage_text())
    def one(text: str) -> None:
        seen.append(text)
        (ctx / "Containerfile").write_text(text)
        mode = ("native", "fuse", "copy")[len(seen) % 3]
        proc = pb(
            "build", "--secret", f"id=tok,src={secret}", "-t", f"multi{len(seen)}", str(ctx),
            check=False, env={"PYBUILD_RUN_MODE": mode},
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, (text, proc.stderr)
        statuses.append(proc.returncode)
        if proc.returncode != 0:
            assert_fails(proc, None)
        assert mounts_under(pb.store) == [], text

    one()
    assert len(seen) >= 10
    assert 0 in statuses, statuses
    print(f"multi-stage fuzz: {len(seen)} builds, exit statuses {sorted(statuses)}")
    assert leftovers(pb.store) == []
    assert_clean(pb)


def test_error_with_line_separators_stays_one_line(tmp_path: Path) -> None:
    """A Containerfile's control characters (here NEL, U+0085) are escaped in the one `error:` line."""
    pb = Pybuild(tmp_path / "store", tmp_path)
    ctx = context(tmp_path / "ctx", "# escape=` \x85\u2028\x1b[2J\nFROM busybox\n")
    proc = pb.build(ctx, None, "x", check=False)
    line = assert_fails(proc, 1, "Containerfile:1:", "invalid escape token")
    assert "\\x85" in line and "\\u2028" in line and "\\x1b" in line, line
