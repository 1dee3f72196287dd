#!/usr/bin/env bash
# Fetches Debian's containerd from a newer suite (trixie: 1.7, unstable: 2.x) into a
# cache directory, never over the system's containerd (scripts/fetch-deb.sh). Prints
# the directory holding its `containerd` and `ctr`; put it first on PATH to test
# against that version.
#   scripts/fetch-containerd.sh trixie|unstable   (testing moved on to 2.x in 2026)
set -euo pipefail
suite=${1:?usage: $0 trixie|testing|unstable}
root=$("$(dirname "$0")/fetch-deb.sh" "$suite" containerd usr/bin/containerd)
echo "$root/usr/bin"
