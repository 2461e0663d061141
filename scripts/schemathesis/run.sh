#!/usr/bin/env bash
# Schema fuzzing: schemathesis (pinned, from PyPI, in the SDK venv) against a real
# `lf serve` on free ports, both OpenAPI documents, a time budget per port. Fails on any
# 5xx but the documented 503s of operations that need a model (schemathesis.toml), and on
# any response that breaks its own schema. The model cache is empty and the model hub
# unreachable, so nothing is downloaded and no model runs. Left out: the model download
# (it streams from the hub) and the RAG import, whose JSON Lines body schemathesis cannot
# generate (tests/it/bad_input.rs sends it bad exports).
set -euo pipefail
cd "$(dirname "$0")/../.."
LF="${1:-${CARGO_TARGET_DIR:-target}/debug/lf}"
BUDGET="${SCHEMATHESIS_SECONDS:-60}"
VENV="${LF_SDK_VENV:-$HOME/.cache/llamafarm-rs/sdk-venv}"
VERSION=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi
. scripts/lib/serve.sh
DATA="$(mktemp -d)"
HF_HUB_CACHE="$DATA/hub" HF_ENDPOINT="http://127.0.0.1:9" start_lf "$LF" "$DATA"
# Something to find: a project with a dataset.
curl -sf -X POST "$API/v1/projects/st" -H 'content-type: application/json' -d '{"name": "kb"}' >/dev/null
curl -sf -X POST "$API/v1/projects/st/kb/datasets" -H 'content-type: application/json' -d '{"name": "docs", "database": "main_database"}' >/dev/null
for url in "$API" "$RT"; do
  echo "schemathesis: $url/openapi.json (${BUDGET} s)"
  "$VENV/bin/schemathesis" --config-file scripts/schemathesis/schemathesis.toml run "$url/openapi.json" \
    --checks not_a_server_error,response_schema_conformance --max-time "$BUDGET" --workers 2 \
    --exclude-path-regex '^/v1/models/download$|/rag/databases/[^/]+/import$' --no-color
done
if grep -q "panicked" "$LF_LOG"; then grep -B2 -A5 panicked "$LF_LOG"; echo "the server panicked"; exit 1; fi
echo "schemathesis: no server errors, every response matches its schema"
