#!/usr/bin/env bash
# Fetches vhost-device-vsock (rust-vmm; Debian unstable, it runs on Debian 12) into a
# cache directory, never installing it (scripts/fetch-deb.sh), and prints the path of
# the binary: set it as [hypervisor.qemu] vsock_backend for agent_channel = "hybrid-vsock".
set -euo pipefail
root=$("$(dirname "$0")/fetch-deb.sh" unstable vhost-device-vsock usr/bin/vhost-device-vsock)
echo "$root/usr/bin/vhost-device-vsock"
