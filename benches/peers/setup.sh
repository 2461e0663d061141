#!/usr/bin/env bash
# Creates the virtualenv the peer scripts run in (PyPI only; cached between runs).
set -euo pipefail
VENV="${PEERS_VENV:-$HOME/.cache/llamafarm-rs/peers-venv}"
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
