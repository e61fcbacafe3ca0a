#!/bin/sh
# deps.sh -- install the Debian packages airlock builds and tests with, only when missing.
# Usage: scripts/deps.sh [build|test]   (test adds the tools the test and bench targets use)
set -e
PKGS="gcc make pkg-config libevent-dev libssl-dev libcjson-dev libsodium-dev libyaml-dev libvectorscan-dev libhttp-parser-dev openssl"
if [ "${1:-build}" = test ]; then
    PKGS="$PKGS nodejs npm curl python3 clang python3-httpx"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# node/npm may come from outside Debian (e.g. a preinstalled toolchain): accept them if on PATH
if [ -n "$missing" ]; then
    filtered=""
    for p in $missing; do
        case "$p" in
        nodejs) command -v node >/dev/null 2>&1 && continue ;;
        npm) command -v npm >/dev/null 2>&1 && continue ;;
        python3) command -v python3 >/dev/null 2>&1 && continue ;;
        clang) command -v clang >/dev/null 2>&1 && continue ;;
        curl) command -v curl >/dev/null 2>&1 && continue ;;
        esac
        filtered="$filtered $p"
    done
    missing="$filtered"
fi
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $missing >&2
