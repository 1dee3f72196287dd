#!/usr/bin/env bash
# Builds the kata-ts guest from Debian packages (apt-get download, never installed on
# the host): our own kernel (guest/kernel/build.sh: Debian's linux-source with our
# config fragments, everything built in) and one root filesystem with busybox, crun,
# node and the agent, packed twice: as a DAX-ready ext4 image (rootfs.img, mapped by
# every VM from the host page cache) and as an initramfs (initrd.img). Debian's own
# kernel is kept beside ours for comparison (its modules are in the rootfs).
#
#   guest/build.sh [AGENT_DIR]
#
# Output (cached by a hash of every input, so an unchanged second build is instant):
#   guest/out/<hash>/{vmlinux,vmlinuz}                 our kernel (ELF for PVH, bzImage)
#   guest/out/<hash>/{vmlinux,vmlinuz}-debian          Debian's kernel
#   guest/out/<hash>/{rootfs.img,initrd.img,manifest.json}
#   guest/out/current -> <hash>
# Environment:
#   AGENT_DIR         where dist/, protos/, package.json, node_modules/ come from (default:
#                     the repository root; the first argument wins over it). The agent goes
#                     in as one file, dist/agent/main.js bundled by esbuild (a devDependency)
#   GUEST_TEST_AGENT=1  use a placeholder agent when dist/agent/main.js is not built
#   GUEST_OUT         output directory (default guest/out)
#   GUEST_KERNEL_PKG  kernel package (default: what linux-image-amd64 depends on)
#   GUEST_NODE        node binary to embed (default /usr/bin/node)
#   GUEST_NODE_DEPS   extra npm packages to embed (the bundle's require()s are found by scan)
#   GUEST_KEEP        how many built images to keep (default 3)
#   GUEST_CACHE       downloaded/extracted packages (default out/cache); shared by clones
#   AGENT_NODE_FLAGS  node/V8 flags the guest's init starts the agent with (a VM template's
#                     agent gets --no-lazy --no-flush-bytecode --max-semi-space-size=1
#                     besides: guest/init) (default
#                     --jitless --no-memory-reducer; set empty for none; make bench-agent-startup compares
#                     some); part of the image's hash
# The last line on stdout is the image directory; progress goes to stderr.
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AGENT_DIR=$(cd "${1:-${AGENT_DIR:-$GUEST_DIR/..}}" && pwd)
OUT=${GUEST_OUT:-$GUEST_DIR/out}
# --jitless: V8 generates no machine code, which under TCG is translated again: about
# 55 MiB less QEMU private memory per VM, start-up within the noise between runs
# (bench/agent-startup.md). The agent waits on I/O, not on JavaScript.
# --no-memory-reducer: no extra full GC once the agent falls idle. It gives the guest
# pages back, not the host (no balloon or free-page reporting here: guest RAM the agent
# touched stays the VM's), and it costs host memory: 60 s into 3 idle pods each way, a
# clone's QEMU had 108 MiB PSS without it against 128 with it (a page a clone writes is
# copied from the template), a cold VM's 237 against 251 (a probe; bench/results.md
# measures only the default). The trade: an agent idle after a burst keeps its heap as
# the burst left it until allocation brings the next GC; V8 sets that point from the
# heap live after its last full GC (a small multiple of it), not from its maximum.
AGENT_NODE_FLAGS=${AGENT_NODE_FLAGS---jitless --no-memory-reducer}
# Word-split into node's argv by init: flags only, nothing a shell would expand.
read -ra agent_node_flags <<<"${AGENT_NODE_FLAGS:-}"
for flag in "${agent_node_flags[@]}"; do
	[[ $flag =~ ^--[a-z0-9-]+(=[A-Za-z0-9._/-]+)?$ ]] || { echo "guest: AGENT_NODE_FLAGS: $flag is not a --flag[=value]" >&2; exit 2; }
done
CACHE=${GUEST_CACHE:-$OUT/cache}
NODE_BIN=${GUEST_NODE:-/usr/bin/node}
ARCH=amd64
FORMAT=2 # bump to invalidate every cached image

# Kernel modules the image loads at boot, dependencies resolved from modules.dep.
REQUIRED_MODULES="virtio_pci virtio_console virtio_blk virtio_net 9p 9pnet_virtio overlay"
OPTIONAL_MODULES="vmw_vsock_virtio_transport virtio_rng ext4 crc32c_generic virtiofs"
# npm packages embedded besides what the agent's bundle require()s.
NODE_DEPS="${GUEST_NODE_DEPS:-}"
# Left out of the bundle, embedded as packages: native addons (their .node files load by path).
AGENT_BUNDLE_EXTERNAL=(node-pty)

