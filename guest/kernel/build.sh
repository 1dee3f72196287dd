#!/usr/bin/env bash
# Builds the kata-ts guest kernel from Debian's linux-source package and our config
# fragments (guest/kernel/fragments/*.conf): `allnoconfig` plus the fragments, every
# driver built in, no modules.
#
#   guest/kernel/build.sh
#
# Output: $CACHE/kernel-built/<hash>/{vmlinux,bzImage,config,fragments.config,version}; the last line on
# stdout is that directory. <hash> covers the source package, the fragments, this
# script and the compiler, so an unchanged build is a cache hit, shared by every clone
# on the machine. Progress goes to stderr; the full make output to <hash>.log beside it.
# Environment:
#   GUEST_CACHE          cache root (default guest/out/cache)
#   KERNEL_SOURCE_PKG    source package (default: what linux-source depends on)
#   KERNEL_JOBS          parallel make jobs (default: nproc)
#   KERNEL_CONFIG_ONLY=1 stop after checking the configuration (prints its path)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${GUEST_CACHE:-$HERE/../out/cache}
JOBS=${KERNEL_JOBS:-$(nproc)}
FORMAT=1 # bump to invalidate every cached kernel

log() { echo "kernel: $*" >&2; }
die() {
	echo "kernel: error: $*" >&2
	exit 1
}
START=$(date +%s)
elapsed() { echo "$(($(date +%s) - START))s"; }

for tool in apt-get apt-cache dpkg-deb tar xz make gcc ld bison flex bc sha256sum flock; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install build-essential bison flex bc libelf-dev xz-utils)"
done
[ -f /usr/include/libelf.h ] || die "libelf headers missing (apt-get install libelf-dev): objtool needs them"
mkdir -p "$CACHE/source-debs" "$CACHE/kernel-built" "$CACHE/kernel-src"

exec 8>"$CACHE/kernel-built/.lock"
if ! flock -n 8; then
	log "waiting for another kernel build (lock $CACHE/kernel-built/.lock)"
	flock 8
fi

# --- source package ---------------------------------------------------------------------
resolve_source() {
	SRC_PKG=${KERNEL_SOURCE_PKG:-$(apt-cache depends linux-source 2>/dev/null | awk '/Depends: linux-source-/ { print $2; exit }')}
	[ -n "$SRC_PKG" ] || return 1
	# 'URL' FILE SIZE SHA256:HEX
	read -r _ SRC_DEB _ SRC_SHA < <(apt-get download --print-uris "$SRC_PKG" 2>/dev/null | head -n1) || return 1
	[ -n "${SRC_DEB:-}" ]
}
if ! resolve_source; then
	log "apt-get update ..."
	apt-get update -qq >&2 || die "apt-get update failed"
	resolve_source || die "cannot resolve ${KERNEL_SOURCE_PKG:-linux-source} with apt"
fi

