#!/usr/bin/env bash
# Fetches Debian's containerd from a newer suite (trixie: 1.7, unstable: 2.x) into a
# cache directory, never over the system's containerd: a private apt sources list and
# state, `apt-get download`, `dpkg-deb -x`. Prints the directory holding its
# `containerd` and `ctr`; put it first on PATH to test against that version.
#   scripts/fetch-containerd.sh trixie|unstable   (testing moved on to 2.x in 2026)
set -euo pipefail
suite=${1:?usage: $0 trixie|testing|unstable}
case "$suite" in trixie | testing | unstable) ;; *) echo "fetch-containerd: suite must be trixie, testing or unstable, not '$suite'" >&2; exit 2 ;; esac
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${CONTAINERD_CACHE:-/var/cache/kata-ts/containerd}/$suite
apt_dir=$cache/apt
root=$cache/root

if [ -x "$root/usr/bin/containerd" ] && [ -f "$cache/version" ]; then
  echo "fetch-containerd: $suite containerd $(cat "$cache/version") cached" >&2
  echo "$root/usr/bin"
  exit 0
fi

mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$apt_dir/sources.list"
apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
echo "fetch-containerd: apt-get update ($suite, private lists in $apt_dir)" >&2
apt-get "${apt_opts[@]}" update >&2
(cd "$apt_dir/debs" && rm -f containerd_*.deb && apt-get "${apt_opts[@]}" download containerd >&2)
deb=$(ls "$apt_dir"/debs/containerd_*.deb)
rm -rf "$root.tmp" && mkdir -p "$root.tmp"
dpkg-deb -x "$deb" "$root.tmp"
rm -rf "$root" && mv "$root.tmp" "$root"
version=$("$root/usr/bin/containerd" --version | awk '{print $3}')
echo "$version" > "$cache/version"
echo "fetch-containerd: $suite containerd $version in $root/usr/bin" >&2
echo "$root/usr/bin"