log() { echo "guest: $*" >&2; }
die() {
	echo "guest: error: $*" >&2
	exit 1
}
START=$(date +%s.%N)
elapsed() { awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1fs", e - s }'; }

for tool in apt-get apt-cache dpkg-deb depmod cpio sha256sum ldd flock find sort awk gcc mkfs.ext4 e2fsck; do
	command -v "$tool" >/dev/null || die "$tool not found on the host"
done
[ -x "$NODE_BIN" ] || die "node binary $NODE_BIN not found"
mkdir -p "$OUT" "$CACHE/debs" "$CACHE/kernel" "$CACHE/pkg" "$CACHE/apt"

exec 9>"$OUT/.lock"
if ! flock -n 9; then
	log "waiting for another build (lock $OUT/.lock)"
	flock 9
fi

# --- Debian packages --------------------------------------------------------------------
APT_UPDATED=
apt_update() {
	[ -z "$APT_UPDATED" ] || return 1
	APT_UPDATED=1
	log "apt-get update ..."
	apt-get update -qq >&2 || die "apt-get update failed"
}

# Resolves the kernel/busybox/crun .debs (file name, SHA256, URL) without downloading.
# apt-cache is slow (~1 s) without a pkgcache.bin, so the answer is cached until the apt
# lists or sources change.
resolve_packages() {
	local key resolved
	key=$({
		echo "$FORMAT ${GUEST_KERNEL_PKG:-}"
		stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* /etc/apt/sources.list \
			/etc/apt/sources.list.d/* /etc/apt/preferences.d/* 2>/dev/null || true
	} | sha256sum | cut -c1-16)
	resolved=$CACHE/apt/$key
	if [ ! -s "$resolved" ]; then
		local kpkg=${GUEST_KERNEL_PKG:-}
		if [ -z "$kpkg" ]; then
			kpkg=$(apt-cache depends "linux-image-$ARCH" 2>/dev/null |
				awk '/Depends: linux-image-/ { print $2; exit }')
			[ -n "$kpkg" ] || return 1
		fi
		apt-get download --print-uris "$kpkg" busybox-static crun >"$resolved.tmp" 2>/dev/null ||
			{ rm -f "$resolved.tmp"; return 1; }
		echo "$kpkg" >"$resolved.kpkg"
		mv "$resolved.tmp" "$resolved"
		# Drop answers for older list states.
		find "$CACHE/apt" -type f ! -name "$key" ! -name "$key.kpkg" -delete
	fi
	KERNEL_PKG=$(cat "$resolved.kpkg")
	# Lines: 'URL' FILE SIZE SHA256:HEX
	KERNEL_DEB=$(awk -v p="${KERNEL_PKG}_" 'index($2, p) == 1 { print $2 }' "$resolved")
	BUSYBOX_DEB=$(awk 'index($2, "busybox-static_") == 1 { print $2 }' "$resolved")
	CRUN_DEB=$(awk 'index($2, "crun_") == 1 { print $2 }' "$resolved")
	[ -n "$KERNEL_DEB" ] && [ -n "$BUSYBOX_DEB" ] && [ -n "$CRUN_DEB" ] || return 1
	DEB_LINES=$(awk '{ print $2, $4 }' "$resolved")
	KVER=${KERNEL_PKG#linux-image-}
}

# Makes sure every resolved .deb is in $CACHE/debs (apt verifies their SHA256).
fetch_debs() {
	local deb pkgs=()
	for deb in "$KERNEL_DEB" "$BUSYBOX_DEB" "$CRUN_DEB"; do
		if [ ! -s "$CACHE/debs/$deb" ]; then
			pkgs+=("${deb%%_*}")
			log "downloading ${deb%%_*} ($deb) ..."
		fi
	done
	[ ${#pkgs[@]} -gt 0 ] || return 0
	(cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >&2) || return 1
	for deb in "$KERNEL_DEB" "$BUSYBOX_DEB" "$CRUN_DEB"; do
		[ -s "$CACHE/debs/$deb" ] || return 1
	done
}

ensure_debs() {
	fetch_debs || { apt_update && resolve_packages && fetch_debs; } || die "apt-get download failed"
}

# Extracts a .deb once into $CACHE/<kind>/<deb name>/ (atomically, by rename).
extract_deb() {
	local kind=$1 deb=$2 dir=$CACHE/$1/${2%.deb}
	[ ! -d "$dir" ] || return 0
	log "extracting $deb ..."
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	dpkg-deb -x "$CACHE/debs/$deb" "$dir.tmp" || die "dpkg-deb -x $deb failed"
	if [ "$kind" = kernel ]; then
		[ -d "$dir.tmp/lib/modules/$KVER" ] || die "$deb has no lib/modules/$KVER"
		log "depmod $KVER ..."
		depmod -b "$dir.tmp" "$KVER" || die "depmod failed"
	fi
	mv "$dir.tmp" "$dir"
}

# Unpacks the ELF kernel inside a bzImage (like the kernel's scripts/extract-vmlinux).
# QEMU boots it through its PVH entry point, which skips the in-guest decompression of
# the bzImage: about 2.5 s under TCG. Optional: a failure only costs that speed-up.
extract_vmlinux() {
	local off
	[ ! -e "$2" ] && [ ! -e "$2.none" ] || return 0
	if ! grep -q '^CONFIG_PVH=y' "$KERNEL_DIR/boot/config-$KVER"; then
		log "kernel has no CONFIG_PVH: only vmlinuz will be built"
		touch "$2.none"
		return 0
	fi
	for off in $(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$1" | cut -d: -f1); do
		tail -c +"$((off + 1))" "$1" | xz -dc --single-stream >"$2" 2>/dev/null || true
		if [ "$(head -c 4 "$2" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			log "extracted vmlinux (PVH ELF, $(($(stat -c %s "$2") >> 20)) MiB)"
			return 0
		fi
	done
	rm -f "$2"
	touch "$2.none"
	log "warning: no ELF vmlinux found in ${1##*/}; only vmlinuz will be built"
}

# crun's libraries are part of the hash, so its .deb is needed even for a cache check.
ensure_crun() {
	CRUN_DIR=$CACHE/pkg/${CRUN_DEB%.deb}
	if [ ! -d "$CRUN_DIR" ]; then
		ensure_debs
		CRUN_DIR=$CACHE/pkg/${CRUN_DEB%.deb}
		extract_deb pkg "$CRUN_DEB"
	fi
}

if ! resolve_packages; then
	apt_update
	resolve_packages || die "cannot resolve ${GUEST_KERNEL_PKG:-linux-image-$ARCH} / busybox-static / crun with apt"
fi

# --- our kernel (cached by its own hash; a cold build compiles for a while) --------------
OWN_KERNEL_DIR=$(GUEST_CACHE=$CACHE "$GUEST_DIR/kernel/build.sh" | tail -n1) || die "guest kernel build failed"
[ -f "$OWN_KERNEL_DIR/vmlinux" ] || die "guest kernel build printed no kernel directory"
OWN_KVER=$(cat "$OWN_KERNEL_DIR/version")

# --- agent files ------------------------------------------------------------------------
PLACEHOLDER=
if [ ! -f "$AGENT_DIR/dist/agent/main.js" ]; then
	[ "${GUEST_TEST_AGENT:-}" = 1 ] ||
		die "$AGENT_DIR/dist/agent/main.js missing: build the agent first: npm run build"
	PLACEHOLDER=1
elif [ ! -f "$AGENT_DIR/protos/generated/descriptor.json" ]; then
	die "$AGENT_DIR/protos/generated/descriptor.json missing: the agent loads its protocol from it (make protos)"
fi

# The agent as one file. Under TCG, loading its ~110 JavaScript files one by one took
# about a third of its start-up (bench/agent-startup.md); one file, read and compiled
# once, saves most of that in every cold boot. Its path stays dist/agent/main.js, so
# __dirname-relative paths (package.json, protos/) resolve as they do from dist/.
AGENT_BUNDLE=
if [ -z "$PLACEHOLDER" ]; then
	ESBUILD="$AGENT_DIR/node_modules/.bin/esbuild"
	[ -x "$ESBUILD" ] || die "$ESBUILD missing: the agent is bundled with esbuild: npm ci"
	AGENT_BUNDLE=$(mktemp -d "${TMPDIR:-/tmp}/kata-ts-agent-bundle.XXXXXX")
	trap 'rm -rf "$AGENT_BUNDLE"' EXIT
	node_major=$("$NODE_BIN" -p 'process.versions.node.split(".")[0]') || die "$NODE_BIN does not run"
	# cwd: the bundle's module comments name paths relative to it, the same in any clone.
	(cd "$AGENT_DIR" && "$ESBUILD" dist/agent/main.js --bundle --platform=node "--target=node$node_major" \
		"${AGENT_BUNDLE_EXTERNAL[@]/#/--external:}" --log-level=warning \
		--outfile="$AGENT_BUNDLE/dist/agent/main.js") || die "esbuild could not bundle $AGENT_DIR/dist/agent/main.js"
fi
# npm packages: the production closure of what the bundle require()s (its externals).
NPM_PKGS=$(node "$GUEST_DIR/tools.js" npmdeps "$AGENT_DIR" "$NODE_DEPS" ${AGENT_BUNDLE:+"$AGENT_BUNDLE"}) ||
	die "cannot resolve the agent's npm packages"

# Prints "SOURCE<TAB>DEST" (DEST relative to /opt/kata-ts) for every agent file to embed.
agent_files() {
	local pkg
	[ -z "$AGENT_BUNDLE" ] || printf '%s\t%s\n' "$AGENT_BUNDLE/dist/agent/main.js" dist/agent/main.js
	# The protocol descriptor only: the agent never parses the .proto files (lib/protos.ts).
	[ -z "$PLACEHOLDER" ] &&
		printf '%s\t%s\n' "$AGENT_DIR/protos/generated/descriptor.json" protos/generated/descriptor.json
	[ -f "$AGENT_DIR/package.json" ] && printf '%s\t%s\n' "$AGENT_DIR/package.json" package.json
	echo "$NPM_PKGS" | while read -r pkg; do
		[ -n "$pkg" ] || continue
		# Lean copies: no tests, docs, type declarations or source maps.
		(cd "$AGENT_DIR" && find "$pkg" \
			\( -path "$pkg/node_modules" -o -path "$pkg/test" -o -path "$pkg/tests" \
			-o -path "$pkg/__tests__" -o -path "$pkg/docs" -o -path "$pkg/doc" \
			-o -path "$pkg/benchmarks" -o -path "$pkg/bench" -o -path "$pkg/benchmark" \
			-o -path "$pkg/examples" -o -path "$pkg/example" -o -path "$pkg/.github" \
			-o -path "$pkg/deps" -o -path "$pkg/build/Release/obj.target" -o -path "$pkg/build/Release/.deps" \
			-o -path "$pkg/build/Release/obj" \) -prune -o \
			-type f ! -name '*.d.ts' ! -name '*.d.mts' ! -name '*.d.cts' ! -name '*.map' \
			! -name '*.md' ! -name '*.markdown' ! -name '*.png' ! -name '*.ico' \
			-printf "$AGENT_DIR/%p\t%p\n")
	done
}
AGENT_FILES=$(agent_files | LC_ALL=C sort -t$'\t' -k2)
[ -n "$AGENT_FILES" ] || die "no agent files found under $AGENT_DIR"

# Shared libraries of a dynamically linked binary (resolved on the host), one per line.
libs_of() {
	ldd "$1" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(0x/ { print $1 }' | LC_ALL=C sort -u
}

# --- content hash -----------------------------------------------------------------------
hash_inputs() {
	echo "format $FORMAT"
	echo "$DEB_LINES" | sed 's/^/deb /'
	echo "own-kernel ${OWN_KERNEL_DIR##*/} $OWN_KVER"
	echo "modules $REQUIRED_MODULES | $OPTIONAL_MODULES"
	echo "strip $(command -v strip >/dev/null && echo yes || echo no)"
	echo "placeholder-agent ${PLACEHOLDER:-0}"
	echo "agent-node-flags ${AGENT_NODE_FLAGS:-}"
	sha256sum "$NODE_BIN" | awk '{ print "node", $1, $2 }'
	# Host libraries copied for node and crun (crun is extracted from its cached .deb).
	{ libs_of "$NODE_BIN"; libs_of "$CRUN_DIR/usr/bin/crun"; } |
		LC_ALL=C sort -u | xargs -r sha256sum | sed 's/^/lib /'
	# guest/ files that shape the image (not out/, docs or the smoke test).
	(cd "$GUEST_DIR" && find . -path ./out -prune -o -type f ! -name '*~' ! -name '*.md' \
		! -name boot-smoke.sh -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sed 's/^/guest /')
	# Agent files: content hash, keyed by destination path.
	paste -d' ' <(echo "$AGENT_FILES" | cut -f1 | tr '\n' '\0' | xargs -0 sha256sum | cut -d' ' -f1) \
		<(echo "$AGENT_FILES" | cut -f2) | sed 's/^/agent /'
}
compute_hash() {
	INPUTS=$(hash_inputs)
	HASH=$(echo "$INPUTS" | sha256sum | cut -c1-16)
	IMG=$OUT/$HASH
}
set_current() {
	ln -sfn "$HASH" "$OUT/.current.tmp"
	mv -T "$OUT/.current.tmp" "$OUT/current"
	touch "$IMG"
}
cache_hit() {
	[ -f "$IMG/manifest.json" ] && [ -f "$IMG/vmlinux" ] && [ -f "$IMG/rootfs.img" ] && [ -f "$IMG/initrd.img" ] || return 1
	set_current
	log "cache hit $HASH ($(elapsed))"
	echo "$IMG"
	exit 0
}

ensure_crun
compute_hash
cache_hit || true
ensure_debs
if [ -n "$APT_UPDATED" ]; then # versions may have moved on
	ensure_crun
	compute_hash
	cache_hit || true
fi
log "building $HASH (kernel $KVER${PLACEHOLDER:+, placeholder agent})"
extract_deb kernel "$KERNEL_DEB"
extract_deb pkg "$BUSYBOX_DEB"
KERNEL_DIR=$CACHE/kernel/${KERNEL_DEB%.deb}
BUSYBOX_DIR=$CACHE/pkg/${BUSYBOX_DEB%.deb}
extract_vmlinux "$KERNEL_DIR/boot/vmlinuz-$KVER" "$KERNEL_DIR/boot/vmlinux-$KVER"

# --- initramfs tree ---------------------------------------------------------------------
WORK=$OUT/.build-$HASH-$$
trap 'rm -rf "$WORK" ${AGENT_BUNDLE:+"$AGENT_BUNDLE"}' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"
cd "$ROOT"
mkdir -p usr/bin usr/sbin "usr/lib/modules/$KVER" usr/lib/x86_64-linux-gnu usr/lib64
ln -s usr/bin bin
ln -s usr/sbin sbin
ln -s usr/lib lib
ln -s usr/lib64 lib64
mkdir -p etc/katats dev proc sys run tmp mnt root newroot opt/kata-ts var/lib var/log
ln -s ../run var/run
chmod 1777 tmp
chmod 0700 root

log "busybox ${BUSYBOX_DEB} ..."
install -m 0755 "$BUSYBOX_DIR/bin/busybox" usr/bin/busybox
"$BUSYBOX_DIR/bin/busybox" --list-full | while read -r applet; do
	case "${applet##*/}" in busybox | init | linuxrc) continue ;; esac
	[ -e "$applet" ] || [ -L "$applet" ] || ln -s /usr/bin/busybox "$applet"
done

copy_libs() {
	local lib
	for lib in $(libs_of "$1"); do
		[ -e "$ROOT$lib" ] || { mkdir -p "$ROOT$(dirname "$lib")" && cp -L "$lib" "$ROOT$lib"; }
	done
}

log "crun ${CRUN_DEB} ..."
ldd "$CRUN_DIR/usr/bin/crun" | grep -q 'not found' &&
	die "crun's libraries are missing on the host: apt-get install crun (or its library deps)"
install -m 0755 "$CRUN_DIR/usr/bin/crun" usr/bin/crun
copy_libs "$CRUN_DIR/usr/bin/crun"

# Static, because it runs inside containers whose images have no libc we could rely on.
log "katats-ctty (terminal helper) ..."
mkdir -p usr/libexec/katats
gcc -static -Os -s -Wall -Werror -o usr/libexec/katats/ctty "$GUEST_DIR/ctty.c" ||
	die "cannot build guest/ctty.c statically: apt-get install gcc libc6-dev"
log "katats-vsock-relay (the agent's vsock ports) ..."
gcc -static -Os -s -Wall -Werror -o usr/libexec/katats/vsock-relay "$GUEST_DIR/vsock-relay.c" ||
	die "cannot build guest/vsock-relay.c statically: apt-get install gcc libc6-dev linux-libc-dev"

log "node $("$NODE_BIN" --version) from $NODE_BIN ..."
if command -v strip >/dev/null; then
	strip -o usr/bin/node "$NODE_BIN"
	chmod 0755 usr/bin/node
else
	install -m 0755 "$NODE_BIN" usr/bin/node
fi
copy_libs "$NODE_BIN"

log "kernel $KERNEL_DEB: modules ..."
MODDIR=$KERNEL_DIR/lib/modules/$KVER
node "$GUEST_DIR/tools.js" modules "$MODDIR" "$REQUIRED_MODULES" "$OPTIONAL_MODULES" >"$WORK/modules"
while read -r mod; do
	[ -n "$mod" ] || continue
	dest=lib/modules/$KVER/${mod%.xz}
	dest=${dest%.zst}
	dest=${dest%.gz}
	mkdir -p "$(dirname "$dest")"
	case "$mod" in
		*.xz) xz -dc "$MODDIR/$mod" >"$dest" ;;
		*.zst) zstd -qdc "$MODDIR/$mod" >"$dest" ;;
		*.gz) gzip -dc "$MODDIR/$mod" >"$dest" ;;
		*) cp "$MODDIR/$mod" "$dest" ;;
	esac
	echo "${dest#lib/modules/"$KVER"/}" >>etc/katats/modules
