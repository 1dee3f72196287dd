#!/usr/bin/env bash
# Installs the shim (compiled JS + protos + production node_modules) under LIBDIR, a
# `containerd-shim-kata-v2` launcher in PREFIX/bin, the guest kernel, rootfs image and
# initrd in GUEST_DIR, and — only if none exists — /etc/kata-ts/configuration.toml.
set -euo pipefail
PREFIX=$1 LIBDIR=$2 GUEST_DIR=$3 ACCEL=$4
cd "$(dirname "$0")/.."
install -d "$LIBDIR" "$PREFIX/bin" "$GUEST_DIR" /etc/kata-ts
rm -rf "$LIBDIR/dist" "$LIBDIR/protos"
cp -r dist protos package.json package-lock.json "$LIBDIR/"
(cd "$LIBDIR" && npm ci --omit=dev --no-audit --no-fund >/dev/null)
for f in vmlinux rootfs.img initrd.img; do install -m 0644 "guest/out/current/$f" "$GUEST_DIR/$f"; done
./scripts/node-launcher.sh "$(command -v node)" "$LIBDIR/dist/shim/main.js" "$PREFIX/bin/containerd-shim-kata-v2"
./scripts/node-launcher.sh "$(command -v node)" "$LIBDIR/dist/cli/main.js" "$PREFIX/bin/kata-ts-runtime"
./scripts/node-launcher.sh "$(command -v node)" "$LIBDIR/dist/monitor/main.js" "$PREFIX/bin/kata-ts-monitor"
if [ ! -e /etc/kata-ts/configuration.toml ] && [ ! -e /etc/kata-ts/config.json ]; then
  cat > /etc/kata-ts/configuration.toml <<CONFIG
# kata-ts configuration; files in /etc/kata-ts/config.d/*.toml override keys of this one.
[hypervisor.qemu]
accelerator = "$ACCEL"
kernel = "$GUEST_DIR/vmlinux"
# Shared by every VM through the host page cache (DAX); or: initrd = "$GUEST_DIR/initrd.img"
image = "$GUEST_DIR/rootfs.img"
CONFIG
  echo "install: wrote /etc/kata-ts/configuration.toml (accelerator $ACCEL)"
fi
echo "install: containerd-shim-kata-v2 -> $PREFIX/bin (runtime io.containerd.kata.v2)"
