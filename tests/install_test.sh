#!/usr/bin/env bash
# install_test.sh BUILD_DIR SOURCE_DIR LIBDIR C_COMPILER [EXTRA_FLAGS]
#
# The library as a program outside this repository sees it: install BUILD_DIR into a temporary prefix,
# then
#   1. check the install tree (header, libjamba.so with its SONAME, libjamba.a, CLI, jamba.pc, CMake
#      package, demo model) and that libjamba.so exports exactly the JAMBA_API functions of jamba.h;
#   2. build examples/ as a separate CMake project with find_package(jamba) and run model_info (shared
#      and static library), greedy (checked against reference.json) and batch (the scheduler and the prefix
#      cache) on the installed demo model;
#   3. compile examples/model_info.c with `pkg-config --cflags --libs jamba` alone and run it;
#   4. check that `jamba --version`, jamba_version(), `pkg-config --modversion jamba` and the CMake
#      package version agree, and that the installed CLI generates with its default (the installed) model.
# LIBDIR is CMAKE_INSTALL_LIBDIR; EXTRA_FLAGS are compiler and linker flags the consumer programs need
# (the sanitizer flags of a sanitizer build). Registered as the ctest entry `install` (tests/CMakeLists.txt).
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
libdir="$3"
cc="$4"
extra="${5:-}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/jamba-install-test.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
case "$libdir" in /*) lib="$libdir" ;; *) lib="$prefix/$libdir" ;; esac
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
(cd "$prefix" && find . -type f -o -type l | sort)

step "install tree"
for f in include/jamba.h bin/jamba share/jamba/models/demo/config.json share/jamba/models/demo/model.safetensors; do
  [ -e "$prefix/$f" ] || fail "$f not installed"
done
for f in libjamba.a libjamba.so pkgconfig/jamba.pc cmake/jamba/jambaConfig.cmake \
         cmake/jamba/jambaConfigVersion.cmake cmake/jamba/jambaTargets.cmake; do
  [ -e "$lib/$f" ] || fail "$libdir/$f not installed"
done
version="$("$prefix/bin/jamba" --version)" || fail "jamba --version failed"
version="${version#jamba }"
major="${version%%.*}"
soname="$(readelf -d "$lib/libjamba.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = "libjamba.so.$major" ] || fail "SONAME is '$soname', expected libjamba.so.$major"
[ -e "$lib/$soname" ] || fail "$soname not installed"
[ -e "$lib/libjamba.so.$version" ] || fail "libjamba.so.$version not installed"
echo "version $version, SONAME $soname"

step "exported symbols = the JAMBA_API functions of jamba.h"
nm -D --defined-only "$lib/libjamba.so" | awk '{print $NF}' |
  grep -v -x -E '_init|_fini|_edata|_end|__bss_start|_DYNAMIC|_GLOBAL_OFFSET_TABLE_' | sort -u >"$tmp/exported"
sed -n 's/^JAMBA_API[^(]*[ *]\(jamba_[a-z0-9_]*\)(.*/\1/p' "$prefix/include/jamba.h" | sort -u >"$tmp/declared"
[ -s "$tmp/declared" ] || fail "no JAMBA_API declarations found in jamba.h"
if ! diff "$tmp/declared" "$tmp/exported" >"$tmp/symdiff"; then
  cat "$tmp/symdiff"
  fail "libjamba.so's dynamic symbols differ from jamba.h's JAMBA_API functions (< declared only, > exported only)"
fi
echo "$(wc -l <"$tmp/exported") symbols, all jamba_*, all declared"

model="$prefix/share/jamba/models/demo"
# greedy's expected continuation: the first 8 tokens of reference.json's greedy run (transformers)
ref="$(tr -d ' \n\t\r' <"$model/reference.json")"
prompt_ids="$(grep -o '"prompt_ids":\[[0-9,]*\]' <<<"$ref" | head -1 | tr -dc '0-9,' | tr ',' ' ')"
expect="$(grep -o '"tokens":\[[0-9,]*\]' <<<"$ref" | head -1 | tr -dc '0-9,' | tr ',' ' ' | cut -d' ' -f1-8)"
if [ -z "$prompt_ids" ] || [ -z "$expect" ]; then fail "no greedy prompt_ids/tokens in $model/reference.json"; fi

step "examples/ as a separate CMake project: find_package(jamba)"
cmake -S "$src/examples" -B "$tmp/examples" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" >"$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log"; fail "configuring examples/ against the installed package"; }
pkg_version="$(sed -n 's/.*jamba package version \([^ ]*\) .*/\1/p' "$tmp/configure.log")"
grep -qF "($lib/cmake/jamba)" "$tmp/configure.log" ||
  { cat "$tmp/configure.log"; fail "find_package(jamba) did not find the package in $prefix"; }
