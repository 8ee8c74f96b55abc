"""Helpers of the shared build cache tests: runners (a store each, a context copy each), the
registry's entries as a client sees them, and the checks every test repeats."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pybuild.layout import Layout
from pybuild.remote import Registry
from pybuild.remote.buildcache import TAG_PREFIX
from tests.fixtures.cli import PYBUILD, Pybuild, assert_fails
from tests.fixtures.rootless import TEST_USER, as_test_user

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Runner:
    """One CI runner: a store of its own, a copy of the context at a path of its own, a host
    directory bound into its RUN steps (``-v counter:/counter``), as root or as the test user."""

    name: str
    store: Path
    context: Path
    counter: Path
    pb: Pybuild  # the root tool (a rootless runner still uses it to copy busybox in)
    home: Path | None = None  # the test user's home: a rootless runner

    @property
    def runs(self) -> list[str]:
        """What RUN steps appended to ``/counter/runs``: the RUNs that ran here."""
        path = self.counter / "runs"
        return path.read_text().split() if path.exists() else []

    def build(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`pybuild build -v COUNTER:/counter ARGS CONTEXT` in this runner's store, as its user."""
        cmd = [
            "--store",
            str(self.store),
            "build",
            "-v",
            f"{self.counter}:/counter",
            *args,
            str(self.context),
        ]
        if self.home is None:
            return self.pb(*cmd, check=check, env=env)
        proc = as_test_user([PYBUILD, *cmd], self.home, env)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def inspect(self, ref: str) -> dict[str, object]:
        out = subprocess.run(
            [PYBUILD, "--store", str(self.store), "inspect", ref, "--json"], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def image_id(self, ref: str) -> str:
        return str(self.inspect(ref)["id"])

    def check(self) -> None:
        """`pybuild check` of the runner's store."""
        proc = self.pb("--store", str(self.store), "check", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def make_runner(pb: Pybuild, base: Path, name: str, source: Path, home: Path | None = None) -> Runner:
    """A runner named ``name`` with an empty store holding only busybox, and ``source`` copied to a
    context path of its own (new mtimes: ``shutil.copytree`` without the times)."""
    root = (home or base) / name
    root.mkdir(parents=True)
    context = root / "work" / "checkout"
    shutil.copytree(source, context, copy_function=shutil.copy)
    counter = root / "counter"
    counter.mkdir()
    store = root / "store"
    runner = Runner(name, store, context, counter, pb, home)
    oci = root / "busybox"
    pb("copy", "busybox", f"oci:{oci}:latest")
    if home is None:
        pb("--store", str(store), "copy", "-q", f"oci:{oci}:latest", "busybox")
    else:
        subprocess.run(["chown", "-R", TEST_USER, str(root)], check=True)
        proc = as_test_user(
            [PYBUILD, "--store", str(store), "copy", "-q", f"oci:{oci}:latest", "busybox"], home
        )
        assert proc.returncode == 0, proc.stderr
    return runner


def cached_runs(stdout: str) -> list[str]:
    """The RUN steps that were cache hits (the STEP line before each `--> Using cache`)."""
    lines = stdout.splitlines()
    return [
        lines[i - 1] for i, line in enumerate(lines) if line == "--> Using cache" and "RUN" in lines[i - 1]
    ]


def warnings_of(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]


def registry_tags(host: str, repository: str) -> list[str]:
    client = Registry(host)
    try:
        return sorted(t for t in client.tags(repository, "test") if t.startswith(TAG_PREFIX))
    finally:
        client.close()


def entries_complete(host: str, repository: str) -> int:
    """Every entry tag in the repository names a manifest whose blobs are all there; how many."""
    from pybuild.layout import Manifest
    from pybuild.remote import parse_registry_reference

    client = Registry(host)
    try:
        tags = registry_tags(host, repository)
        for tag in tags:
            _, raw = client.get_manifest(parse_registry_reference(f"{host}/{repository}:{tag}"), "test")
            manifest = Manifest.parse(raw, tag)
            for blob in [manifest.config, *manifest.layers]:
                assert client.has_blob(repository, blob, "test"), (tag, blob.digest)
        return len(tags)
    finally:
        client.close()


def validate_cache_layout(path: Path) -> int:
    """An oci: cache (or entries copied into a layout), checked: pybuild's check of the layout, the
    image-spec schemas of index.json and of every entry manifest, and `oci-image-tool validate
    --type manifest` of each (its `--type image` predates OCI 1.1 and refuses an artifact's config).
    Returns the number of entries."""
    from pybuild.layout import check_layout
    from pybuild.layout.document import load_json
    from tests.fixtures.tools import run, schema_errors

    layout = Layout.open(path)
    assert check_layout(layout) == []
    assert schema_errors("index", json.loads((path / "index.json").read_text())) == []
    entries = [(name, desc) for name, desc in layout.tags() if name.startswith(TAG_PREFIX)]
    for name, desc in entries:
        assert schema_errors("manifest", load_json(layout.blobs.read(desc.digest), name)) == []
        run(["oci-image-tool", "validate", "--type", "manifest", str(layout.blobs.path_of(desc.digest))])
    return len(entries)


__all__ = ["NO_PROXY", "Runner", "assert_fails", "cached_runs", "make_runner", "warnings_of"]
