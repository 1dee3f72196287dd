#!/bin/sh
# Writes the launcher of one of our Node programs: a shell script that runs <main.js>
# with <node>, the way containerd runs `containerd-shim-kata-v2` from PATH.
# usage: node-launcher.sh <node> <main.js> <launcher to write>
#
# The launcher drops NODE_EXTRA_CA_CERTS. None of our programs makes a TLS connection,
# and Node reads and parses the bundle that variable names on every start, before any
# of our code runs: on the test hosts, whose environment (and so containerd's, and so
# every shim's) sets it, that was 50 of the 80 ms of each shim start, twice on a pod's
# path (its first container's `start` and its app's).
set -eu
[ $# -eq 3 ] || { echo "usage: $0 <node> <main.js> <launcher>" >&2; exit 2; }
node=$1 main=$2 out=$3

# A word the launcher's shell takes literally: single-quoted, each ' as '\''.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
printf '#!/bin/sh\nunset NODE_EXTRA_CA_CERTS\nexec %s %s "$@"\n' "$(quote "$node")" "$(quote "$main")" >"$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
