#!/usr/bin/env bash
# Run on the development machine (Debian 12, with network) before the GPU check: fetch the Debian packages
# of the C libraries the runtime builds with (jansson, PCRE2, xxHash) into .gpu-deps/ (ignored by git), so that
# tools/gpu-check.sh builds on a GPU machine that has only the CUDA toolkit, CMake and a compiler and no
# network. gpu-check.sh unpacks them into its build folder and configures WITHOUT pkg-config
# (-DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON; the packages' .pc files say prefix=/usr, which pkg-config would
# drop as a system include path). Then one device call, carrying .gpu-deps:
#     tools/gpu-check.sh $OUT
# This script checks that the packages hold the headers and libraries the build looks for.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-deps
cd .gpu-deps
rm -f ./*.deb
apt-get download libjansson-dev libjansson4 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
  libxxhash-dev libxxhash0 >/dev/null
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
for deb in ./*.deb; do dpkg-deb -x "$deb" "$root"; done
for f in usr/include/jansson.h usr/include/pcre2.h usr/include/xxhash.h usr/lib/x86_64-linux-gnu/libjansson.so \
         usr/lib/x86_64-linux-gnu/libpcre2-8.so usr/lib/x86_64-linux-gnu/libxxhash.so; do
  [ -e "$root/$f" ] || { echo "gpu-prepare: the packages hold no $f" >&2; exit 1; }
done
ls -1 ./*.deb
echo "gpu-prepare: $(du -ch ./*.deb | tail -1 | cut -f1) in .gpu-deps; carry it: run(command='tools/gpu-check.sh \$OUT', carry=['.gpu-deps'], timeout_s=600)"
