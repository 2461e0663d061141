#!/usr/bin/env bash
# The test suite, exactly as CI runs it. Works on a fresh machine with Rust,
# python3 and pip: it fetches the pinned real models first (cached after the first run).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
scripts/fetch-models.sh
# The optional engines are built, linted and tested too: llama.cpp, compiled from source
# (cmake, g++ and libclang, installed when missing; about 5 minutes once), and Tesseract,
# linked against Debian's libtesseract (installed when missing, with its English data).
scripts/services/llamacpp-toolchain.sh
scripts/services/tesseract-libs.sh
FEATURES=(--features llamafarm-core/llm-llamacpp,llamafarm-tests/llm-llamacpp,llamafarm-benches/llm-llamacpp,llamafarm-core/ocr-tesseract,llamafarm-tests/ocr-tesseract,llamafarm-benches/ocr-tesseract)
cargo clippy --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings
# Real servers the tests start on loopback: a Chroma server (pinned, from PyPI) and Redis
# (Debian's package).
LF_CHROMA="$(scripts/services/chroma.sh)"
LF_REDIS_SERVER="$(scripts/services/redis.sh)"
export LF_CHROMA LF_REDIS_SERVER
cargo test --workspace --locked "${FEATURES[@]}"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet "${FEATURES[@]}"
# The official openai Python SDK against a real `lf serve` (chat, streaming, models, embeddings,
# tools, structured outputs), and the official MCP Python SDK against its MCP server.
scripts/sdk/run.sh "${CARGO_TARGET_DIR:-target}/debug/lf"
# The web app in Chromium (Playwright for Python): every page, driven as a user would.
scripts/web/run.sh "${CARGO_TARGET_DIR:-target}/debug/lf"
# Schema fuzzing of both ports (schemathesis): no 5xx but documented 503s, every response
# matching its schema.
scripts/schemathesis/run.sh "${CARGO_TARGET_DIR:-target}/debug/lf"
# The embedding example must run, not just build.
# (Built with the workspace's feature set: `cargo run -p` would rebuild mistral.rs for another one.)
cargo build --workspace --examples --locked --quiet "${FEATURES[@]}"
"${CARGO_TARGET_DIR:-target}/debug/examples/embed_projects" "$(mktemp -d)" >/dev/null
echo "scripts/test.sh: all checks passed"
