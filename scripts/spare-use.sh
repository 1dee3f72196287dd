#!/bin/sh
# scripts/spare-use.sh LOGDIR: after `make test-template`, how many of the run's pods
# (shim daemons, from the containerd logs KATATS_E2E_KEEP_LOGS kept) ran on a daemon
# that waited as a spare, and how many in the VM such a spare restored; fails when
# none did, since the run then tested no spare VM.
set -eu
dir=${1:?usage: spare-use.sh LOGDIR}
daemons=$(cat "$dir"/*.log 2>/dev/null | grep -c '"msg":"shim daemon ready"' || true)
spares=$(cat "$dir"/*.log 2>/dev/null | grep -c '"msg":"serving the pod as a claimed spare"' || true)
vms=$(cat "$dir"/*.log 2>/dev/null | grep -c '"msg":"VM taken from a spare shim' || true)
echo "spare shims: $spares of $daemons pods' daemons had waited as a spare; $vms pods ran in a VM a spare restored"
[ "$spares" -gt 0 ] || { echo "spare shims were on, but no pod ran on one" >&2; exit 1; }
[ "$vms" -gt 0 ] || { echo "spare VMs were on, but no pod ran in one" >&2; exit 1; }
