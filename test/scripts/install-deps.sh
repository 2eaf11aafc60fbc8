#!/usr/bin/env bash
# Install the Debian 12 packages that building, testing and the demo need,
# and any more named as arguments (the benchmarks' tools).  Runs apt-get
# only when a package is missing, so a second run is quick.  Node.js and npm
# (the interop stage's gateways) count as present when the commands are,
# whichever package gave them (Debian's, or NodeSource's nodejs, which
# includes npm and conflicts with Debian's npm package).
set -euo pipefail

packages=(
    make gcc pkg-config curl
    postgresql-15 postgresql-server-dev-15 postgresql-common
    libcurl4-openssl-dev
    libmicrohttpd-dev libjansson-dev
    libipc-run-perl
    postgresql-15-cron
    "$@"
)
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
