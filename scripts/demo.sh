#!/usr/bin/env bash
# End to end on a fresh Debian machine: installs what is needed, makes a busybox base image locally
# (no internet), builds examples/hello with `pybuild build` (as root, then rootless as the unprivileged
# user pybuild-test, with the same digest), checks the image and hands it to umoci, skopeo and
# oci-image-tool, runs it with `pybuild run` and, unpacked, with runc, and repacks a change as a new
# layer. Everything goes under ./demo (removed first).
set -euo pipefail
# root is needed (apt, and the rootless parts switch to the test user): re-run through sudo if not root
if [ "$(id -u)" != 0 ]; then exec sudo -- "$0" "$@"; fi
cd "$(dirname "$0")/.."
scripts/setup.sh
DEMO="$PWD/demo"
rm -rf "$DEMO" && mkdir -p "$DEMO"
export PYBUILD_STORE="$DEMO/store"
PB=".venv/bin/pybuild"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "make a busybox-static base image as an OCI layout"
.venv/bin/python -m tests.fixtures.images "$DEMO/base" latest

step "copy it into the store and list it"
$PB copy "oci:$DEMO/base:latest" busybox
$PB images

step "build examples/hello (COPY, a RUN heredoc, USER...) into the store"
$PB build --timestamp 0 -t localhost/hello examples/hello
$PB inspect localhost/hello

step "the same build rootless, as the unprivileged user pybuild-test (subuid ranges from setup.sh)"
ROOTLESS="$DEMO/rootless" && mkdir -p "$ROOTLESS" && cp -r examples/hello "$ROOTLESS/ctx"
chown -R pybuild-test "$ROOTLESS" && chmod 755 "$DEMO"
runuser -u pybuild-test -- env -i HOME="$ROOTLESS" PATH=/usr/bin:/bin:/usr/sbin:/sbin \
  PYBUILD_STORE="$ROOTLESS/store" sh -c "
    $PWD/$PB copy oci:$DEMO/base:latest busybox >/dev/null &&
    $PWD/$PB build -q --timestamp 0 -t localhost/hello $ROOTLESS/ctx >/dev/null &&
    $PWD/$PB inspect localhost/hello --json" | jq -r '"rootless build: " + .digest'
echo "root build:     $($PB inspect localhost/hello --json | jq -r .digest)"

step "check the store, copy the image out, and let other tools read it"
$PB check
$PB copy localhost/hello "oci:$DEMO/out:hello"
oci-image-tool validate --type image --ref name=hello "$DEMO/out"
umoci unpack --image "$DEMO/out:hello" "$DEMO/bundle" >/dev/null
skopeo inspect "oci:$DEMO/out:hello" | jq '{Digest, Layers}'
echo "umoci unpacked the rootfs: $(ls "$DEMO/bundle/rootfs" | tr '\n' ' ')"

step "run it in a rootless container (as root here; as any user with /etc/subuid ranges)"
$PB doctor
$PB run localhost/hello
$PB run localhost/hello -- sh -c 'echo "inside: uid $(id -u), host name $(hostname)"'

step "unpack it with pybuild into a runtime bundle and run it with runc"
$PB unpack localhost/hello "$DEMO/pb-bundle"
runc --root "$DEMO/runc" run --bundle "$DEMO/pb-bundle" "pybuild-demo-$$" </dev/null

step "change the bundle and repack it as a new layer"
echo "added after unpack" > "$DEMO/pb-bundle/rootfs/etc/motd"
$PB repack "$DEMO/pb-bundle" -t localhost/hello:v2
$PB inspect localhost/hello:v2 | sed -n '/^Layers/,$p'
$PB check
