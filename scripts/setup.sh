#!/usr/bin/env bash
# Installs everything pybuild and its test suite need on a Debian machine, then checks it.
# Idempotent and quick when nothing is missing. Run as root (CI) or a user with sudo.
#   - Debian packages: the rootless tools and the peers the tests compare against
#   - .venv: pybuild (editable) with its test dependencies, on Debian's python3 so that the
#     unprivileged test user can run it too (a python under /root is not readable by others)
#   - the unprivileged test user `pybuild-test` with /etc/subuid and /etc/subgid ranges
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  python3 python3-venv python3-pip
  uidmap busybox-static fuse-overlayfs iproute2 procps util-linux
  umoci skopeo runc oci-image-tool docker-registry buildah jq apache2-utils debootstrap
  containerd docker.io qemu-user-static
  # tests/ci: outer CI containers (Docker's and podman's seccomp profiles, setcap, patchelf for
  # contrib/bundle.py's self-contained pybuild tree)
  golang-github-docker-docker-dev golang-github-containers-common libcap2-bin patchelf
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  # containerd and docker.io would start their system services from their maintainer scripts: the
  # tests start private daemons instead (tests/fixtures/daemons.py), so a policy-rc.d that denies
  # every start (Debian's documented switch) is in place during the install when none is there.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy" ]; then $SUDO rm -f "$policy"; trap - EXIT; fi
fi

PY=/usr/bin/python3
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.stamp ] || [ pyproject.toml -nt .venv/.stamp ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.stamp
fi
# byte-compile the package: the unprivileged users who run it cannot write __pycache__ here, and
# compiling ~50 modules on every command costs more than the command itself on a cached rebuild
.venv/bin/python -m compileall -q pybuild >/dev/null

# Rootless fuse-overlayfs (pybuild's first fallback) needs /dev/fuse open to users, as Debian desktops
# have it; some container and VM images ship it 0600.
if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
  $SUDO chmod 0666 /dev/fuse
fi

# The unprivileged user the rootless tests run as.
TEST_USER=pybuild-test
if ! id -u "$TEST_USER" >/dev/null 2>&1; then
  $SUDO useradd --create-home --shell /bin/sh "$TEST_USER"
fi
if ! grep -q "^$TEST_USER:" /etc/subuid 2>/dev/null; then
  $SUDO usermod --add-subuids 200000-265535 "$TEST_USER"
fi
if ! grep -q "^$TEST_USER:" /etc/subgid 2>/dev/null; then
  $SUDO usermod --add-subgids 200000-265535 "$TEST_USER"
fi
