#!/usr/bin/env bash
# Rebuilds the golden image and rewrites expected.json. Run only when a change to pybuild's output is
# intended (say why in the commit): tests/builder/test_golden.py compares every build against it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
pb() { PYBUILD_STORE="$store" "$root/.venv/bin/pybuild" "$@"; }
pb build -q --timestamp 0 --compression none -t localhost/golden "$here/context" >/dev/null
pb inspect localhost/golden --json | "$root/.venv/bin/python" -c '
import json, sys
info = json.load(sys.stdin)
keep = {k: info[k] for k in ("digest", "config", "diff_ids", "layers", "runtime", "history", "created")}
print(json.dumps(keep, indent=2, sort_keys=True))
' > "$here/expected.json"
echo "wrote $here/expected.json"
