"""pybuild next to its peers, in one run, as the unprivileged user `pybuild-test`.

    .venv/bin/python bench/run.py [--rounds 5]   # as root [--only NAME ...]

Sets up the inputs (a debootstrap'd Debian image, a busybox-static image and generated bases as OCI
layouts; a local registry for push-pull), then alternates pybuild and the peer tool on the same
input, round after round, and prints for each benchmark the median wall time of each side, the
median of the per-round ratios (pybuild / peer; below 1 means pybuild is faster) and the peak RSS
of each side (the largest process of its tree, from wait4). Results are figures, never pass/fail:
copy them into bench/RESULTS.md with the date and the machine.

Benchmarks so far:
- unpack: `pybuild unpack` vs `umoci unpack --rootless` of the Debian image (goal: <= 0.7x).
- build-small: `pybuild build --no-cache` vs `buildah build --layers --no-cache --isolation chroot`
  (rootless, overlay storage) of a small build on busybox-static: FROM, ENV, WORKDIR, COPY of a few
  files, 3 RUN steps, CMD; an empty cache every round (goal: <= 0.7x).
- build-noop: the same build again with a warm cache (layers/cache on for both), a no-op rebuild
  (goal: <= 0.5x).
- build-big: `RUN cp -a /usr /usr2` (~120-150 MB) on the Debian image, no cache (goal: <= 0.5x);
  also prints the floor, the same bytes copied once (`cp -a`) and then read and hashed once (sha256
  of a tar of the copy), and pybuild's ratio to it (goal: <= 1.5x).
- commit-1g: a build on busybox-static whose one RUN writes 1 GiB (512 MiB from /dev/urandom and
  512 MiB of `seq` output), `--no-cache`, vs buildah: pybuild's wall time and peak RSS (goal:
  peak RSS <= 100 MiB).
- small-change: `RUN echo x > /etc/one-file`, `--no-cache`, on a ~200 MiB base (busybox plus ~4,300
  generated files of 48 KiB) vs buildah, and the same on a ~20 MiB base (~430 such files); prints
  both pybuild times (goal: time does not grow with the base, the 200 MiB build within ~1.2x of the
  20 MiB one).
- push-pull: through a local `docker-registry` on 127.0.0.1 (filesystem storage in the work
  directory, stopped at the end whatever happens): `pybuild push oci:LAYOUT:latest docker://...` vs
  `skopeo copy oci:LAYOUT:latest docker://...` of the Debian image, each round to new repositories
  (so neither side finds blobs already in its repository; skopeo's blob-info cache is emptied between
  rounds so it cannot mount them from earlier repositories), then `pybuild pull` into an empty store
  vs `skopeo copy docker://... oci:DIR:latest` into an empty layout, from a repository filled before
  the rounds (no goal in issue 7 beyond the figures; issue 13: the pull <= 0.6x skopeo).
- push-again, rebuild-layout: issue 13's, in bench/transfer.py (see there).
- copy-from, copy-from-hit: issue 14's COPY --from, in bench/copyfrom.py (see there).
- emulated, two-platforms: issue 17's foreign-platform builds, in bench/platforms.py (see there).
- startup: issue 19's `pybuild --version` vs `python -c pass`, buildah and skopeo, in
  bench/startup.py (see there).
- cache-cold, cache-export: issue 16's shared build cache, in bench/cache.py (see there).
- cold-small, cold-big, big-oci-floor, small-files, base-1g, ci-pipeline: issue 19's cold builds,
  floor, metadata-bound layer, 1 GiB base and CI pipeline, in bench/perf19.py.

The base images go into each tool's store before the timed rounds, and one untimed warm-up build
each lets pybuild extract the base layers (buildah does so at pull time); buildah gets its own
storage (driver overlay, checked with `buildah info`) and a signature policy in the work directory.
The built image is removed from both stores between no-cache rounds (untimed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

USER = "pybuild-test"


def as_user(cmd: list[str], cwd: Path, capture: list[bytes] | None = None) -> tuple[float, int]:
    """Run ``cmd`` as the test user; (wall seconds, peak RSS in MiB). Its stdout is appended to
    ``capture`` when given (only for small outputs: it is read after the process ends)."""
    pw = pwd.getpwnam(USER)
    env = {
        "HOME": str(cwd),
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "XDG_RUNTIME_DIR": str(cwd),
    }
    if (cwd / "tmp").is_dir():
        env["TMPDIR"] = str(cwd / "tmp")
    full = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", *cmd]
    out = subprocess.PIPE if capture is not None else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(full, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    if capture is not None and proc.stdout:
        capture.append(proc.stdout.read())
    return wall, usage.ru_maxrss // 1024


SETUP_DEBIAN = """
import sys
from pybuild.layout import Layout
from tests.fixtures.debian import debian_rootfs
from tests.fixtures.images import make_image, tar_tree
make_image(Layout.create(sys.argv[1]), [tar_tree(debian_rootfs(), keep_owners=True)], "latest")
"""


def setup_debian(work: Path) -> Path:
    """The Debian image as an OCI layout, made in a separate process: a child forked from a large
    parent would inherit its peak RSS and spoil the memory figures."""
    layout = work / "debian"
    subprocess.run([sys.executable, "-c", SETUP_DEBIAN, str(layout)], cwd=PROJECT, check=True)
    return layout


def bench_unpack(work: Path, rounds: int) -> dict[str, object]:
    layout = setup_debian(work)
    subprocess.run(["chown", "-R", USER, str(work)], check=True)
    pybuild = str(PROJECT / ".venv" / "bin" / "pybuild")
    ours, theirs, ratios, mem_ours, mem_theirs = [], [], [], [], []
    for i in range(rounds):
        a = as_user(
            [pybuild, "--store", str(work / "store"), "unpack", f"oci:{layout}:latest", f"p{i}"], work
        )
        b = as_user(["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", f"u{i}"], work)
        ours.append(a[0])
        theirs.append(b[0])
        ratios.append(a[0] / b[0])
        mem_ours.append(a[1])
        mem_theirs.append(b[1])
        for d in (f"p{i}", f"u{i}"):
            subprocess.run(["rm", "-rf", str(work / d)], check=True)
    return {
        "benchmark": "unpack Debian minbase (vs umoci unpack --rootless)",
        "pybuild_s": statistics.median(ours),
        "peer_s": statistics.median(theirs),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "pybuild_peak_mib": max(mem_ours),
        "peer_peak_mib": max(mem_theirs),
    }


# --- builds: pybuild build vs buildah build, both rootless as the test user -----------------------

SMALL_CONTAINERFILE = """\
FROM localhost/busybox
ENV APP=/app GREETING=hello
WORKDIR /app
COPY files/ /app/files/
RUN mkdir -p /app/out && cat /app/files/*.txt > /app/out/all.txt
RUN wc -c /app/out/all.txt > /app/out/size && echo "$GREETING" > /app/out/greeting
RUN ls -l /app/files > /app/out/listing && rm /app/files/f5.txt
CMD ["cat", "/app/out/greeting"]
"""

BIG_CONTAINERFILE = """\
FROM localhost/debian
RUN cp -a /usr /usr2
"""

POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


class Builders:
    """pybuild and buildah, each with its own store under ``work``, holding the same base image."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.pybuild = [str(PROJECT / ".venv" / "bin" / "pybuild"), "--store", str(work / "store")]
        source = os.environ.get("PYBUILD_BENCH_SRC")
        if source:  # pybuild from another source tree (git archive of a branch), for before/after
            main = f"import sys; sys.path.insert(0, {source!r}); from pybuild.cli import main; main()"
            self.pybuild = [sys.executable, "-c", main, *self.pybuild[1:]]
        self.buildah = [
            "buildah",
            "--root",
            str(work / "buildah-root"),
            "--runroot",
            str(work / "buildah-run"),
            "--storage-driver",
            "overlay",
        ]
        self.policy = work / "policy.json"
        self.policy.write_text(json.dumps(POLICY))
        (work / "tmp").mkdir()

    def chown(self) -> None:
        subprocess.run(["chown", "-R", USER, str(self.work)], check=True)

    def add_base(self, layout: Path, name: str) -> None:
        """Put the image of the OCI layout ``layout`` into both stores as localhost/NAME.
        (Layout paths must be lower case: buildah names the pulled image after the path.)"""
        as_user([*self.pybuild, "copy", f"oci:{layout}:latest", f"localhost/{name}"], self.work)
        out: list[bytes] = []
        pull = ["pull", "-q", "--signature-policy", str(self.policy), f"oci:{layout}:latest"]
        as_user([*self.buildah, *pull], self.work, out)
        image_id = out[0].decode().split()[-1]
        as_user([*self.buildah, "tag", image_id, f"localhost/{name}"], self.work)

    def storage_driver(self) -> str:
        """What `buildah info` says about its storage; refuses anything but overlay."""
        out: list[bytes] = []
        as_user([*self.buildah, "info"], self.work, out)
        store = json.loads(out[0])["store"]
        driver = store["GraphDriverName"]
        if driver != "overlay":
            raise SystemExit(f"buildah uses the {driver} storage driver, not overlay")
        native = store.get("GraphStatus", {}).get("Native Overlay Diff", "?")
        return f"buildah storage driver: {driver} (native overlay diff: {native})"

    def build_ours(self, context: Path, tag: str, cache: bool) -> tuple[float, int]:
        flags = [] if cache else ["--no-cache"]
        return as_user([*self.pybuild, "build", *flags, "-t", tag, str(context)], self.work)

    def build_theirs(self, context: Path, tag: str, cache: bool) -> tuple[float, int]:
        flags = ["--layers", "--isolation", "chroot", "--signature-policy", str(self.policy)]
        if not cache:
            flags.append("--no-cache")
        return as_user([*self.buildah, "build", *flags, "-t", tag, str(context)], self.work)

    def no_cache_rounds(
        self, rounds: int, context: Path, tag: str, between: Callable[[], None] | None = None
    ) -> dict[str, object]:
        """``alternate`` of `--no-cache` builds of ``context``, the image forgotten after each pair
        (then ``between``), so that every round writes its layers anew."""

        def after() -> None:
            self.forget(tag)
            if between:
                between()

        return alternate(
            rounds,
            lambda: self.build_ours(context, tag, cache=False),
            lambda: self.build_theirs(context, tag, cache=False),
            after,
        )

    def warm_up(self, context: Path, tag: str) -> None:
        """One untimed build each, then forget the result: pybuild extracts base layers into its
        store on first use (buildah does it at pull time), which is setup, not the build."""
        self.build_ours(context, tag, cache=False)
        self.build_theirs(context, tag, cache=False)
        self.forget(tag)

    def forget(self, tag: str) -> None:
        """Drop a built image from both stores (untimed), so that the next round writes its layers
        again rather than finding them present."""
        as_user([*self.pybuild, "rm", tag], self.work)
        as_user([*self.pybuild, "gc"], self.work)
        as_user([*self.buildah, "rmi", tag], self.work)
        as_user([*self.buildah, "rmi", "--prune"], self.work)


def small_context(work: Path) -> Path:
    context = work / "small"
    (context / "files").mkdir(parents=True)
    for i in range(1, 6):
        line = f"file {i}: " + "abcdefghijklmnopqrstuvwxyz0123456789" * 2 + "\n"
        (context / "files" / f"f{i}.txt").write_text(line * (200 * i))
    (context / "Containerfile").write_text(SMALL_CONTAINERFILE)
    return context


def setup_busybox(work: Path) -> Path:
    layout = work / "busybox"
    subprocess.run(
        [sys.executable, "-m", "tests.fixtures.images", str(layout), "latest"],
        cwd=PROJECT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return layout


def pair(
    round_: int, ours: Callable[[], tuple[float, int]], theirs: Callable[[], tuple[float, int]]
) -> tuple[tuple[float, int], tuple[float, int]]:
    """One timed run of each side: pybuild first in even rounds, the peer first in odd ones, with
    dirty data written back (`sync`, untimed) before each run. Otherwise whoever runs first pays for
    the deletions between rounds, and whoever runs second for the other's unsynced writes (buildah
    does not fsync its layers; pybuild does)."""
    os.sync()
    first = ours() if round_ % 2 == 0 else theirs()
    os.sync()
    second = theirs() if round_ % 2 == 0 else ours()
    return (first, second) if round_ % 2 == 0 else (second, first)


def alternate(
    rounds: int,
    ours: Callable[[], tuple[float, int]],
    theirs: Callable[[], tuple[float, int]],
    between: Callable[[], None] | None = None,
) -> dict[str, object]:
    """pybuild and the peer, ``rounds`` times (see ``pair``), ``between`` (untimed) after each pair."""
    times_ours, times_theirs, ratios, mem_ours, mem_theirs = [], [], [], [], []
    for i in range(rounds):
        a, b = pair(i, ours, theirs)
        times_ours.append(a[0])
        times_theirs.append(b[0])
        ratios.append(a[0] / b[0])
        mem_ours.append(a[1])
        mem_theirs.append(b[1])
        if between:
            between()
    return {
        "pybuild_s": statistics.median(times_ours),
        "peer_s": statistics.median(times_theirs),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "pybuild_peak_mib": max(mem_ours),
        "peer_peak_mib": max(mem_theirs),
    }


def bench_build_small(work: Path, rounds: int) -> dict[str, object]:
    b = Builders(work)
    layout = setup_busybox(work)
    context = small_context(work)
    b.chown()
    b.add_base(layout, "busybox")
    note = b.storage_driver()
    tag = "localhost/small"
    b.warm_up(context, tag)
    r = b.no_cache_rounds(rounds, context, tag)
    bench = "build-small: busybox, 8 steps, --no-cache (vs buildah build --layers --no-cache)"
    return {"benchmark": bench, "note": note, **r}


def bench_build_noop(work: Path, rounds: int) -> dict[str, object]:
    b = Builders(work)
    layout = setup_busybox(work)
    context = small_context(work)
    b.chown()
    b.add_base(layout, "busybox")
    note = b.storage_driver()
    tag = "localhost/small"
    b.build_ours(context, tag, cache=True)  # warm both caches, untimed
    b.build_theirs(context, tag, cache=True)
    r = alternate(
        rounds,
        lambda: b.build_ours(context, tag, cache=True),
        lambda: b.build_theirs(context, tag, cache=True),
    )
    bench = "build-noop: the same build again, warm cache (vs buildah build --layers)"
    return {"benchmark": bench, "note": note, **r}


DEBIAN_ROOTFS = """
from tests.fixtures.debian import debian_rootfs
print(debian_rootfs())
"""


def floor_copy_and_hash(rootfs: Path, work: Path) -> float:
    """Seconds to copy rootfs/usr once (`cp -a`, as root) and then read and hash a tar of the copy
    once (sha256 in this process): the least a build of `RUN cp -a /usr /usr2` has to do."""
    dest = work / "floor"
    dest.mkdir()
    start = time.perf_counter()
    subprocess.run(["cp", "-a", str(rootfs / "usr"), str(dest / "usr2")], check=True)
    digest = hashlib.sha256()
    with subprocess.Popen(["tar", "-C", str(dest), "-cf", "-", "usr2"], stdout=subprocess.PIPE) as tar:
        assert tar.stdout
        while chunk := tar.stdout.read(1 << 20):
            digest.update(chunk)
    if tar.returncode != 0:
        raise SystemExit("tar of the floor copy failed")
    wall = time.perf_counter() - start
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    return wall


def bench_build_big(work: Path, rounds: int) -> dict[str, object]:
    b = Builders(work)
    layout = setup_debian(work)
    rootfs = Path(
        subprocess.run(
            [sys.executable, "-c", DEBIAN_ROOTFS], cwd=PROJECT, check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    context = work / "big"
    context.mkdir()
    (context / "Containerfile").write_text(BIG_CONTAINERFILE)
    b.chown()
    b.add_base(layout, "debian")
    note = b.storage_driver()
    tag = "localhost/big"
    b.warm_up(context, tag)
    floors: list[float] = []

    r = b.no_cache_rounds(rounds, context, tag, lambda: floors.append(floor_copy_and_hash(rootfs, work)))
    floor = statistics.median(floors)
    note += f"; floor (cp -a of /usr, then sha256 of its tar) {floor:.2f}s"
    note += f", pybuild / floor {r['pybuild_s'] / floor:.2f}x"  # type: ignore[operator]
    # the best any builder could do against buildah here: below 1 only by what buildah adds
    note += f", floor / buildah {floor / r['peer_s']:.2f}x"  # type: ignore[operator]
    bench = "build-big: Debian, RUN cp -a /usr /usr2, --no-cache (vs buildah build --layers --no-cache)"
    return {"benchmark": bench, "note": note, **r}


# --- commit-1g: a 1 GiB layer ---------------------------------------------------------------------

# 512 MiB from /dev/urandom and 512 MiB of text (a 1 MiB chunk of `seq` output, 512 times): no
# `yes | head`, whose `yes` never ends under pybuild (RUN inherits SIGPIPE ignored; see RESULTS.md).
COMMIT_1G_CONTAINERFILE = """\
FROM localhost/busybox
RUN dd if=/dev/urandom of=/big-random bs=1M count=512 2>/dev/null && \\
    seq 1 200000 > /tmp/seq && head -c 1048576 /tmp/seq > /tmp/chunk && \\
    for i in $(seq 512); do cat /tmp/chunk; done > /big-text && rm /tmp/seq /tmp/chunk
"""


def busybox_no_cache(work: Path, rounds: int, name: str, containerfile: str) -> tuple[dict[str, object], str]:
    """``containerfile`` (FROM localhost/busybox) built `--no-cache` by both, after one warm-up
    build each (see Builders.warm_up); the rounds' figures and the storage note."""
    b = Builders(work)
    layout = setup_busybox(work)
    context = work / name
    context.mkdir()
    (context / "Containerfile").write_text(containerfile)
    b.chown()
    b.add_base(layout, "busybox")
    note = b.storage_driver()
    tag = f"localhost/{name}"
    b.warm_up(context, tag)
    return b.no_cache_rounds(rounds, context, tag), note


def bench_commit_1g(work: Path, rounds: int) -> dict[str, object]:
    r, note = busybox_no_cache(work, rounds, "commit1g", COMMIT_1G_CONTAINERFILE)
    peak = r["pybuild_peak_mib"]
    verdict = "met" if peak <= 100 else "missed"  # type: ignore[operator]
    note += f"; goal pybuild peak RSS <= 100 MiB: {verdict} ({peak} MiB)"
    bench = (
        "commit-1g: busybox, RUN writing 1 GiB (half random), --no-cache "
        "(vs buildah build --layers --no-cache)"
    )
    return {"benchmark": bench, "note": note, **r}


# --- small-change: one new file on a 200 MiB and on a 20 MiB base -------------------------------

SETUP_SIZED = """
import random
import sys
import tempfile
from pathlib import Path
from pybuild.layout import Layout
from tests.fixtures.images import make_image, tar_tree
from tests.fixtures.rootfs import make_busybox_rootfs
layout, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(mib)
with tempfile.TemporaryDirectory() as tmp:
    root = make_busybox_rootfs(Path(tmp) / "busybox")
    data = Path(tmp) / "data"
    for i in range(mib * 1024 // 48):
        d = data / "usr" / "share" / "bench" / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        text = "".join(f"entry {i}.{j}: lorem ipsum dolor sit amet {j * i}\\n" for j in range(600))
        (d / f"f{i:05d}").write_bytes(rng.randbytes(24 * 1024) + text.encode()[: 24 * 1024])
    make_image(Layout.create(layout), [tar_tree(root), tar_tree(data)], "latest")
"""

SMALL_CHANGE_CONTAINERFILE = """\
FROM localhost/{base}
RUN echo x > /etc/one-file
"""


def setup_sized(work: Path, mib: int) -> Path:
    """busybox plus ``mib`` MiB of generated 48 KiB files (half random, half text), as an OCI layout
    made in a separate process (see setup_debian)."""
    layout = work / f"base{mib}"
    subprocess.run([sys.executable, "-c", SETUP_SIZED, str(layout), str(mib)], cwd=PROJECT, check=True)
    return layout


def bench_small_change(
    work: Path, rounds: int, sizes: tuple[int, int] = (200, 20)
) -> list[dict[str, object]]:
    """``RUN echo x > /etc/one-file`` on a base of ``sizes[0]`` MiB and one of ``sizes[1]`` MiB (see
    setup_sized), interleaved in each round; bench/perf19.py's base-1g runs it with (1024, 1)."""
    b = Builders(work)
    contexts: dict[int, Path] = {}
    layouts = {mib: setup_sized(work, mib) for mib in sizes}
    for mib in sizes:
        contexts[mib] = work / f"change{mib}"
        contexts[mib].mkdir()
        (contexts[mib] / "Containerfile").write_text(SMALL_CHANGE_CONTAINERFILE.format(base=f"base{mib}"))
    b.chown()
    for mib in sizes:
        b.add_base(layouts[mib], f"base{mib}")
    note = b.storage_driver()
    for mib in sizes:
        b.warm_up(contexts[mib], f"localhost/change{mib}")
    # The two sizes interleave within each round, so that load drift hits both alike.
    times: dict[int, tuple[list[float], list[float], list[int], list[int]]] = {
        m: ([], [], [], []) for m in sizes
    }
    for i in range(rounds):
        for mib in sizes:
            tag, ctx = f"localhost/change{mib}", contexts[mib]
            ours, theirs, mem_ours, mem_theirs = times[mib]
            a, t = pair(i, partial(b.build_ours, ctx, tag, False), partial(b.build_theirs, ctx, tag, False))
            ours.append(a[0])
            theirs.append(t[0])
            mem_ours.append(a[1])
            mem_theirs.append(t[1])
            b.forget(tag)
    results: list[dict[str, object]] = []
    for mib in sizes:
        ours, theirs, mem_ours, mem_theirs = times[mib]
        results.append(
            {
                "benchmark": f"small-change: RUN echo x > /etc/one-file on a {mib} MiB base, --no-cache "
                "(vs buildah build --layers --no-cache)",
                "pybuild_s": statistics.median(ours),
                "peer_s": statistics.median(theirs),
                "ratio": statistics.median(o / t for o, t in zip(ours, theirs, strict=True)),
                "ratios": [o / t for o, t in zip(ours, theirs, strict=True)],
                "pybuild_peak_mib": max(mem_ours),
                "peer_peak_mib": max(mem_theirs),
            }
        )
    large, tiny = sizes
    big, small = times[large][0], times[tiny][0]
    growths = [x / y for x, y in zip(big, small, strict=True)]
    growth = statistics.median(growths)
    growth_peer = statistics.median(x / y for x, y in zip(times[large][1], times[tiny][1], strict=True))
    results[0]["note"] = note
    results[1]["note"] = (
        f"pybuild {large} MiB base {statistics.median(big):.2f}s vs {tiny} MiB base "
        f"{statistics.median(small):.2f}s: "
        f"{growth:.2f}x (median of per-round ratios {' '.join(f'{g:.2f}' for g in growths)}; "
        f"goal <= ~1.2x: {'met' if growth <= 1.2 else 'missed'}); "
        f"buildah {growth_peer:.2f}x"
    )
    return results


# --- push-pull: through a local registry, vs skopeo copy ---------------------------------------

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's docker-registry on 127.0.0.1, filesystem storage in ``work``; (process, HOST:PORT)."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    port = free_port()
    storage = work / "registry-storage"
    storage.mkdir()
    config = work / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with open(work / "registry.log", "wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            NO_PROXY.open(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            return process, f"127.0.0.1:{port}"
        except urllib.error.HTTPError:
            return process, f"127.0.0.1:{port}"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_registry(process)
                log_text = (work / "registry.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"docker-registry did not start: {log_text}") from None
            time.sleep(0.05)


def stop_registry(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench_push_pull(work: Path, rounds: int) -> list[dict[str, object]]:
    layout = setup_debian(work)
    policy = work / "policy.json"
    policy.write_text(json.dumps(POLICY))
    subprocess.run(["chown", "-R", USER, str(work)], check=True)
    pybuild = [str(PROJECT / ".venv" / "bin" / "pybuild")]
    skopeo = ["skopeo", "--policy", str(policy)]
    # skopeo remembers where it has seen blobs and would mount them from an earlier round's repository
    blob_cache = work / ".local" / "share" / "containers" / "cache"
    process, host = start_registry(work)
    try:
        src = f"docker://{host}/src:latest"
        as_user([*skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", src], work)
        shutil.rmtree(blob_cache, ignore_errors=True)
        index = 0

        def push_ours() -> tuple[float, int]:
            return as_user(
                [
                    *pybuild,
                    "--store",
                    str(work / "store"),
                    "push",
                    "-q",
                    f"oci:{layout}:latest",
                    f"docker://{host}/p{index}:latest",
                ],
                work,
            )

        def push_theirs() -> tuple[float, int]:
            dst = f"docker://{host}/s{index}:latest"
            return as_user(
                [*skopeo, "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest", dst], work
            )

        def pull_ours() -> tuple[float, int]:
            return as_user([*pybuild, "--store", str(work / f"pull-store{index}"), "pull", "-q", src], work)

        def pull_theirs() -> tuple[float, int]:
            dst = f"oci:{work / f'pull-layout{index}'}:latest"
            return as_user([*skopeo, "copy", "-q", "--src-tls-verify=false", src, dst], work)

        def between() -> None:
            nonlocal index
            shutil.rmtree(blob_cache, ignore_errors=True)
            # pybuild's blob-info cache too: it would mount the blobs from the previous round's repository
            subprocess.run(["rm", "-rf", str(work / "store" / ".pybuild" / "blobinfo")], check=True)
            for d in (f"pull-store{index}", f"pull-layout{index}"):
                subprocess.run(["rm", "-rf", str(work / d)], check=True)
            index += 1

        pushed = alternate(rounds, push_ours, push_theirs, between)
        index = 0
        pulled = alternate(rounds, pull_ours, pull_theirs, between)
    finally:
        stop_registry(process)
    return [
        {"benchmark": "push Debian minbase to a local registry (vs skopeo copy oci: docker://)", **pushed},
        {
            "benchmark": "pull Debian minbase from a local registry into an empty store "
            "(vs skopeo copy docker:// oci: into an empty layout)",
            **pulled,
        },
    ]


# a path component that a reference name may hold: buildah names what it pulls from oci:PATH after PATH
NAME_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def work_dir(name: str) -> Path:
    """A new work directory for benchmark ``name`` whose random part buildah accepts in an image
    name (mkdtemp's may start or end with "_", e.g. `...-_6na63yn`, which made `buildah pull
    oci:...` fail now and then)."""
    while True:
        work = Path(tempfile.mkdtemp(prefix=f"pybuild-bench-{name}-"))
        if NAME_COMPONENT.fullmatch(work.name):
            return work
        work.rmdir()


Result = dict[str, object]
BENCHMARKS: dict[str, Callable[[Path, int], Result | list[Result]]] = {
    "unpack": bench_unpack,
    "build-small": bench_build_small,
    "build-noop": bench_build_noop,
    "build-big": bench_build_big,
    "commit-1g": bench_commit_1g,
    "small-change": bench_small_change,
    "push-pull": bench_push_pull,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    import cache  # issue 16's (bench/cache.py), beside this file
    import copyfrom  # issue 14's (bench/copyfrom.py), beside this file
    import perf19  # issue 19's (bench/perf19.py)
    import platforms  # issue 17's (bench/platforms.py)
    import startup  # issue 19's start-up (bench/startup.py)
    import transfer  # issue 13's benchmarks (bench/transfer.py), beside this file

    BENCHMARKS.update(transfer.BENCHMARKS)
    BENCHMARKS.update(copyfrom.BENCHMARKS)
    BENCHMARKS.update(platforms.BENCHMARKS)
    BENCHMARKS.update(startup.BENCHMARKS)
    BENCHMARKS.update(cache.BENCHMARKS)
    BENCHMARKS.update(perf19.BENCHMARKS)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmarks switch to the unprivileged user pybuild-test")
    for tool in ("umoci", "setpriv", "buildah", "skopeo", "docker-registry"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run scripts/setup.sh")
    for name in args.only or sorted(BENCHMARKS):
        work = work_dir(name)
        os.chmod(work, 0o755)
        try:
            out = BENCHMARKS[name](work, args.rounds)
        finally:
            subprocess.run(["rm", "-rf", str(work)], check=False)
        for r in out if isinstance(out, list) else [out]:
            print(
                f"{r['benchmark']}: pybuild {r['pybuild_s']:.2f}s, peer {r['peer_s']:.2f}s, "
                f"ratio {r['ratio']:.2f}x (median of {args.rounds} pairs); "
                f"peak RSS pybuild {r['pybuild_peak_mib']} MiB, peer {r['peer_peak_mib']} MiB"
            )
            if r.get("ratios"):
                print("  per-round ratios: " + " ".join(f"{x:.2f}" for x in r["ratios"]))
            if r.get("note"):
                print(f"  {r['note']}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