cmake --build "$tmp/examples" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "building examples/"; }
"$tmp/examples/model_info" "$model" >"$tmp/model_info.out" || fail "model_info (jamba::jamba) failed"
head -2 "$tmp/model_info.out"
grep -q '^parameters: ' "$tmp/model_info.out" || fail "model_info printed no parameter counts"
readelf -d "$tmp/examples/model_info" | grep -q "NEEDED.*\[$soname\]" || fail "model_info does not link $soname"
"$tmp/examples/model_info_static" "$model" >"$tmp/model_info_static.out" || fail "model_info_static (jamba::jamba_static) failed"
cmp -s "$tmp/model_info.out" "$tmp/model_info_static.out" || fail "model_info differs between shared and static library"
if readelf -d "$tmp/examples/model_info_static" | grep -q 'NEEDED.*libjamba'; then
  fail "model_info_static links libjamba.so"
fi
# shellcheck disable=SC2086 # the ids are words
got="$("$tmp/examples/greedy" "$model" 8 $prompt_ids)" || fail "greedy failed"
[ "$got" = "$expect" ] || fail "greedy continuation '$got', reference.json says '$expect'"
echo "greedy: $got (= reference.json)"
out="$("$tmp/examples/batch" "$model" 8 "JULIET:" "Good morrow" "What, ho!")" || fail "batch (scheduler, prefix cache) failed"
[ "$(printf '%s\n' "$out" | grep -c '^\[[0-2]\] ')" = 3 ] || fail "batch did not finish its three requests: $out"
printf '%s\n' "$out" | grep -q '^prefix cache: [1-9][0-9]* prompt tokens restored' || fail "batch restored nothing: $out"
echo "batch: three requests served, the shared system prompt restored from the prefix cache"

step "pkg-config: cc model_info.c \$(pkg-config --cflags --libs jamba)"
export PKG_CONFIG_PATH="$lib/pkgconfig"
pc_flags="$(pkg-config --cflags --libs jamba)" || fail "pkg-config --cflags --libs jamba"
echo "pkg-config: $pc_flags"
cat >"$tmp/version.c" <<'EOF'
#include <jamba.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    printf("%s\n", jamba_version());
    return strcmp(jamba_version(), JAMBA_VERSION_STRING) == 0 && jamba_version_number() == JAMBA_VERSION_NUMBER ? 0 : 1;
}
EOF
# shellcheck disable=SC2086 # flags are words
"$cc" $extra -o "$tmp/model_info_pc" "$src/examples/model_info.c" $pc_flags || fail "compiling with pkg-config flags"
# shellcheck disable=SC2086
"$cc" $extra -o "$tmp/version_pc" "$tmp/version.c" $pc_flags || fail "compiling version.c with pkg-config flags"
LD_LIBRARY_PATH="$(pkg-config --variable=libdir jamba)" "$tmp/model_info_pc" "$model" >"$tmp/model_info_pc.out" ||
  fail "model_info (pkg-config) failed"
cmp -s "$tmp/model_info.out" "$tmp/model_info_pc.out" || fail "model_info differs between CMake and pkg-config builds"
lib_version="$(LD_LIBRARY_PATH="$(pkg-config --variable=libdir jamba)" "$tmp/version_pc")" ||
  fail "jamba_version() differs from jamba.h's JAMBA_VERSION_STRING / JAMBA_VERSION_NUMBER"

step "one version"
pc_version="$(pkg-config --modversion jamba)"
echo "jamba --version: $version; jamba_version(): $lib_version; pkg-config: $pc_version; CMake package: $pkg_version"
if [ "$version" != "$lib_version" ] || [ "$version" != "$pc_version" ] || [ "$version" != "$pkg_version" ]; then
  fail "the versions differ"
fi
step "the installed CLI"
"$prefix/bin/jamba" inspect --model "$model" >/dev/null || fail "the installed CLI cannot inspect the installed demo model"
# no --model: the CLI's default, <bindir>/../share/jamba/models/demo
(cd "$tmp" && env -u JAMBA_MODEL "$prefix/bin/jamba" generate --prompt "ROMEO:" --max-tokens 4 --seed 1 >"$tmp/generate.out" 2>&1) ||
  { cat "$tmp/generate.out"; fail "the installed CLI does not find its default model in $prefix/share/jamba/models/demo"; }
echo "install_test: OK"
