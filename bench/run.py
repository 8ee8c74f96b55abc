"""pybuild next to its peers, in one run, as the unprivileged user `pybuild-test`.

    sudo .venv/bin/python bench/run.py [--rounds 5] [--only NAME ...]

Sets up the inputs (a debootstrap'd Debian image and a busybox-static image as OCI layouts), then
alternates pybuild and the peer tool on the same input, round after round, and prints for each
benchmark the median wall time of each side, the median of the per-round ratios (pybuild / peer;
below 1 means pybuild is faster) and the peak RSS of each side (the largest process of its tree, from
wait4). Results are figures, never pass/fail: copy them into bench/RESULTS.md with the date and the
machine.

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def alternate(
    rounds: int,
    ours: Callable[[], tuple[float, int]],
    theirs: Callable[[], tuple[float, int]],
    between: Callable[[], None] | None = None,
) -> dict[str, object]:
    """pybuild then the peer, ``rounds`` times, ``between`` (untimed) after each pair."""
    times_ours, times_theirs, ratios, mem_ours, mem_theirs = [], [], [], [], []
    for _ in range(rounds):
        a = ours()
        b = theirs()
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
    r = alternate(
        rounds,
        lambda: b.build_ours(context, tag, cache=False),
        lambda: b.build_theirs(context, tag, cache=False),
        lambda: b.forget(tag),
    )
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

    def between() -> None:
        b.forget(tag)
        floors.append(floor_copy_and_hash(rootfs, work))

    r = alternate(
        rounds,
        lambda: b.build_ours(context, tag, cache=False),
        lambda: b.build_theirs(context, tag, cache=False),
        between,
    )
    floor = statistics.median(floors)
    note += f"; floor (cp -a of /usr, then sha256 of its tar) {floor:.2f}s"
    note += f", pybuild / floor {r['pybuild_s'] / floor:.2f}x"  # type: ignore[operator]
    bench = "build-big: Debian, RUN cp -a /usr /usr2, --no-cache (vs buildah build --layers --no-cache)"
    return {"benchmark": bench, "note": note, **r}


BENCHMARKS = {
    "unpack": bench_unpack,
    "build-small": bench_build_small,
    "build-noop": bench_build_noop,
    "build-big": bench_build_big,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmarks switch to the unprivileged user pybuild-test")
    for tool in ("umoci", "setpriv", "buildah"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run scripts/setup.sh")
    for name in args.only or sorted(BENCHMARKS):
        work = Path(tempfile.mkdtemp(prefix=f"pybuild-bench-{name}-"))
        os.chmod(work, 0o755)
        try:
            r = BENCHMARKS[name](work, args.rounds)
        finally:
            subprocess.run(["rm", "-rf", str(work)], check=False)
        print(
            f"{r['benchmark']}: pybuild {r['pybuild_s']:.2f}s, peer {r['peer_s']:.2f}s, "
            f"ratio {r['ratio']:.2f}x (median of {args.rounds} pairs); "
            f"peak RSS pybuild {r['pybuild_peak_mib']} MiB, peer {r['peer_peak_mib']} MiB"
        )
        if r.get("note"):
            print(f"  {r['note']}")


if __name__ == "__main__":
    main()
