#!/usr/bin/env bash
# Fetches one of Debian's packages from a newer suite (trixie, testing, unstable) into a
# cache directory, never installing it: a private apt sources list and state,
# `apt-get download`, `dpkg-deb -x`. Prints the directory it was extracted into.
#   scripts/fetch-deb.sh SUITE PACKAGE BINARY
# BINARY (relative to that directory, e.g. usr/bin/containerd) must run `--version`;
# its first line is cached as the version. Cached under $KATATS_DEB_CACHE (default
# /var/cache/kata-ts)/PACKAGE/SUITE; a second call prints the cached directory.
set -euo pipefail
suite=${1:?usage: $0 SUITE PACKAGE BINARY}
package=${2:?usage: $0 SUITE PACKAGE BINARY}
binary=${3:?usage: $0 SUITE PACKAGE BINARY}
case "$suite" in trixie | testing | unstable) ;; *) echo "fetch-deb: suite must be trixie, testing or unstable, not '$suite'" >&2; exit 2 ;; esac
case "$package" in *[!a-z0-9.+-]*) echo "fetch-deb: '$package' is not a Debian package name" >&2; exit 2 ;; esac
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${KATATS_DEB_CACHE:-/var/cache/kata-ts}/$package/$suite
apt_dir=$cache/apt
root=$cache/root

if [ -x "$root/$binary" ] && [ -f "$cache/version" ]; then
  echo "fetch-deb: $suite $package $(cat "$cache/version") cached" >&2
  echo "$root"
  exit 0
fi

mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$apt_dir/sources.list"
apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
echo "fetch-deb: apt-get update ($suite, private lists in $apt_dir)" >&2
apt-get "${apt_opts[@]}" update >&2
(cd "$apt_dir/debs" && rm -f "${package}"_*.deb && apt-get "${apt_opts[@]}" download "$package" >&2)
deb=$(ls "$apt_dir"/debs/"${package}"_*.deb)
rm -rf "$root.tmp" && mkdir -p "$root.tmp"
dpkg-deb -x "$deb" "$root.tmp"
rm -rf "$root" && mv "$root.tmp" "$root"
version=$("$root/$binary" --version | head -n1)
echo "$version" > "$cache/version"
echo "fetch-deb: $suite $package ($version) in $root" >&2
echo "$root"
