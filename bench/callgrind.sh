#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind (repeatable whatever else the machine
# does, unlike timings): the service and the bare-axum baseline each serve N requests of `GET /`
# (after a warm-up that is not counted); prints instructions per request for both, their ratio,
# and the service's heaviest functions (inclusive). Uses the profiling build.
# Usage: bench/callgrind.sh [PATH]          (REQUESTS=3000 OUT=target/callgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
path=${1:-/}
REQUESTS=${REQUESTS:-3000} OUT=${OUT:-target/callgrind}
cargo build --profile profiling --locked --quiet --bin billing-api --example bare-axum
mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

measure() { # name port command...
  local name=$1 port=$2
  shift 2
  rm -f "$OUT/$name".out*
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$name.out" "$@" >/dev/null 2>"$OUT/$name.valgrind" &
  local pid=$!
  pids+=("$pid")
  wait_http_slow "http://127.0.0.1:$port/health/live" "http://127.0.0.1:$port/"
  # Warm-up (lazy statics, connection set-up), then count exactly REQUESTS requests.
  wrk -t1 -c4 -d2s "http://127.0.0.1:$port$path" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  python3 - "$port" "$path" "$REQUESTS" <<'PY'
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(4)]
for i in range(n):
    c = conns[i % 4]
    c.request("GET", path)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
wait_http_slow() { # url... (under valgrind the start takes a while)
  for _ in $(seq 1 600); do
    for url in "$@"; do curl -fsS -o /dev/null "$url" 2>/dev/null && return 0; done
    sleep 0.1
  done
  echo "not answering: $*" >&2; return 1
}

bare_port=$(free_port) svc_port=$(free_port)
measure bare "$bare_port" target/profiling/examples/bare-axum "127.0.0.1:$bare_port"
BILLING_SERVER__PORT=$svc_port BILLING_ADMIN__PORT=0 BILLING_DATABASE__URL="sqlite://$work/cg.db" BILLING_SHUTDOWN__GRACE_PERIOD=0s \
  measure service "$svc_port" target/profiling/billing-api serve
total() { callgrind_annotate "$OUT/$1.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}'; }
bare=$(total bare) svc=$(total service)
python3 -c "
b, s, n = $bare, $svc, $REQUESTS
print(f'instructions per request: bare axum {b / n:,.0f}, service {s / n:,.0f}; ratio {b / s:.3f} (bare / service)')"
echo "== the service's heaviest functions (inclusive, per request)"
callgrind_annotate --inclusive=yes "$OUT/service.out.1" 2>/dev/null \
  | awk -v n="$REQUESTS" '/^ *[0-9,]+ \(/ { c = $1; gsub(",", "", c); $1 = ""; $2 = ""; printf "%10.0f %s\n", c / n, substr($0, 1, 160) }' \
  | awk "NR <= 45" | tee "$OUT/service-top.txt"
