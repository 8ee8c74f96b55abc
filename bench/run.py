"""pybuild next to its peers, in one run, as the unprivileged user `pybuild-test`.

    sudo .venv/bin/python bench/run.py [--rounds 5] [--only unpack]

Sets up the inputs (a debootstrap'd Debian image as an OCI layout), then alternates pybuild and the
peer tool on the same input, round after round, and prints for each benchmark the median wall time
of each side, the median of the per-round ratios (pybuild / peer; below 1 means pybuild is faster)
and the peak RSS of each side (the largest process of its tree, from wait4). Results are figures,
never pass/fail: copy them into bench/RESULTS.md with the date and the machine.

Benchmarks so far:
- unpack: `pybuild unpack` vs `umoci unpack --rootless` of the Debian image (goal: <= 0.7x).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

USER = "pybuild-test"


def as_user(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Run ``cmd`` as the test user; (wall seconds, peak RSS in MiB)."""
    pw = pwd.getpwnam(USER)
    env = {
        "HOME": str(cwd),
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "XDG_RUNTIME_DIR": str(cwd),
    }
    full = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", *cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(full, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
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


BENCHMARKS = {"unpack": bench_unpack}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmarks switch to the unprivileged user pybuild-test")
    for tool in ("umoci", "setpriv"):
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


if __name__ == "__main__":
    main()
