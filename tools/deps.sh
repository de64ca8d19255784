#!/usr/bin/env bash
# Install the Debian 12 packages a task needs, only those missing.
#   tools/deps.sh run    build and run the CLI (compiler, CMake, jansson, PCRE2, xxHash, libmicrohttpd for
#                        `jamba serve`)
#   tools/deps.sh test   also Criterion (tests), clang with libFuzzer (the clang build, fuzz smoke) and curl
#                        (server tests)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libjansson-dev libpcre2-dev libxxhash-dev libmicrohttpd-dev)
if [ "${1:-run}" = "test" ]; then
  pkgs+=(libcriterion-dev clang libclang-rt-14-dev python3-venv curl)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
