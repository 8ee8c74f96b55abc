"""Issue 13's benchmarks, side by side with skopeo and buildah (run by bench/run.py, which see).

- push-again: a second push of an unchanged image whose store layers are uncompressed (the Debian
  image, copied into the store with --compression none, as a build leaves its layers) vs skopeo
  copying the same store (an OCI layout) again, both after one untimed first push to their own
  repository, skopeo keeping its blob-info cache (goal: <= 2x skopeo).
- rebuild-layout: the small busybox build again, warm cache, into an `oci:` layout (`-t oci:DIR:latest`)
  vs `buildah build --layers -t oci:DIR:latest` (goal: <= 0.3x buildah).
(The pull into an empty store is push-pull's second figure; goal <= 0.6x skopeo.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import run


def bench_push_again(work: Path, rounds: int) -> dict[str, object]:
    layout = run.setup_debian(work)
    policy = work / "policy.json"
    policy.write_text(json.dumps(run.POLICY))
    subprocess.run(["chown", "-R", run.USER, str(work)], check=True)
    store = work / "store"
    pybuild = [str(run.PROJECT / ".venv" / "bin" / "pybuild"), "--store", str(store)]
    skopeo = ["skopeo", "--policy", str(policy)]
    run.as_user([*pybuild, "copy", "--compression", "none", f"oci:{layout}:latest", "localhost/deb"], work)
    process, host = run.start_registry(work)
    try:
        ours = [*pybuild, "push", "-q", "localhost/deb", f"docker://{host}/p:latest"]
        source = f"oci:{store}:localhost/deb:latest"
        theirs = [*skopeo, "copy", "-q", "--dest-tls-verify=false", source, f"docker://{host}/s:latest"]
        run.as_user(ours, work)  # the first push of each, untimed: it compresses and uploads
        run.as_user(theirs, work)
        result = run.alternate(rounds, lambda: run.as_user(ours, work), lambda: run.as_user(theirs, work))
    finally:
        run.stop_registry(process)
    bench = "push-again: Debian, uncompressed store layers, second push (vs skopeo copy oci:STORE docker://)"
    return {"benchmark": bench, **result}


def bench_rebuild_layout(work: Path, rounds: int) -> dict[str, object]:
    b = run.Builders(work)
    layout = run.setup_busybox(work)
    context = run.small_context(work)
    b.chown()
    b.add_base(layout, "busybox")
    note = b.storage_driver()
    ours, theirs = f"oci:{work / 'ours'}:latest", f"oci:{work / 'theirs'}:latest"
    b.build_ours(context, ours, cache=True)  # warm both caches and layouts, untimed
    b.build_theirs(context, theirs, cache=True)
    result = run.alternate(
        rounds,
        lambda: b.build_ours(context, ours, cache=True),
        lambda: b.build_theirs(context, theirs, cache=True),
    )
    bench = (
        "rebuild-layout: the small build again, warm cache, into an oci: layout (vs buildah build --layers)"
    )
    return {"benchmark": bench, "note": note, **result}


BENCHMARKS = {"push-again": bench_push_again, "rebuild-layout": bench_rebuild_layout}
