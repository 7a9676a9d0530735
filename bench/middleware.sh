#!/usr/bin/env bash
# Middleware overhead: requests/s of billing-api's full stack (request id, span, JSON access log,
# panic catching, timeout, load shedding, body limit, compression negotiation, route recording)
# against a bare axum server answering the same `GET /` with the same body, measured in the same run
# and alternated to share the machine's noise. Target: ratio >= 0.85.
# Usage: bench/middleware.sh            (DURATION=8 CONNS=32 ROUNDS=3 to change the run)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${DURATION:-8} CONNS=${CONNS:-32} ROUNDS=${ROUNDS:-3}
build
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

bare_port=$(free_port)
"${SERVER_CPU[@]}" target/release/examples/bare-axum "127.0.0.1:$bare_port" >/dev/null &
pids+=($!)
svc_port=$(free_port)
BILLING_SERVER__PORT=$svc_port BILLING_ADMIN__PORT=0 BILLING_DATABASE__URL="sqlite://$work/bench.db" BILLING_SHUTDOWN__GRACE_PERIOD=0s \
  "${SERVER_CPU[@]}" env ${BENCH_SVC_ENV:-} target/release/billing-api serve >/dev/null 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$bare_port/"
wait_http "http://127.0.0.1:$svc_port/"
diff <(curl -fsS "http://127.0.0.1:$bare_port/") <(curl -fsS "http://127.0.0.1:$svc_port/") >/dev/null \
  || { echo "the two servers answer differently"; exit 1; }

ratios=()
printf '%-6s %14s %14s %8s\n' round bare_rps service_rps ratio
for round in $(seq 1 "$ROUNDS"); do
  bare=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$bare_port/" | wrk_rps)
  svc=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$svc_port/" | wrk_rps)
  ratio=$(python3 -c "print(f'{$svc / $bare:.3f}')")
  ratios+=("$ratio")
  printf '%-6s %14s %14s %8s\n' "$round" "$bare" "$svc" "$ratio"
done
median_ratio=$(printf '%s\n' "${ratios[@]}" | median)
echo "middleware: median ratio $median_ratio (service / bare axum), target >= 0.85"
if [ "${BENCH_ENFORCE:-0}" = 1 ] && python3 -c "import sys; sys.exit(0 if $median_ratio >= 0.85 else 1)"; then :; elif [ "${BENCH_ENFORCE:-0}" = 1 ]; then exit 1; fi