done <"$WORK/modules"
MODULES_LOADED=$(sed 's|.*/||; s|\.ko$||' etc/katats/modules | tr '\n' ' ')
log "modules (load order): $MODULES_LOADED"
cp "$MODDIR/modules.builtin" "$MODDIR/modules.order" "lib/modules/$KVER/" 2>/dev/null || true

log "agent from $AGENT_DIR ..."
echo "$AGENT_FILES" | while IFS=$'\t' read -r src dest; do
	mkdir -p "opt/kata-ts/$(dirname "$dest")"
	cp "$src" "opt/kata-ts/$dest"
done
if [ -n "$PLACEHOLDER" ]; then
	mkdir -p opt/kata-ts/dist/agent
	cat >opt/kata-ts/dist/agent/main.js <<'EOF'
// Placeholder agent (GUEST_TEST_AGENT=1 build without a compiled agent): reports and exits.
const fs = require('fs');
let ports = [];
try { ports = fs.readdirSync('/dev/virtio-ports'); } catch {}
console.log(`kata-ts placeholder agent: node ${process.version}, pid ${process.pid}, ` +
  `virtio ports [${ports.join(', ')}], KATATS_DEBUG=${process.env.KATATS_DEBUG || ''}`);
console.log('kata-ts placeholder agent: exiting');
EOF
fi

