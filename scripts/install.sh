#!/usr/bin/env bash
# Installs meshnode on Debian 12: the system libraries and test tools from apt, then a
# release build of `meshnode` into /usr/local/bin. Needs root (run with sudo) and
# Swift 6.3 on PATH (https://www.swift.org/install/linux/ ; swiftly or the tarball).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/usr/local}

if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: error: needs root to apt-get install and write $prefix/bin — run: sudo $0" >&2
    exit 1
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "install.sh: error: swift is not on PATH — install Swift 6.3 (https://www.swift.org/install/linux/) and re-run with sudo -E or a PATH that has it" >&2
    exit 1
fi

"$root/scripts/apt-deps.sh"

echo "building meshnode (release)..." >&2
cd "$root"
swift build -c release --product meshnode
bin="$(swift build -c release --show-bin-path)/meshnode"
install -m 0755 "$bin" "$prefix/bin/meshnode"
echo "installed $prefix/bin/meshnode ($("$prefix/bin/meshnode" --version))" >&2
