#!/usr/bin/env bash
# Installs what building and running kata-ts needs on Debian 12: host packages
# (containerd, QEMU, the OCI runtimes, tools the guest builder uses) and npm packages.
# Idempotent: skips apt when everything is present and npm when the lockfile is met.
set -euo pipefail
cd "$(dirname "$0")/.."

# g++, make, python3: node-gyp builds node-pty during npm ci; gcc + libc6-dev: the guest's static terminal helper;
# bc, bison, flex, libelf-dev: the guest kernel build (guest/kernel/build.sh).
# fuse2fs: the hung-volume e2e (a FUSE filesystem the test can freeze); stress-ng: `make test-under-load`;
# curl: the metrics e2e reads a shim's management socket as an operator would (curl --unix-socket).
PACKAGES=(containerd runc crun qemu-system-x86 busybox-static cpio xz-utils kmod iproute2 util-linux containernetworking-plugins e2fsprogs ca-certificates g++ gcc libc6-dev make python3 bc bison flex libelf-dev fuse2fs stress-ng curl)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "deps: host packages present" >&2
fi

# npm ci only when node_modules does not match the lockfile we last installed from.
stamp=node_modules/.kata-ts-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "deps: npm ci" >&2
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
else
  echo "deps: node_modules up to date" >&2
fi
