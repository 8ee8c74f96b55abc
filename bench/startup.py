"""Issue 19's start-up figures, side by side (run by bench/run.py, which see).

- startup: `pybuild --version` (the console script, as pybuild-test) next to `python -c pass` (the
  same venv's interpreter: the floor of any Python command), `buildah --version` and
  `skopeo --version` (Go binaries). A command of ~10-30 ms is below the noise of one run on a shared
  machine, so each side's figure in a round is the median of REPEAT runs, and the rounds alternate
  as every pair does (goal: pybuild --version <= 30 ms). Peak RSS comes from GNU time (`%M`, one
  run each), not from wait4 as elsewhere in bench/: a child forked from run.py starts with run.py's
  own ~20 MiB, which wait4 reports for any command smaller than that.
"""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import run

REPEAT = 20


def repeated(cmd: list[str], work: Path) -> Callable[[], tuple[float, int]]:
    """One side of a pair: ``cmd`` REPEAT times as the test user; (median wall seconds, peak MiB)."""

    def side() -> tuple[float, int]:
        runs = [run.as_user(cmd, work) for _ in range(REPEAT)]
        return statistics.median(t for t, _ in runs), max(m for _, m in runs)

    return side


def bench_startup(work: Path, rounds: int) -> list[dict[str, object]]:
    subprocess.run(["chown", "-R", run.USER, str(work)], check=True)  # buildah wants its own runtime dir
    venv = run.PROJECT / ".venv" / "bin"
    ours = repeated([str(venv / "pybuild"), "--version"], work)
    peers = {
        "python -c pass (the venv's interpreter)": [str(venv / "python"), "-c", "pass"],
        "buildah --version": ["buildah", "--version"],
        "skopeo --version": ["skopeo", "--version"],
    }
    out: list[dict[str, object]] = []
    for label, cmd in peers.items():
        result = run.alternate(rounds, ours, repeated(cmd, work))
        result["pybuild_peak_mib"] = peak_mib([str(venv / "pybuild"), "--version"], work)
        result["peer_peak_mib"] = peak_mib(cmd, work)
        bench = f"startup: pybuild --version vs {label}, median of {REPEAT} runs a round"
        ms = f"pybuild {result['pybuild_s'] * 1000:.1f} ms, peer {result['peer_s'] * 1000:.1f} ms"
        out.append({"benchmark": bench, "note": ms, **result})
    return out


def peak_mib(cmd: list[str], work: Path) -> float:
    """The peak RSS of one run of ``cmd`` as the test user, from GNU time (the process alone)."""
    report = work / "rss"
    run.as_user(["/usr/bin/time", "-f", "%M", "-o", str(report), *cmd], work)
    return round(int(report.read_text().split()[-1]) / 1024, 1)


BENCHMARKS = {"startup": bench_startup}
