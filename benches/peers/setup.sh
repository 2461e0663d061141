#!/usr/bin/env bash
# Creates the virtualenv the peer scripts run in (PyPI only; cached between runs).
set -euo pipefail
VENV="${PEERS_VENV:-$HOME/.cache/llamafarm-rs/peers-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "sentence-transformers==6.2.0" "chromadb==1.5.9" "numpy<3" "pypdf==7.1.1" "python-docx==1.2.0" "beautifulsoup4==4.15.0" \
  "scikit-learn==1.9.1" \
  "torch" "setfit==1.2.0"
# llama.cpp for the chat bench: `setup.sh llama` (a C++ build, ~10 min on 2 cores). Native CPU
# flags crash here, so the build is pinned to AVX2 (offline-models.md).
if [ "${1:-}" = "llama" ] && ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-binary llama-cpp-python "llama-cpp-python==0.3.36"
fi
echo "$VENV"
