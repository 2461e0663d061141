#!/usr/bin/env bash
# Makes sure the tools that build the optional llama.cpp engine are installed: cmake and a
# C++ compiler for llama.cpp itself, libclang for its bindings (Debian's packages).
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
# (libclang-dev: the library bindgen loads, and the compiler headers it parses with)
if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
