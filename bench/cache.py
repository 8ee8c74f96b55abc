"""Issue 16's benchmarks, the shared build cache (run by bench/run.py, which see), both rootless as
`pybuild-test` against one local `docker-registry` (filesystem storage in the work directory):

- cache-cold: a CI runner that starts with an empty store, against a warm registry cache. The small
  build (run.py's SMALL_CONTAINERFILE, on a busybox base that is itself in the registry, so both
  sides pull it as a cold runner does) is exported once, untimed, by each tool to a repository of
  its own (`pybuild build --cache-to REG/pcache`, `buildah build --layers --cache-to REG/bcache`).
  Each round then builds it into an empty store (pybuild) and empty storage (buildah `--root`),
  `--cache-from` that repository, every step a hit on both sides (checked). Goal: <= 0.5x buildah.
- cache-export: the cost of `--cache-to` on top of a plain build: `pybuild build --no-cache` of the
  small build with `--cache-to REG/export-N` (a new repository each round: every layer is
  compressed and uploaded, the records written) against the same build without it, alternating.
  Goal: the ratio <= 1.10 (10 %).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import run

BASE = "busybox"


def _registry_containerfile(host: str) -> str:
    return run.SMALL_CONTAINERFILE.replace("FROM localhost/busybox", f"FROM {host}/{BASE}")


def _setup(work: Path) -> tuple[run.Builders, Path, str, object]:
    b = run.Builders(work)
    layout = run.setup_busybox(work)
    context = run.small_context(work)
    process, host = run.start_registry(work)
    (context / "Containerfile").write_text(_registry_containerfile(host))
    b.chown()
    # the base goes into the registry: a cold runner pulls it from there
    run.as_user([*b.pybuild, "push", "-q", f"oci:{layout}:latest", f"docker://{host}/{BASE}:latest"], work)
    return b, context, host, process


def bench_cache_cold(work: Path, rounds: int) -> dict[str, object]:
    b, context, host, process = _setup(work)
    try:
        note = b.storage_driver()
        pcache, bcache = f"{host}/pcache", f"{host}/bcache"
        buildah_flags = ["--layers", "--isolation", "chroot", "--signature-policy", str(b.policy)]
        buildah_flags += ["--tls-verify=false"]
        # warm each tool's cache, untimed (from a store of its own, removed afterwards)
        run.as_user(
            [*b.pybuild, "build", "-q", "--cache-to", pcache, "-t", "localhost/warm", str(context)], work
        )
        run.as_user(
            [*b.buildah, "build", *buildah_flags, "--cache-to", bcache, "-t", "warm", str(context)], work
        )
        index = 0

        def ours() -> tuple[float, int]:
            store = work / f"cold-store-{index}"
            cmd = [b.pybuild[0], "--store", str(store), "build", "--cache-from", pcache]
            out: list[bytes] = []
            result = run.as_user([*cmd, "-t", "localhost/small", str(context)], work, out)
            if out[0].count(b"--> Using cache") != 4:  # COPY and the 3 RUNs
                raise SystemExit(f"pybuild's cold build missed its cache:\n{out[0].decode()}")
            return result

        def theirs() -> tuple[float, int]:
            storage = [
                "--root",
                str(work / f"cold-buildah-{index}"),
                "--runroot",
                str(work / f"cold-run-{index}"),
            ]
            cmd = ["buildah", *storage, "--storage-driver", "overlay", "build", *buildah_flags]
            out: list[bytes] = []
            result = run.as_user([*cmd, "--cache-from", bcache, "-t", "small", str(context)], work, out)
            if out[0].count(b"Using cache") < 4:
                raise SystemExit(f"buildah's cold build missed its cache:\n{out[0].decode()}")
            return result

        def between() -> None:
            nonlocal index
            for name in (f"cold-store-{index}", f"cold-buildah-{index}", f"cold-run-{index}"):
                subprocess.run(["rm", "-rf", str(work / name)], check=True)
            index += 1

        result = run.alternate(rounds, ours, theirs, between)
    finally:
        run.stop_registry(process)  # type: ignore[arg-type]
    bench = "cache-cold: small build, empty store, warm registry cache (vs buildah --layers --cache-from)"
    return {"benchmark": bench, "note": note, **result}


def bench_cache_export(work: Path, rounds: int) -> dict[str, object]:
    b, context, host, process = _setup(work)
    try:
        tag = "localhost/small"
        run.as_user([*b.pybuild, "build", "-q", "-t", tag, str(context)], work)  # the base, pulled once
        index = 0

        def exported() -> tuple[float, int]:
            cmd = [*b.pybuild, "build", "-q", "--no-cache", "--cache-to", f"{host}/export-{index}"]
            return run.as_user([*cmd, "-t", tag, str(context)], work)

        def plain() -> tuple[float, int]:
            return run.as_user([*b.pybuild, "build", "-q", "--no-cache", "-t", tag, str(context)], work)

        def between() -> None:
            nonlocal index
            index += 1

        result = run.alternate(rounds, exported, plain, between)
    finally:
        run.stop_registry(process)  # type: ignore[arg-type]
    ratio = result["ratio"]
    note = f"export cost on top of a plain build: {(ratio - 1) * 100:+.0f}% (goal <= +10%)"  # type: ignore[operator]
    bench = "cache-export: small build --no-cache with --cache-to (a new repository each round) vs without"
    return {"benchmark": bench, "note": note, **result}


BENCHMARKS = {"cache-cold": bench_cache_cold, "cache-export": bench_cache_export}
