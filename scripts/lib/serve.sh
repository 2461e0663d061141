# Sourced by the scripts that test a real `lf serve`: start_lf LF DATA starts it on free
# ports with its data directory under DATA (and its log in DATA/serve.log), stops it and
# removes DATA when the script exits, and sets API and RT to the two base URLs.
start_lf() {
  local lf="$1" data="$2"
  LF_LOG="$data/serve.log"
  "$lf" serve --data-dir "$data/data" --port 0 --runtime-port 0 >"$LF_LOG" 2>&1 &
  LF_PID=$!
  trap 'kill $LF_PID 2>/dev/null || true; wait $LF_PID 2>/dev/null || true; rm -rf "'"$data"'"' EXIT
  for _ in $(seq 1 200); do
    if [ "$(grep -c 'listening on http' "$LF_LOG" || true)" -ge 2 ]; then break; fi
    sleep 0.1
  done
  API="$(grep 'listening on http' "$LF_LOG" | grep -v -i runtime | head -1 | grep -o 'http://[^ ]*')"
  RT="$(grep 'listening on http' "$LF_LOG" | grep -i runtime | head -1 | grep -o 'http://[^ ]*')"
  [ -n "$API" ] && [ -n "$RT" ] || { cat "$LF_LOG"; echo "lf serve did not start"; exit 1; }
}
