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
  time  # GNU time: bench/startup.py's peak RSS of small processes
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
# (an editable install made by setuptools' import hook, which costs every start of the venv's python
# ~8 ms of imports, is redone as a plain path entry)
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.stamp ] || [ pyproject.toml -nt .venv/.stamp ] ||
  compgen -G '.venv/lib/python3*/site-packages/__editable___pybuild_*finder.py' >/dev/null; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  # the editable install as a path in a .pth file ("compat"), not setuptools' import hook: the hook
  # imports pathlib and importlib.util on every start (a third of `pybuild --version`); the default
  # mode if this setuptools no longer has that one
  .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat 2>/dev/null ||
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

# Foreign platforms (issue 17): qemu-user-static's emulators registered in binfmt_misc, with the F
# flag its /usr/lib/binfmt.d files carry (the kernel opens the interpreter at registration, so RUN
# steps find it inside the image's root, rootless too). systemd-binfmt does this at boot; without
# systemd (CI containers, this kind of machine) binfmt_misc is mounted and the lines written here.
# Registrations are machine-wide; an existing one is left as it is.
EMULATED=(aarch64 arm ppc64le s390x riscv64)
BINFMT=/proc/sys/fs/binfmt_misc
if [ "$(uname -m)" = x86_64 ]; then
  if [ ! -e "$BINFMT/status" ]; then
    $SUDO mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
      || echo "setup: cannot mount binfmt_misc here: foreign-platform builds will not run" >&2
  fi
  if [ -w "$BINFMT/register" ] || { [ -n "$SUDO" ] && [ -e "$BINFMT/register" ]; }; then
    for arch in "${EMULATED[@]}"; do
      conf=/usr/lib/binfmt.d/qemu-$arch.conf
      if [ -f "$conf" ] && [ ! -e "$BINFMT/qemu-$arch" ]; then
        grep -m1 '^:' "$conf" | $SUDO tee "$BINFMT/register" >/dev/null
      fi
    done
  fi
fi

# tests/fixtures/multiarch.py: the arm64 half of the two-platform test base, from Debian's
# busybox-static:arm64 (unpacked with dpkg-deb; no emulator needed to make it). Fetched with a
# private apt state for arm64, so the machine's dpkg architectures and apt lists stay as they are.
CACHE=/var/tmp/pybuild-test-cache
DEB=$CACHE/busybox-static_arm64.deb
if [ ! -s "$DEB" ]; then
  apt_dir=$(mktemp -d /var/tmp/pybuild-apt-arm64.XXXXXX)
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$CACHE"
  apt_arm64=(apt-get -qq -o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir" -o Dir::State::status=/dev/null
    -o APT::Sandbox::User=root)
  $SUDO "${apt_arm64[@]}" update
  (cd "$apt_dir" && $SUDO "${apt_arm64[@]}" download busybox-static:arm64)
  $SUDO mv "$apt_dir"/busybox-static_*_arm64.deb "$DEB.tmp"
  $SUDO mv "$DEB.tmp" "$DEB"
  $SUDO rm -rf "$apt_dir"
fi
