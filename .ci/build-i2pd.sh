#!/usr/bin/env bash
# Build the i2pd used by aegis-hidden's private I2P test network, once per
# machine: Debian's own source package of the installed i2pd version with
# aegis_hidden/testing/i2pd/reservedrange.patch applied (see the patch header
# for why), into a cache outside the repository keyed by version and patch
# hash:
#
#     ${AEGIS_CACHE:-~/.cache/aegis-hidden}/i2pd-<version>-<sha256[:12]>/i2pd
#
# Prints that path on stdout. Does nothing but print it when it exists.
# Needs deb-src entries and the build dependencies: adds/installs them when
# running as root, otherwise says which command to run.
# Production nodes use the stock i2pd on the real I2P network.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
patch_file="$repo/aegis_hidden/testing/i2pd/reservedrange.patch"
cache_root="${AEGIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aegis-hidden}"

if ! version="$(dpkg-query -W -f='${Version}' i2pd 2>/dev/null)" || [ -z "$version" ]; then
    echo "build-i2pd: the Debian package i2pd is not installed (run .ci/system-packages.sh)" >&2
    exit 1
fi
patch_sha="$(sha256sum "$patch_file" | cut -c1-12)"
target_dir="$cache_root/i2pd-$version-$patch_sha"
target="$target_dir/i2pd"

if [ -x "$target" ]; then
    echo "$target"
    exit 0
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "build-i2pd: needs root for: $*" >&2
        exit 1
    fi
}

export DEBIAN_FRONTEND=noninteractive
echo "build-i2pd: building patched i2pd $version into $target_dir (about 4 minutes on 2 cores)" >&2

# deb-src entries for Debian's main archive, if none are configured.
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
    as_root tee /etc/apt/sources.list.d/aegis-hidden-deb-src.sources >/dev/null <<EOF
# Added by aegis-hidden .ci/build-i2pd.sh: source packages for the patched test-network i2pd
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    as_root apt-get update -qq
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/aegis-i2pd-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get source -qq "i2pd=$version" >"$work/source.log" 2>&1; then
    # the package lists may predate the deb-src entries
    as_root apt-get update -qq
    apt-get source -qq "i2pd=$version" >"$work/source.log" 2>&1 || {
        cat "$work/source.log" >&2
        exit 1
    }
fi
src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'i2pd-*' | head -n1)"
cd "$src"
if ! dpkg-checkbuilddeps >/dev/null 2>&1; then
    as_root apt-get build-dep -y -qq "i2pd=$version" >/dev/null
fi
patch -p1 --forward <"$patch_file" >&2

jobs="$(nproc 2>/dev/null || echo 2)"
DEB_BUILD_OPTIONS="nocheck parallel=$jobs" debian/rules build >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    echo "build-i2pd: build failed" >&2
    exit 1
}
built="$(find "$src" -path '*/obj-*' -type f -name i2pd -perm -u+x | head -n1)"
if [ -z "$built" ]; then
    echo "build-i2pd: no i2pd binary after the build" >&2
    exit 1
fi
mkdir -p "$target_dir"
install -s -m 0755 "$built" "$target_dir/.i2pd.tmp"
mv -f "$target_dir/.i2pd.tmp" "$target"
cp "$patch_file" "$target_dir/reservedrange.patch"
echo "build-i2pd: done" >&2
echo "$target"
