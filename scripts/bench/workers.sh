#!/usr/bin/env bash
# Ingestion throughput with N `lf worker` processes on a Redis queue, against the same
# folders processed in process by a plain `lf serve`:
#   scripts/bench/workers.sh [LF] [FOLDER...]
# (default: the debug `lf`, ../shared/data/docs/markdown and .../pdf). Prints, per setup,
# the wall time from the process request to SUCCESS, files/s, chunks/s, and for the
# worker runs the Redis commands the workers sent per file. Needs redis-server.
set -euo pipefail
cd "$(dirname "$0")/../.."
LF="${1:-${CARGO_TARGET_DIR:-target}/debug/lf}"
shift || true
FOLDERS=("$@")
[ ${#FOLDERS[@]} -gt 0 ] || FOLDERS=(../shared/data/docs/markdown ../shared/data/docs/pdf)
for i in "${!FOLDERS[@]}"; do FOLDERS[$i]="$(cd "${FOLDERS[$i]}" && pwd)"; done
REDIS_SERVER="${LF_REDIS_SERVER:-redis-server}"
WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

run() {
  local workers="$1" tag="$2"
  local data="$WORK/$tag" queue_args=() q=""
  mkdir -p "$data"
  if [ "$workers" -gt 0 ]; then
    local port; port="$(free_port)"
    "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
    PIDS+=($!)
    q="redis://127.0.0.1:$port"
    queue_args=(--queue "$q")
    sleep 0.5
  fi
  "$LF" serve --data-dir "$data/data" --port 0 --runtime-port 0 "${queue_args[@]}" >"$data/serve.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    [ "$(grep -c 'listening on http' "$data/serve.log" || true)" -ge 2 ] && break
    sleep 0.1
  done
  local api; api="$(grep 'listening on http' "$data/serve.log" | grep -v -i runtime | head -1 | grep -o 'http://[^ ]*')"
  (cd "$data" && "$LF" --server-url "$api" init bench >/dev/null)
  (cd "$data/bench" && "$LF" --server-url "$api" datasets create -s universal_rag -b main_database docs >/dev/null)
  for f in "${FOLDERS[@]}"; do
    (cd "$data/bench" && "$LF" --server-url "$api" datasets upload docs "$f" --no-process >/dev/null)
  done
  local wpids=()
  for i in $(seq 1 "$workers"); do
    "$LF" --server-url "$api" worker --queue "$q" --name "w$i" >"$data/worker$i.log" 2>&1 &
    wpids+=($!)
    PIDS+=($!)
  done
  # Warm the embedding model everywhere first: a one-file task.
  local t0 t1 task state
  t0="$(date +%s.%N)"
  task="$(curl -sf -X POST "$api/v1/projects/default/bench/datasets/docs/actions" -H 'content-type: application/json' -d '{"action_type": "process"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')"
  while :; do
    state="$(curl -sf "$api/v1/projects/default/bench/tasks/$task" | python3 -c 'import json,sys; t=json.load(sys.stdin); print(t["state"])')"
    case "$state" in SUCCESS|FAILURE|REVOKED) break ;; esac
    sleep 0.2
  done
  t1="$(date +%s.%N)"
  local summary; summary="$(curl -sf "$api/v1/projects/default/bench/tasks/$task" | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["processed_files"], r["failed_files"], r["total_chunks"])')"
  for p in "${wpids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  local cmds=0
  for i in $(seq 1 "$workers"); do
    local c; c="$(grep -o '([0-9]* queue commands)' "$data/worker$i.log" | grep -o '[0-9]*' || echo 0)"
    cmds=$((cmds + c))
  done
  python3 - "$tag" "$state" "$t0" "$t1" $summary "$cmds" "$workers" <<'PY'
import sys
tag, state, t0, t1, files, failed, chunks, cmds, workers = sys.argv[1:10]
s = float(t1) - float(t0)
files, chunks, cmds, workers = int(files), int(chunks), int(cmds), int(workers)
per = f"; {cmds / max(files, 1):.2f} Redis commands per file" if workers else ""
print(f"| {tag} | {state} | {files} files ({failed} failed), {chunks} chunks | {s:.1f} s | {files / s:.2f} files/s | {chunks / s:.0f} chunks/s{per} |")
PY
}

echo "| setup | state | work | wall | files/s | chunks/s |"
echo "|---|---|---|---|---|---|"
run 0 "in process"
run 1 "1 worker"
run 2 "2 workers"
