#!/usr/bin/env bash
# The Debian 12 packages meshnode builds against and its tests use. Needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    libuv1-dev libsodium-dev libsqlite3-dev libssl-dev libxxhash-dev pkg-config \
    openssh-server openssh-client microsocks nftables rsync sqlite3 \
    python3 python3-cryptography python3-numpy xxd coreutils util-linux time iproute2 \
    prometheus
