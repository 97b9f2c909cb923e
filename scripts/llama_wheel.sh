#!/usr/bin/env bash
# Builds llama-cpp-python once per (version, CMake flags, Python tag, machine) into a folder keyed
# by all four, and prints the wheel's path. The Makefile installs that file, never a wheel from
# pip's own cache: pip caches a built wheel under one name whatever the flags or CPU, so a wheel
# compiled with -march=native on one machine would silently be reused on another.
#
# Why these flags: llama.cpp's default build (GGML_NATIVE=ON) compiles with -march=native, and on
# a CPU with AMX (Sapphire Rapids class) that turns on ggml's AMX backend, which segfaults on the
# first call (llama.cpp#20824). GGML_NATIVE=OFF with AVX2/FMA/F16C runs on any x86-64 CPU since
# 2013 (Haswell, Zen 1); AMX and AVX-512 stay off (see benchmarks/README.md for the AVX-512
# measurement). On aarch64, GGML_NATIVE=OFF builds for the baseline ARMv8 the compiler targets.
#
#   scripts/llama_wheel.sh PYTHON          # prints the wheel path, building it if needed
#   PROMPTOPS_LLAMA_CMAKE_ARGS="..." ...   # other flags (a different key, so a different wheel)
set -euo pipefail

python=${1:?usage: scripts/llama_wheel.sh PYTHON}
version=${PROMPTOPS_LLAMA_VERSION:-0.3.36}
machine=$(uname -m)
case "$machine" in
  x86_64|amd64)
    flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" ;;
  *)
    flags="-DGGML_NATIVE=OFF" ;;
esac
flags=${PROMPTOPS_LLAMA_CMAKE_ARGS:-$flags}
pytag=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
key=$(printf '%s\n%s\n%s\n%s\n' "$version" "$flags" "$pytag" "$machine" | sha256sum | cut -c1-12)
root=${PROMPTOPS_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/promptops/wheels}
dir="$root/llama-cpp-python-$version-$pytag-$machine-$key"

wheel=$(ls "$dir"/llama_cpp_python-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  mkdir -p "$root"
  tmp=$(mktemp -d "$root/.build-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "Compiling llama-cpp-python $version for $machine (once; about 4 to 8 minutes on 2 cores)" >&2
  echo "  CMAKE_ARGS=$flags" >&2
  # --no-cache-dir: neither take nor leave a wheel in pip's cache, which ignores the flags.
  CMAKE_ARGS="$flags" FORCE_CMAKE=1 "$python" -m pip wheel --quiet --no-deps --no-cache-dir \
    --no-binary llama-cpp-python -w "$tmp/wheel" "llama-cpp-python==$version" >&2
  printf 'version=%s\nflags=%s\npython=%s\nmachine=%s\n' "$version" "$flags" "$pytag" "$machine" \
    >"$tmp/wheel/BUILD-FLAGS"
  # The folder appears whole or not at all: a killed build leaves only a .build-* folder.
  rm -rf "$dir"
  mv "$tmp/wheel" "$dir"
  wheel=$(ls "$dir"/llama_cpp_python-*.whl | head -n 1)
fi
echo "$wheel"
