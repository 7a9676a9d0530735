#!/usr/bin/env bash
# Middleware overhead: billing-api's full stack (request id, JSON access log, metrics, panic
# catching, timeout, load shedding, body limit, compression negotiation, route recording) against
# a bare axum server answering the same `GET /` with the same body, measured in the same run and
# alternated to share the machine's noise. Two ratios per round:
#   - throughput: requests/s of the service / requests/s of bare axum;
#   - CPU: requests per CPU-second of the service / the same of bare axum (the server's own CPU
#     time, from /proc/PID/schedstat). On a shared machine throughput swings with the neighbours;
#     the CPU a request costs barely does, and it is what throughput follows when the server is
#     the bottleneck.
# Target: median ratio >= 0.85.
# Usage: bench/middleware.sh            (DURATION=5 CONNS=32 ROUNDS=7 to change the run)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${DURATION:-5} CONNS=${CONNS:-32} ROUNDS=${ROUNDS:-7}
build
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

bare_port=$(free_port)
"${SERVER_CPU[@]}" target/release/examples/bare-axum "127.0.0.1:$bare_port" >/dev/null &
pids+=($!)
bare_pid=$!
svc_port=$(free_port)
BILLING_SERVER__PORT=$svc_port BILLING_ADMIN__PORT=0 BILLING_DATABASE__URL="sqlite://$work/bench.db" BILLING_SHUTDOWN__GRACE_PERIOD=0s \
  "${SERVER_CPU[@]}" env ${BENCH_SVC_ENV:-} target/release/billing-api serve >/dev/null 2>&1 &
pids+=($!)
svc_pid=$!
wait_http "http://127.0.0.1:$bare_port/"
wait_http "http://127.0.0.1:$svc_port/"
diff <(curl -fsS "http://127.0.0.1:$bare_port/") <(curl -fsS "http://127.0.0.1:$svc_port/") >/dev/null \
  || { echo "the two servers answer differently"; exit 1; }

# CPU time (ns) the process has run, all threads.
cpu_ns() { awk '{s += $1} END {print s}' /proc/"$1"/task/*/schedstat; }
# One run: prints "requests/s requests-per-CPU-second".
run() { # pid url
  local before after out
  before=$(cpu_ns "$1")
  out=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$2")
  after=$(cpu_ns "$1")
  python3 -c "
import sys
rps = float('$(wrk_rps <<<"$out")'); total = int('$(awk '/requests in/ {print $1}' <<<"$out")')
print(f'{rps:.0f} {total / (($after - $before) / 1e9):.0f}')"
}

ratios=() cpu_ratios=()
printf '%-6s %10s %10s %8s %12s %12s %8s\n' round bare_rps svc_rps ratio bare_req/cpu svc_req/cpu cpu_ratio
for round in $(seq 1 "$ROUNDS"); do
  read -r bare bare_eff < <(run "$bare_pid" "http://127.0.0.1:$bare_port/")
  read -r svc svc_eff < <(run "$svc_pid" "http://127.0.0.1:$svc_port/")
  ratio=$(python3 -c "print(f'{$svc / $bare:.3f}')")
  cpu_ratio=$(python3 -c "print(f'{$svc_eff / $bare_eff:.3f}')")
  ratios+=("$ratio") cpu_ratios+=("$cpu_ratio")
  printf '%-6s %10s %10s %8s %12s %12s %8s\n' "$round" "$bare" "$svc" "$ratio" "$bare_eff" "$svc_eff" "$cpu_ratio"
done
spread() { python3 -c "
import sys; r = sorted(float(x) for x in sys.argv[1:]); m = r[len(r) // 2] if len(r) % 2 else (r[len(r)//2 - 1] + r[len(r)//2]) / 2
print(f'{m:.3f} (min {r[0]:.3f}, max {r[-1]:.3f})')" "$@"; }
echo "middleware: throughput ratio median $(spread "${ratios[@]}"); CPU per request ratio median $(spread "${cpu_ratios[@]}"); target >= 0.85"
median_cpu=$(printf '%s\n' "${cpu_ratios[@]}" | median)
if [ "${BENCH_ENFORCE:-0}" = 1 ]; then python3 -c "import sys; sys.exit(0 if $median_cpu >= 0.85 else 1)"; fi
