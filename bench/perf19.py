"""Issue 19's benchmarks: cold builds, the floor, metadata-bound layers, a 1 GiB base, a CI
pipeline and start-up, side by side with buildah (run by bench/run.py, which see).

- cold-small: a small app built into an EMPTY store every round (pybuild: a new `--store`; buildah: a
  new `--root`/`--runroot` and an emptied blob-info cache), its busybox-static base pulled by the
  build from a local registry (the same repository for both): FROM, WORKDIR, COPY of five files, 4
  RUN steps writing ~50 MB (half /dev/urandom, half text), CMD; vs `buildah build --layers` on
  overlay (goal: <= 0.4x).
- cold-big: the Debian image pulled by the build into an empty store, `RUN cp -a /usr /usr2`, then a
  RUN that deletes (whiteouts in the last layer); vs buildah with empty storage (goal: <= 0.35x).
- big-oci-floor: on a warm store (base extracted by an untimed build), `--no-cache -t oci:DIR:latest`
  (and a store tag, removed with the image between rounds) of `RUN cp -a /usr /usr2` on Debian, a
  new DIR and no blob-info cache every round (so the layer is written and compressed every time),
  vs the floor (run.floor_copy_and_hash: `cp -a` of /usr once, then sha256 of a tar of the copy)
  (goal: <= 1.1x); `buildah build --layers --no-cache -t oci:DIR:latest` runs in the same rounds,
  after each pair, for reference.
- small-files: one RUN writing 100,000 small files (100 directories of 1,000), `--no-cache`, vs
  buildah (metadata-bound; no goal in the issue).
- base-1g: run.bench_small_change on a ~1 GiB base (busybox plus ~21,800 generated 48 KiB files)
  and on a ~1 MiB one: `RUN echo x > /etc/one-file`, `--no-cache`, vs buildah; the note gives
  pybuild's 1 GiB / tiny-base ratio (the cost must be the change, not the base).
- ci-pipeline: the whole CI job on an empty runner, each stage timed: pull the Debian base from a
  local registry into an empty store, build the small app on it (bench/run.py's build-small
  Containerfile), push it to the registry (a new repository each round), vs `buildah pull` +
  `buildah build --layers` + `buildah push` with empty storage and blob-info cache. One row per
  stage and one for the total (pybuild extracts the base layers in its build stage, buildah in its
  pull stage: the total is the comparable figure).
- startup: `pybuild --version` vs `buildah --version`, 10 runs each per round (the time and RSS are
  one run's; goal 30 ms); the note gives `python -c pass` as the interpreter's own floor.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import run

Timing = tuple[float, int]

# ~50 MB in 4 RUN steps: two of 12.5 MiB from /dev/urandom, two of ~12.5 MiB of text (a `seq`
# chunk repeated), plus 200 small files and the concatenated COPY sources.
COLD_SMALL_CONTAINERFILE = """\
FROM {host}/busybox:latest
ENV APP=/app
WORKDIR /app
COPY files/ /app/files/
RUN head -c 13107200 /dev/urandom > /app/random1 && cat /app/files/*.txt > /app/all.txt
RUN seq 1 200000 > /tmp/seq && head -c 1048576 /tmp/seq > /tmp/chunk && \\
    for i in $(seq 12); do cat /tmp/chunk; done > /app/text1 && rm /tmp/seq /tmp/chunk
RUN head -c 13107200 /dev/urandom > /app/random2 && mkdir /app/small && \\
    for i in $(seq 200); do echo "file $i" > /app/small/f$i; done
RUN for i in $(seq 12); do cat /app/text1; done | head -c 13107200 > /app/text2 && rm /app/files/f5.txt
CMD ["ls", "/app"]
"""

COLD_BIG_CONTAINERFILE = """\
FROM {host}/debian:latest
RUN cp -a /usr /usr2
RUN rm -rf /usr2/share/doc /usr/share/man
"""

SMALL_FILES_CONTAINERFILE = """\
FROM localhost/busybox
RUN for d in $(seq 100); do mkdir -p /data/$d && cd /data/$d && \\
      for f in $(seq 1000); do echo "$d.$f" > $f; done; done
"""


def goal(ratio: object, limit: float) -> str:
    return f"goal <= {limit}x: {'met' if ratio <= limit else 'missed'}"  # type: ignore[operator]


def fresh_pybuild(b: run.Builders, store: Path) -> list[str]:
    """b's pybuild command (PYBUILD_BENCH_SRC honoured) on another store."""
    return [*b.pybuild[:-1], str(store)]


def fresh_buildah(work: Path, name: str) -> list[str]:
    return [
        "buildah",
        "--root",
        str(work / f"{name}-root"),
        "--runroot",
        str(work / f"{name}-run"),
        "--storage-driver",
        "overlay",
    ]


def buildah_build_flags(b: run.Builders) -> list[str]:
    return ["--layers", "--isolation", "chroot", "--signature-policy", str(b.policy), "--tls-verify=false"]


def push_layout(work: Path, policy: Path, layout: Path, dest: str) -> None:
    """Put an OCI layout's image into the local registry (untimed setup), with skopeo."""
    skopeo = ["skopeo", "--policy", str(policy), "copy", "-q", "--dest-tls-verify=false"]
    run.as_user([*skopeo, f"oci:{layout}:latest", dest], work)


def remove(*paths: Path) -> None:
    for path in paths:
        subprocess.run(["rm", "-rf", str(path)], check=True)


def buildah_blob_cache(work: Path) -> Path:
    return work / ".local" / "share" / "containers" / "cache"


# --- cold builds: empty store every round ------------------------------------------------------


def cold_rounds(
    work: Path, rounds: int, layout: Path, base: str, containerfile: str, context: Path
) -> tuple[dict[str, object], str]:
    b = run.Builders(work)
    b.chown()
    process, host = run.start_registry(work)
    try:
        push_layout(work, b.policy, layout, f"docker://{host}/{base}:latest")
        (context / "Containerfile").write_text(containerfile.format(host=host))
        subprocess.run(["chown", "-R", run.USER, str(context)], check=True)
        note = b.storage_driver()
        index = 0

        def ours() -> Timing:
            store = fresh_pybuild(b, work / f"cold-store{index}")
            return run.as_user([*store, "build", "-q", "-t", "localhost/cold", str(context)], work)

        def theirs() -> Timing:
            buildah = fresh_buildah(work, f"cold-buildah{index}")
            flags = buildah_build_flags(b)
            return run.as_user([*buildah, "build", "-q", *flags, "-t", "localhost/cold", str(context)], work)

        def between() -> None:
            nonlocal index
            remove(
                work / f"cold-store{index}",
                work / f"cold-buildah{index}-root",
                work / f"cold-buildah{index}-run",
                buildah_blob_cache(work),
            )
            index += 1

        remove(buildah_blob_cache(work))  # skopeo's copy into the registry may have filled it
        result = run.alternate(rounds, ours, theirs, between)
    finally:
        run.stop_registry(process)
    return result, f"{note}; base pulled by the build from a local docker-registry, {host}"


def bench_cold_small(work: Path, rounds: int) -> dict[str, object]:
    layout = run.setup_busybox(work)
    context = run.small_context(work)
    result, note = cold_rounds(work, rounds, layout, "busybox", COLD_SMALL_CONTAINERFILE, context)
    bench = (
        "cold-small: busybox from a registry into an empty store, COPY + 4 RUN writing ~50 MB "
        "(vs buildah build --layers, empty storage)"
    )
    return {"benchmark": bench, "note": f"{note}; {goal(result['ratio'], 0.4)}", **result}


def bench_cold_big(work: Path, rounds: int) -> dict[str, object]:
    layout = run.setup_debian(work)
    context = work / "coldbig"
    context.mkdir()
    result, note = cold_rounds(work, rounds, layout, "debian", COLD_BIG_CONTAINERFILE, context)
    bench = (
        "cold-big: Debian from a registry into an empty store, RUN cp -a /usr /usr2, RUN rm -rf "
        "(vs buildah build --layers, empty storage)"
    )
    return {"benchmark": bench, "note": f"{note}; {goal(result['ratio'], 0.35)}", **result}


# --- big-oci-floor: warm store, --no-cache, into an oci: layout, vs the floor -------------------


def debian_rootfs() -> Path:
    out = subprocess.run(
        [sys.executable, "-c", run.DEBIAN_ROOTFS], cwd=run.PROJECT, check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def bench_big_oci_floor(work: Path, rounds: int) -> list[dict[str, object]]:
    b = run.Builders(work)
    layout = run.setup_debian(work)
    rootfs = debian_rootfs()
    context = work / "big"
    context.mkdir()
    (context / "Containerfile").write_text(run.BIG_CONTAINERFILE)
    b.chown()
    b.add_base(layout, "debian")
    note = b.storage_driver()
    b.warm_up(context, "localhost/big")  # extracts the base into pybuild's store (setup)
    ours_dir, theirs_dir = work / "out-pybuild", work / "out-buildah"

    # tagged in the store too, so that `rm` drops the image there between rounds (an oci:-only build
    # leaves it untagged in the store, and the next round would find its layer already present)
    tags = ["-t", f"oci:{ours_dir}:latest", "-t", "localhost/bigoci"]

    def ours() -> Timing:
        return run.as_user([*b.pybuild, "build", "--no-cache", *tags, str(context)], work)

    def floor() -> Timing:
        return run.floor_copy_and_hash(rootfs, work), 0

    times: dict[str, list[float]] = {"ours": [], "floor": [], "buildah": []}
    mem: dict[str, list[int]] = {"ours": [], "buildah": []}
    for i in range(rounds):
        a, f = run.pair(i, ours, floor)
        # buildah into oci: for reference, after each pair (not part of the floor ratio)
        os.sync()
        t = b.build_theirs(context, f"oci:{theirs_dir}:latest", cache=False)
        for side, value in (("ours", a), ("floor", f), ("buildah", t)):
            times[side].append(value[0])
            if side in mem:
                mem[side].append(value[1])
        # nothing made survives the round, the blob-info cache neither: every round compresses anew
        remove(ours_dir, theirs_dir, work / "store" / ".pybuild" / "blobinfo")
        run.as_user([*b.pybuild, "rm", "localhost/bigoci"], work)
        run.as_user([*b.pybuild, "gc"], work)
        run.as_user([*b.buildah, "rmi", "--prune"], work)

    def row(peer: str, text: str, peer_mem: int) -> dict[str, object]:
        ratios = [o / p for o, p in zip(times["ours"], times[peer], strict=True)]
        return {
            "benchmark": text,
            "pybuild_s": statistics.median(times["ours"]),
            "peer_s": statistics.median(times[peer]),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "pybuild_peak_mib": max(mem["ours"]),
            "peer_peak_mib": peer_mem,
        }

    floor_row = row(
        "floor",
        "big-oci-floor: Debian, RUN cp -a /usr /usr2, warm store, --no-cache, -t oci:DIR:latest "
        "(vs the floor: cp -a once, then sha256 of its tar, as root; its RSS not measured: 0)",
        0,
    )
    floor_row["note"] = f"{note}; {goal(floor_row['ratio'], 1.1)}"
    reference = row(
        "buildah",
        "big-oci-floor, reference: the same pybuild build vs buildah build --layers --no-cache "
        "-t oci:DIR:latest (buildah after each pair)",
        max(mem["buildah"]),
    )
    return [floor_row, reference]


# --- small-files: 100,000 small files in one RUN ------------------------------------------------


def bench_small_files(work: Path, rounds: int) -> dict[str, object]:
    result, note = run.busybox_no_cache(work, rounds, "smallfiles", SMALL_FILES_CONTAINERFILE)
    bench = "small-files: busybox, one RUN writing 100,000 small files, --no-cache (vs buildah --no-cache)"
    return {"benchmark": bench, "note": note, **result}


# --- base-1g: the cost of a change on a 1 GiB base ----------------------------------------------


def bench_base_1g(work: Path, rounds: int) -> list[dict[str, object]]:
    return run.bench_small_change(work, rounds, sizes=(1024, 1))


# --- ci-pipeline: pull, build, push on an empty runner ------------------------------------------

STAGES = ("pull", "build", "push")


def bench_ci_pipeline(work: Path, rounds: int) -> list[dict[str, object]]:
    b = run.Builders(work)
    layout = run.setup_debian(work)
    context = run.small_context(work)
    b.chown()
    process, host = run.start_registry(work)
    try:
        base = f"{host}/base:latest"
        push_layout(work, b.policy, layout, f"docker://{base}")
        (context / "Containerfile").write_text(
            run.SMALL_CONTAINERFILE.replace("FROM localhost/busybox", f"FROM {base}")
        )
        subprocess.run(["chown", "-R", run.USER, str(context)], check=True)
        note = b.storage_driver()
        times: dict[str, dict[str, list[float]]] = {s: {"ours": [], "theirs": []} for s in (*STAGES, "total")}
        mem: dict[str, dict[str, list[int]]] = {s: {"ours": [], "theirs": []} for s in (*STAGES, "total")}

        def record(side: str, stages: list[Timing]) -> Timing:
            for stage, (t, m) in zip(STAGES, stages, strict=True):
                times[stage][side].append(t)
                mem[stage][side].append(m)
            total = sum(t for t, _ in stages), max(m for _, m in stages)
            times["total"][side].append(total[0])
            mem["total"][side].append(total[1])
            return total

        def ours(i: int) -> Timing:
            pyb = fresh_pybuild(b, work / f"ci-store{i}")
            return record(
                "ours",
                [
                    run.as_user([*pyb, "pull", "-q", f"docker://{base}"], work),
                    run.as_user([*pyb, "build", "-q", "-t", "localhost/app", str(context)], work),
                    run.as_user([*pyb, "push", "-q", "localhost/app", f"docker://{host}/p{i}:latest"], work),
                ],
            )

        def theirs(i: int) -> Timing:
            buildah = fresh_buildah(work, f"ci-buildah{i}")
            policy = ["--signature-policy", str(b.policy), "--tls-verify=false"]
            flags = buildah_build_flags(b)
            dest = f"docker://{host}/b{i}:latest"
            return record(
                "theirs",
                [
                    run.as_user([*buildah, "pull", "-q", *policy, f"docker://{base}"], work),
                    run.as_user([*buildah, "build", "-q", *flags, "-t", "localhost/app", str(context)], work),
                    run.as_user([*buildah, "push", "-q", *policy, "localhost/app", dest], work),
                ],
            )

        remove(buildah_blob_cache(work))
        for i in range(rounds):
            run.pair(i, partial(ours, i), partial(theirs, i))
            remove(
                work / f"ci-store{i}",
                work / f"ci-buildah{i}-root",
                work / f"ci-buildah{i}-run",
                buildah_blob_cache(work),
            )
    finally:
        run.stop_registry(process)
    results: list[dict[str, object]] = []
    for stage in (*STAGES, "total"):
        ours_t, theirs_t = times[stage]["ours"], times[stage]["theirs"]
        ratios = [o / t for o, t in zip(ours_t, theirs_t, strict=True)]
        results.append(
            {
                "benchmark": f"ci-pipeline {stage}: Debian base from a local registry, build-small's app, "
                "push (vs buildah pull/build/push, empty storage)",
                "pybuild_s": statistics.median(ours_t),
                "peer_s": statistics.median(theirs_t),
                "ratio": statistics.median(ratios),
                "ratios": ratios,
                "pybuild_peak_mib": max(mem[stage]["ours"]),
                "peer_peak_mib": max(mem[stage]["theirs"]),
            }
        )
    results[0]["note"] = f"{note}; registry {host}; pybuild extracts the base in build, buildah in pull"
    return results


# --- startup: pybuild --version ------------------------------------------------------------------


BENCHMARKS: dict[str, Callable[[Path, int], dict[str, object] | list[dict[str, object]]]] = {
    "cold-small": bench_cold_small,
    "cold-big": bench_cold_big,
    "big-oci-floor": bench_big_oci_floor,
    "small-files": bench_small_files,
    "base-1g": bench_base_1g,
    "ci-pipeline": bench_ci_pipeline,
}