install -m 0755 "$GUEST_DIR/init" init
mkdir -p etc/katats
printf '%s\n' "${AGENT_NODE_FLAGS:-}" >etc/katats/agent-node-flags
cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >etc/group <<'EOF'
root:x:0:
tty:x:5:
nogroup:x:65534:
EOF
echo localhost >etc/hostname
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >etc/hosts
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >etc/nsswitch.conf
: >etc/resolv.conf
ln -s /proc/self/mounts etc/mtab
printf 'ID=kata-ts\nNAME="kata-ts guest"\nVERSION_ID=%s\n' "$HASH" >etc/os-release
echo "$HASH" >etc/katats/image

log "writing initrd.img (uncompressed newc cpio) ..."
mkdir -p "$WORK/img"
find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet >"$WORK/img/initrd.img"

# rootfs.img: [2 MiB DAX header][ext4]. The header's PFN info block (at 4 KiB) makes the
# guest's pmem namespace fsdax with its data at 2 MiB, so /dev/pmem0 is the ext4 itself.
# ext4 for DAX: 4 KiB blocks, no journal (the image is read-only), sized to its content.
log "writing rootfs.img (ext4 behind a DAX header) ..."
DAX_ALIGN=$((2 << 20))
files=$(find . | wc -l)
kib=$(du -s --apparent-size -k . | cut -f1)
# Slack: every file takes at least one 4 KiB block, plus inode tables and directories.
fs_bytes=$(((kib + files * 4 + 16384) * 1024 * 11 / 10))
fs_bytes=$(((fs_bytes + DAX_ALIGN - 1) / DAX_ALIGN * DAX_ALIGN))
mkfs.ext4 -q -F -b 4096 -m 0 -N $((files * 3 / 2 + 1024)) -O ^has_journal,^resize_inode \
	-L katats-root -E root_owner=0:0 -d . "$WORK/rootfs.ext4" "$((fs_bytes / 1024))k" >&2 ||
	die "mkfs.ext4 of the rootfs failed"
