#!/usr/bin/env bash
# Run on the development machine before a GPU check: fetch the Debian packages of the two C libraries the
# runtime links (jansson, PCRE2) into .gpu-deps/ (ignored by git), so tools/gpu-check.sh can build on a GPU
# machine that has only the CUDA toolkit, CMake and a compiler and no network. Pass .gpu-deps to the
# device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-deps
cd .gpu-deps
rm -f ./*.deb
apt-get download libjansson-dev libjansson4 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
  >/dev/null
ls -1 ./*.deb
