"""Issue 14's COPY --from benchmarks, side by side with buildah (run by bench/run.py, which see).

- copy-from: `COPY --from=STAGE /usr /usr2`, the stage being the Debian image (~120-150 MB of /usr),
  onto busybox, `--no-cache`, vs `buildah build --layers --no-cache`.
- copy-from-hit: the same build again with a warm cache: the step is a cache hit on both sides.

PYBUILD_BENCH_SRC=DIR runs pybuild from another source tree for every build benchmark (e.g. `git
archive main pybuild` unpacked there, compiled, readable by pybuild-test): a before/after figure on
the same machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import run

COPY_FROM_CONTAINERFILE = """\
FROM localhost/debian AS src
FROM localhost/busybox
COPY --from=src /usr /usr2
"""


def _builders(work: Path) -> tuple[run.Builders, Path, str]:
    b = run.Builders(work)
    source = os.environ.get("PYBUILD_BENCH_SRC")
    debian = run.setup_debian(work)
    busybox = run.setup_busybox(work)
    context = work / "copyfrom"
    context.mkdir()
    (context / "Containerfile").write_text(COPY_FROM_CONTAINERFILE)
    b.chown()
    b.add_base(debian, "debian")
    b.add_base(busybox, "busybox")
    note = b.storage_driver() + (f"; pybuild from {source}" if source else "")
    return b, context, note


def bench_copy_from(work: Path, rounds: int) -> dict[str, object]:
    b, context, note = _builders(work)
    tag = "localhost/copyfrom"
    b.warm_up(context, tag)
    result = b.no_cache_rounds(rounds, context, tag)
    bench = (
        "copy-from: COPY --from=STAGE /usr /usr2 (Debian), --no-cache (vs buildah build --layers --no-cache)"
    )
    return {"benchmark": bench, "note": note, **result}


def bench_copy_from_hit(work: Path, rounds: int) -> dict[str, object]:
    b, context, note = _builders(work)
    tag = "localhost/copyfrom"
    b.build_ours(context, tag, cache=True)  # warm both caches, untimed
    b.build_theirs(context, tag, cache=True)
    result = run.alternate(
        rounds,
        lambda: b.build_ours(context, tag, cache=True),
        lambda: b.build_theirs(context, tag, cache=True),
    )
    bench = "copy-from-hit: the same build again, warm cache (vs buildah build --layers)"
    return {"benchmark": bench, "note": note, **result}


BENCHMARKS = {"copy-from": bench_copy_from, "copy-from-hit": bench_copy_from_hit}
