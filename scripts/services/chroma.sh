#!/usr/bin/env bash
# Installs the Chroma server (PyPI `chromadb`, pinned) into a venv outside the repo and
# prints the path of its `chroma` command. The tests start `chroma run` on a free
# loopback port with a temporary data directory (LF_CHROMA names the command).
set -euo pipefail
VENV="${LF_CHROMA_VENV:-$HOME/.cache/llamafarm-rs/chroma-venv}"
CHROMA_VERSION=1.5.9
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('chromadb') != '$CHROMA_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "chromadb==$CHROMA_VERSION" >&2
fi
echo "$VENV/bin/chroma"
