#!/usr/bin/env bash
# Creates the virtualenv the peer scripts run in (PyPI only; cached between runs).
set -euo pipefail
VENV="${PEERS_VENV:-$HOME/.cache/llamafarm-rs/peers-venv}"
# llama.cpp's own server for the concurrency comparison: `setup.sh llama-server [avx2]`,
# built with cmake from the llama.cpp sources the same llama-cpp-python sdist ships (the
# instruction sets of `setup.sh llama` below; `avx2` for an AVX2-only CPU; no web UI, no
# curl), into ~/.cache/llamafarm-rs/llama-server.
if [ "${1:-}" = "llama-server" ]; then
  dest="$HOME/.cache/llamafarm-rs/llama-server"
  flags="-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
  if [ "${2:-}" = "avx2" ]; then flags="-DGGML_AVX512=OFF"; fi
  if [ ! -x "$dest/bin/llama-server" ]; then
    work="$(mktemp -d)"
    (cd "$work" && python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: "llama-cpp-python==0.3.36" -d . \
      && tar xzf llama_cpp_python-0.3.36.tar.gz)
    src="$work/llama_cpp_python-0.3.36/vendor/llama.cpp"
    # shellcheck disable=SC2086
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON $flags -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF >/dev/null
    cmake --build "$work/build" --target llama-server -j "$(nproc)" >/dev/null
    mkdir -p "$dest/bin" && cp "$work/build/bin/llama-server" "$dest/bin/"
    rm -rf "$work"
  fi
  echo "$dest/bin/llama-server"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "sentence-transformers==6.2.0" "chromadb==1.5.9" "numpy<3" "pypdf==7.1.1" "python-docx==1.2.0" "beautifulsoup4==4.15.0" \
  "scikit-learn==1.9.1" "gguf==0.19.0" "rapidocr-onnxruntime==1.4.4" "onnx==1.19.1" \
  "torch" "setfit==1.2.0" "huggingface_hub==2.4.0"
# llama.cpp for the chat benches: `setup.sh llama` (a C++ build, ~10 min on 2 cores each).
# GGML_NATIVE builds crashed on a machine of this kind, so the instruction sets are named:
# the main venv gets AVX-512 with VNNI and BF16 (what our kernels use there), AMX off;
# "$VENV-avx2" gets the AVX2-only build (pip's wheel cache is off: it would hand back the other build) for the second row (ours held to AVX2 with LF_NO_AVX512).
build_llama() {
  local venv="$1" flags="$2"
  if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
  if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON $flags -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_SERVER=ON" \
      "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==0.3.36" "numpy<3"
  fi
}
if [ "${1:-}" = "llama" ]; then
  build_llama "$VENV" "-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
  if [ "${2:-}" = "avx2" ]; then
    build_llama "$VENV-avx2" "-DGGML_AVX512=OFF"
  fi
fi
echo "$VENV"
