#!/usr/bin/env bash
# Boots the built guest under QEMU (TCG) with a 9p share and a virtio-serial port, and
# has /init run its smoke check (katats.smoke=1) instead of the agent.
#
#   guest/boot-smoke.sh [IMAGE_DIR]      (default guest/out/current; build with build.sh)
#
# SMOKE_KERNEL=vmlinux boots the uncompressed PVH kernel instead of vmlinuz (~2.5 s faster
# under TCG). SMOKE_QEMU_ARGS / SMOKE_APPEND add QEMU arguments / kernel options.
#
# Exits 0 only if the guest printed SMOKE-OK; prints the boot time. The console log goes
# to $SMOKE_LOG if set (default: a temporary file; its tail is printed on failure).
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMG=${1:-$GUEST_DIR/out/current}
TIMEOUT=${SMOKE_TIMEOUT:-120}
QEMU=${QEMU:-qemu-system-x86_64}
KERNEL=${SMOKE_KERNEL:-vmlinuz}
for f in "$KERNEL" initrd.img; do
	[ -f "$IMG/$f" ] || { echo "boot-smoke: $IMG/$f missing: run guest/build.sh first" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/katats-smoke.XXXXXX)
LOG=${SMOKE_LOG:-$TMP/console.log}
SHARED=$TMP/shared
SOCK=$TMP/agent.sock
mkdir -p "$SHARED"
echo "hello from the host" >"$SHARED/hello.txt"
QPID=
cleanup() {
	if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
		kill "$QPID" 2>/dev/null || true
		sleep 1
		kill -9 "$QPID" 2>/dev/null || true
		wait "$QPID" 2>/dev/null || true
	fi
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", e - s }'; }

# Prefixes every console line with the host time (seconds since QEMU start).
stamp() {
	local line
	while IFS= read -r line; do
		printf '[%s] %s\n' "$(secs "$START" "$EPOCHREALTIME")" "${line%$'\r'}"
	done
}
START=$EPOCHREALTIME
"$QEMU" -machine q35 -accel tcg -m "${SMOKE_MEM:-1024}" -smp 1 -nographic -no-reboot \
	-kernel "$IMG/$KERNEL" -initrd "$IMG/initrd.img" \
	-append "console=ttyS0 panic=-1 quiet katats.smoke=1 ${SMOKE_APPEND:-}" \
	-fsdev "local,id=shared,path=$SHARED,security_model=none,multidevs=remap" \
	-device virtio-9p-pci,fsdev=shared,mount_tag=kataShared \
	-device virtio-serial-pci \
	-chardev "socket,id=agent,path=$SOCK,server=on,wait=off" \
	-device virtserialport,chardev=agent,name=agent.channel.0 \
	-device virtio-rng-pci \
	${SMOKE_QEMU_ARGS:-} </dev/null > >(stamp >"$LOG") 2>&1 &
QPID=$!

result=timeout
deadline=$(($(date +%s) + TIMEOUT))
while [ "$(date +%s)" -lt "$deadline" ]; do
	if grep -aq 'SMOKE-OK' "$LOG"; then result=ok; break; fi
	if grep -aq 'SMOKE-FAIL' "$LOG"; then result=fail; break; fi
	if ! kill -0 "$QPID" 2>/dev/null; then result=exited; break; fi
	sleep 0.1
done

if [ "$result" = ok ]; then
	# The guest powers itself off after SMOKE-OK; give it a moment to do so.
	for _ in $(seq 50); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$QPID" 2>/dev/null && echo "boot-smoke: warning: guest did not power off" >&2
	end=$EPOCHREALTIME
fi

grep -a -e '\] smoke:' -e 'katats-init:' -e 'SMOKE-' "$LOG" >&2 || true
if [ "$result" != ok ]; then
	echo "boot-smoke: FAILED ($result after $(secs "$START" "$EPOCHREALTIME")s); console log:" >&2
	tail -n 80 "$LOG" >&2
	exit 1
fi
at() { grep -a -m1 "$1" "$LOG" | sed 's/^\[\([0-9.]*\)\].*/\1/'; }
guest_up=$(grep -ao 'SMOKE-OK uptime=[0-9.]*' "$LOG" | head -n1 | sed 's/.*=//')
echo "boot-smoke: SMOKE-OK ($KERNEL). Seconds after QEMU start: init ready to start the payload" \
	"$(at 'katats-init: smoke check at'), SMOKE-OK $(at 'SMOKE-OK') (guest uptime ${guest_up}s)," \
	"QEMU exited $(secs "$START" "$end")"
