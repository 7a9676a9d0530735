#!/usr/bin/env bash
# Where a request's CPU goes: `GET /` (or PATH) through the full middleware stack under wrk load,
# sampled by perf with call graphs, on the profiling build (the release build with symbols:
# `cargo build --profile profiling`). Prints the heaviest functions by self time and by total
# time (what a flame graph shows widest). The service runs on core 1, wrk on core 0.
# Usage: bench/profile.sh [PATH]          (DURATION=8 CONNS=32 OUT=target/profile)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
path=${1:-/}
DURATION=${DURATION:-8} CONNS=${CONNS:-32} OUT=${OUT:-target/profile}
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)"; exit 1; }
cargo build --profile profiling --locked --quiet --bin billing-api
mkdir -p "$OUT"
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$(free_port)
BILLING_SERVER__PORT=$port BILLING_ADMIN__PORT=0 BILLING_DATABASE__URL="sqlite://$work/profile.db" BILLING_SHUTDOWN__GRACE_PERIOD=0s \
  "${SERVER_CPU[@]}" target/profiling/billing-api serve >/dev/null 2>&1 &
pid=$!
wait_http "http://127.0.0.1:$port/health/ready"
"${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port$path" >/dev/null
"${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" "http://127.0.0.1:$port$path" >"$OUT/wrk.txt" &
load=$!
perf record -q -F 1999 --call-graph dwarf,32768 -p "$pid" -o "$OUT/perf.data" -- sleep "$DURATION" 2>/dev/null
wait "$load"
echo "load: $(wrk_rps <"$OUT/wrk.txt") requests/s"
report() { perf report -i "$OUT/perf.data" --stdio --no-header --percent-limit 1.5 "$@" 2>/dev/null \
  | grep -E '^ +[0-9.]+%' | head -25; }
echo "== by self time"
report --no-children --sort symbol -g none | tee "$OUT/self.txt"
echo "== by total time (self and callees)"
report --children --sort symbol -g none | tee "$OUT/total.txt"
