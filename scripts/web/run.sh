#!/usr/bin/env bash
# End-to-end test of the web app: Playwright for Python (pinned, from PyPI, in a venv
# outside the repo) drives Debian's Chromium (installed here if absent; Playwright's own
# browser download is not used) against a real `lf serve`. Needs the models from
# scripts/fetch-models.sh and a built `lf` (pass its path). Screenshots and metrics.json
# go to $LF_WEB_OUT (default: web-e2e under CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
LF="${1:-${CARGO_TARGET_DIR:-target}/debug/lf}"
OUT="${LF_WEB_OUT:-${CARGO_TARGET_DIR:-target}/web-e2e}"
VENV="${LF_WEB_VENV:-$HOME/.cache/llamafarm-rs/web-venv}"
PLAYWRIGHT_VERSION=1.65.3
# The MCP SDK runs the small MCP server (scripts/sdk/mcp_facts_server.py) whose tool the chat test calls.
MCP_VERSION=2.3.0
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '$PLAYWRIGHT_VERSION' or m.version('mcp') != '$MCP_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION" "mcp==$MCP_VERSION"
fi
rm -rf "$OUT"
"$VENV/bin/python" scripts/web/e2e.py "$LF" "$OUT"
