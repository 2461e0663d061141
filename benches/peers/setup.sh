#!/usr/bin/env bash
# Creates the virtualenv the peer scripts run in (PyPI only; cached between runs).
set -euo pipefail
VENV="${PEERS_VENV:-$HOME/.cache/llamafarm-rs/peers-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "sentence-transformers==6.2.0" "chromadb==1.5.9" "numpy<3" "pypdf==7.1.1" "python-docx==1.2.0" "beautifulsoup4==4.15.0"
echo "$VENV"
