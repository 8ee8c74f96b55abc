"""Issue 17's benchmarks: foreign-platform builds (run by bench/run.py, which see).

- emulated: build-small's build (bench/run.py: busybox, ENV/WORKDIR/COPY/3 RUN/CMD) for linux/arm64
  on this amd64 machine, its RUN steps under qemu-user (binfmt_misc), `--no-cache`, vs `buildah
  build --platform linux/arm64 --layers --no-cache` (goal: <= 0.7x). The base is the two-platform
  busybox of tests/fixtures/multiarch.py: pybuild's store holds the index, buildah's the arm64
  image pulled from it with --platform.
- two-platforms: the same build with `--platform linux/amd64,linux/arm64 --jobs 2 --no-cache` vs the
  two platforms built one after the other (`--platform linux/amd64`, then `--platform linux/arm64`,
  each `--no-cache --jobs 1`, timed as one) (goal: <= 0.65x).
- two-platforms-emulated: the same comparison for a build whose arm64 half is dominated by emulated
  work (500 short-lived busybox processes under qemu): no schedule can beat the slower platform,
  so its ratio is bounded below by arm64 / (amd64 + arm64); a figure, no goal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import run

EMULATION_BOUND = """\
FROM localhost/busybox AS data
RUN mkdir /data && for i in $(seq 1 300); do head -c 65536 /dev/urandom > /data/f$i; done
RUN cp -a /data /data2 && ls -l /data2 | wc -l > /data2/count
FROM localhost/busybox
ARG TARGETARCH
COPY --from=data /data2/count /count
RUN uname -m > /arch && echo $TARGETARCH > /target && mkdir /app \\
 && for i in $(seq 1 200); do head -c 32768 /dev/urandom > /app/blob$i; done
RUN md5sum /app/blob1 /app/blob2 /app/blob3 > /app/sums && cp -a /app /app2
CMD ["cat", "/arch"]
"""


def _setup(work: Path, containerfile: str | None = None) -> tuple[run.Builders, Path]:
    b = run.Builders(work)
    layout = work / "multiarch"
    subprocess.run(
        [sys.executable, "-m", "tests.fixtures.multiarch", str(layout), "latest"],
        cwd=run.PROJECT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    context = run.small_context(work)
    if containerfile is not None:
        (context / "Containerfile").write_text(containerfile)
    b.chown()
    run.as_user([*b.pybuild, "copy", f"oci:{layout}:latest", "localhost/busybox"], work)
    out: list[bytes] = []
    # buildah names what it pulls from oci:PATH after PATH, which must then be a valid name (the
    # work directory's random part may end in "_"): a link of a plain name leads to the layout
    link = Path(tempfile.gettempdir()) / f"pybuild-bench-layout-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(layout)
    try:
        pull = [
            "pull",
            "-q",
            "--platform",
            "linux/arm64",
            "--signature-policy",
            str(b.policy),
            f"oci:{link}:latest",
        ]
        run.as_user([*b.buildah, *pull], work, out)
    finally:
        link.unlink()
    image_id = out[0].decode().split()[-1]
    run.as_user([*b.buildah, "tag", image_id, "localhost/busybox"], work)
    return b, context


def bench_emulated(work: Path, rounds: int) -> dict[str, object]:
    b, context = _setup(work)
    tag = "localhost/emulated"
    arm = ["--platform", "linux/arm64"]

    def ours() -> tuple[float, int]:
        return run.as_user([*b.pybuild, "build", "--no-cache", *arm, "-t", tag, str(context)], work)

    def theirs() -> tuple[float, int]:
        flags = ["--layers", "--no-cache", "--isolation", "chroot", "--signature-policy", str(b.policy)]
        return run.as_user([*b.buildah, "build", *flags, *arm, "-t", tag, str(context)], work)

    ours()  # untimed warm-up of both: base layers extracted, emulator paged in
    theirs()
    b.forget(tag)
    result = run.alternate(rounds, ours, theirs, lambda: b.forget(tag))
    bench = (
        "emulated: build-small for linux/arm64 on amd64, RUN under qemu, --no-cache "
        "(vs buildah --platform linux/arm64)"
    )
    return {"benchmark": bench, "note": b.storage_driver(), **result}


def bench_two_platforms(work: Path, rounds: int, containerfile: str | None = None) -> dict[str, object]:
    b, context = _setup(work, containerfile)
    tag = "localhost/both"

    def forget() -> None:
        run.as_user([*b.pybuild, "rm", tag], work)
        run.as_user([*b.pybuild, "gc"], work)

    def together() -> tuple[float, int]:
        both = ["--platform", "linux/amd64,linux/arm64", "--jobs", "2"]
        return run.as_user([*b.pybuild, "build", "--no-cache", *both, "-t", tag, str(context)], work)

    def one_after_the_other() -> tuple[float, int]:
        walls, peaks = [], []
        for platform in ("linux/amd64", "linux/arm64"):
            one = ["--platform", platform, "--jobs", "1"]
            wall, peak = run.as_user([*b.pybuild, "build", "--no-cache", *one, "-t", tag, str(context)], work)
            walls.append(wall)
            peaks.append(peak)
        return sum(walls), max(peaks)

    together()  # untimed warm-up: base layers of both platforms extracted
    forget()
    result = run.alternate(rounds, together, one_after_the_other, forget)
    what = "build-small" if containerfile is None else "an emulation-bound build"
    bench = (
        f"two-platforms: {what}, linux/amd64,linux/arm64 --jobs 2 (vs the two one after the other, --jobs 1)"
    )
    return {"benchmark": bench, **result}


def bench_two_platforms_emulated(work: Path, rounds: int) -> dict[str, object]:
    return bench_two_platforms(work, rounds, EMULATION_BOUND)


BENCHMARKS = {
    "emulated": bench_emulated,
    "two-platforms": bench_two_platforms,
    "two-platforms-emulated": bench_two_platforms_emulated,
}