e2fsck -fn "$WORK/rootfs.ext4" >/dev/null 2>&1 || die "the rootfs image does not pass e2fsck"
truncate -s "$DAX_ALIGN" "$WORK/img/rootfs.img"
node "$GUEST_DIR/tools.js" daxheader "$WORK/img/rootfs.img" "$DAX_ALIGN" "$DAX_ALIGN" "$(echo "$HASH" | sha256sum | cut -c1-32)"
cat "$WORK/rootfs.ext4" >>"$WORK/img/rootfs.img"
rm -f "$WORK/rootfs.ext4"

cp "$OWN_KERNEL_DIR/vmlinux" "$WORK/img/vmlinux"
cp "$OWN_KERNEL_DIR/bzImage" "$WORK/img/vmlinuz"
cp "$KERNEL_DIR/boot/vmlinuz-$KVER" "$WORK/img/vmlinuz-debian"
if [ -f "$KERNEL_DIR/boot/vmlinux-$KVER" ]; then
	ln "$KERNEL_DIR/boot/vmlinux-$KVER" "$WORK/img/vmlinux-debian" 2>/dev/null ||
		cp "$KERNEL_DIR/boot/vmlinux-$KVER" "$WORK/img/vmlinux-debian"
fi
echo "$INPUTS" >"$WORK/inputs"
ver_of() { dpkg-deb -f "$CACHE/debs/$1" Version; }
node "$GUEST_DIR/tools.js" manifest "$WORK/img/manifest.json" "$WORK/inputs" \
	"hash=$HASH" "kernelVersion=$OWN_KVER" "kernelBuild=${OWN_KERNEL_DIR##*/}" \
	"kernelBytes=$(stat -c %s "$WORK/img/vmlinux")" "rootfsImageBytes=$(stat -c %s "$WORK/img/rootfs.img")" \
	"debianKernelVersion=$KVER" "kernelPackage=$KERNEL_PKG" \
	"debianModulesBytes=$(du -sb "lib/modules/$KVER" | cut -f1)" \
	"kernelPackageVersion=$(ver_of "$KERNEL_DEB")" "kernelDeb=$KERNEL_DEB" \
	"busyboxVersion=$(ver_of "$BUSYBOX_DEB")" "busyboxDeb=$BUSYBOX_DEB" \
	"crunVersion=$(ver_of "$CRUN_DEB")" "crunDeb=$CRUN_DEB" \
	"nodeVersion=$("$NODE_BIN" --version)" "agentDir=$AGENT_DIR" \
	"placeholderAgent=${PLACEHOLDER:-0}" "modules[]=$MODULES_LOADED" \
	"initrdFormat=newc cpio, uncompressed" "initrdBytes=$(stat -c %s "$WORK/img/initrd.img")" \
	"builtAt=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
