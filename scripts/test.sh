#!/usr/bin/env bash
# The whole test suite: setup (idempotent), lint, types, then every test, slow ones included.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/layout -x
set -euo pipefail
# root is needed (apt, and the rootless parts switch to the test user): re-run through sudo if not root
if [ "$(id -u)" != 0 ]; then exec sudo -- "$0" "$@"; fi
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