FRAGMENTS=("$HERE"/fragments/*.conf)
[ -e "${FRAGMENTS[0]}" ] || die "no config fragments in $HERE/fragments"
HASH=$({
	echo "format $FORMAT"
	echo "source $SRC_DEB $SRC_SHA"
	sha256sum "${FRAGMENTS[@]}" "${BASH_SOURCE[0]}" | sed "s|$HERE/||"
	gcc --version | head -n1
	ld --version | head -n1
} | sha256sum | cut -c1-16)
OUT=$CACHE/kernel-built/$HASH
if [ -f "$OUT/vmlinux" ] && [ -f "$OUT/bzImage" ]; then
	log "cache hit $HASH ($(cat "$OUT/version"))"
	echo "$OUT"
	exit 0
fi

if [ ! -s "$CACHE/source-debs/$SRC_DEB" ]; then
	log "downloading $SRC_PKG ($SRC_DEB, $(($(apt-cache show "$SRC_PKG" 2>/dev/null | awk '/^Size:/ { print $2; exit }') >> 20)) MiB) ..."
	(cd "$CACHE/source-debs" && apt-get download -q -o APT::Sandbox::User=root "$SRC_PKG" >&2) || die "apt-get download $SRC_PKG failed"
fi

# The unpacked tree is kept (by .deb name) so that a fragment change only recompiles.
SRC=$CACHE/kernel-src/${SRC_DEB%.deb}
if [ ! -f "$SRC/Makefile" ]; then
	log "unpacking $SRC_DEB ..."
	rm -rf "$SRC.tmp"
	mkdir -p "$SRC.tmp"
	tarball=$(dpkg-deb -c "$CACHE/source-debs/$SRC_DEB" | awk '{ print $6 }' | grep -E '^\./usr/src/linux-source-[^/]+\.tar\.xz$' | head -n1)
	[ -n "$tarball" ] || die "$SRC_DEB holds no usr/src/linux-source-*.tar.xz"
	dpkg-deb --fsys-tarfile "$CACHE/source-debs/$SRC_DEB" | tar -xO "$tarball" | tar -xJ -C "$SRC.tmp" --strip-components=1 ||
		die "cannot unpack $tarball"
	mv "$SRC.tmp" "$SRC"
	# Drop trees of other source versions.
	find "$CACHE/kernel-src" -mindepth 1 -maxdepth 1 ! -path "$SRC" -exec rm -rf {} +
fi

# --- configuration ----------------------------------------------------------------------
OBJ=$CACHE/kernel-built/.obj
mkdir -p "$OBJ"
BUILD_LOG=$CACHE/kernel-built/$HASH.log
cat "${FRAGMENTS[@]}" >"$OBJ/fragments.config"
log "configuring (allnoconfig + ${#FRAGMENTS[@]} fragments) ..."
make -C "$SRC" O="$OBJ" ARCH=x86_64 KCONFIG_ALLCONFIG="$OBJ/fragments.config" allnoconfig >"$BUILD_LOG" 2>&1 ||
	{ tail -n 20 "$BUILD_LOG" >&2; die "allnoconfig failed (log $BUILD_LOG)"; }

# Kconfig silently drops a value whose dependencies are unmet: every line the
# fragments ask for must be in the result, or the build stops and names them.
missing=$(grep -hE '^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$' "${FRAGMENTS[@]}" | while read -r line; do
	case "$line" in
		"# "*) name=${line#\# }; name=${name%% *}; grep -q "^$name=" "$OBJ/.config" && echo "$line (but it is set)" ;;
		*) grep -qxF "$line" "$OBJ/.config" || echo "$line (got: $(grep -E "^(# )?${line%%=*}[= ]" "$OBJ/.config" || echo 'absent: a dependency is missing'))" ;;
	esac
done)
[ -z "$missing" ] || die "the configuration does not honour these fragment lines:
$missing"
if [ "${KERNEL_CONFIG_ONLY:-}" = 1 ]; then
	log "configuration OK"
	echo "$OBJ/.config"
	exit 0
fi

# --- build ------------------------------------------------------------------------------
VERSION=$(make -s -C "$SRC" O="$OBJ" ARCH=x86_64 kernelrelease 2>/dev/null)
log "building $VERSION ($HASH) with $JOBS jobs; this takes a while on few cores (log $BUILD_LOG) ..."
# Progress: a line every 30 s with the number of files compiled so far.
(
	while sleep 30; do
		log "... $(grep -c '^  CC ' "$BUILD_LOG" 2>/dev/null || echo 0) files compiled ($(elapsed))"
	done
) &
TICKER=$!
trap 'kill $TICKER 2>/dev/null || true' EXIT
if ! make -C "$SRC" O="$OBJ" ARCH=x86_64 -j"$JOBS" vmlinux bzImage >>"$BUILD_LOG" 2>&1; then
	tail -n 30 "$BUILD_LOG" >&2
	die "kernel build failed (log $BUILD_LOG)"
fi
kill $TICKER 2>/dev/null || true

mkdir -p "$OUT.tmp"
# The ELF keeps its PVH note (QEMU boots it directly); its symbol table is not needed
# (oopses use the kernel's own kallsyms).
strip --strip-all -o "$OUT.tmp/vmlinux" "$OBJ/vmlinux"
cp "$OBJ/arch/x86/boot/bzImage" "$OUT.tmp/bzImage"
cp "$OBJ/.config" "$OUT.tmp/config"
# What it was configured from, so a check of the built kernel knows it is current
# (guest/kernel/fragments.test.ts).
cp "$OBJ/fragments.config" "$OUT.tmp/fragments.config"
echo "$VERSION" >"$OUT.tmp/version"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
# $OBJ stays: after a fragment change make recompiles only what it affects.
# Keep the two newest kernels.
find "$CACHE/kernel-built" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{16}' -printf '%T@ %p\n' |
	sort -rn | tail -n +3 | cut -d' ' -f2- | while read -r old; do rm -rf "$old" "$old.log"; done
log "built $VERSION: vmlinux $(($(stat -c %s "$OUT/vmlinux") >> 20)) MiB, bzImage $(($(stat -c %s "$OUT/bzImage") >> 20)) MiB in $(elapsed)"
echo "$OUT"