cd "$OUT"
rm -rf "$IMG"
mv "$WORK/img" "$IMG"
set_current
log "built $HASH: kernel $OWN_KVER, rootfs.img $(du -m --apparent-size "$IMG/rootfs.img" | cut -f1) MiB, initrd.img $(du -m "$IMG/initrd.img" | cut -f1) MiB in $(elapsed)"

# --- garbage collection: keep the newest images, drop caches nothing current uses -------
keep=${GUEST_KEEP:-3}
find "$OUT" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{16}' -printf '%T@ %p\n' |
	sort -rn | tail -n +"$((keep + 1))" | cut -d' ' -f2- | while read -r old; do
	[ "$old" = "$IMG" ] || { log "removing old image ${old##*/}"; rm -rf "$old"; }
done
for f in "$CACHE"/debs/*.deb "$CACHE"/kernel/* "$CACHE"/pkg/*; do
	[ -e "$f" ] || continue
	case "${f##*/}" in
		"$KERNEL_DEB" | "$BUSYBOX_DEB" | "$CRUN_DEB" | "${KERNEL_DEB%.deb}" | "${BUSYBOX_DEB%.deb}" | "${CRUN_DEB%.deb}") ;;
		*) log "removing stale cache ${f#"$OUT"/}"; rm -rf "$f" ;;
	esac
done
echo "$IMG"
