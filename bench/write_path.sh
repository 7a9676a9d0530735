#!/usr/bin/env bash
# Write path: POST /v1/payments per second (auth → idempotency → row lock → payment → invoice →
# ledger → balance → audit → event → stored response → commit) against pgbench replaying exactly
# the statements the service sends, on the same PostgreSQL, with the same client count.
#
# The replay is not written by hand: PostgreSQL's own log of one real request
# (log_statement = all) is turned into a pgbench script by bench/replay.py, and under load
# pg_stat_statements counts the statements per request on both sides, which must be equal.
# Rounds are pgbench, service, pgbench (A-B-A) so that both share the machine's noise; the
# median ratio and its spread are reported, then p50/p99 latency of both at half the service's
# peak rate.
#
# Cores: PostgreSQL runs on core 1; the load generator and the client under test (billing-api, or
# pgbench's own client) on core 0. Both sides then have the same database capacity, and the
# ratio says whether the service keeps the database as busy as a bare client does.
# Commits are asynchronous by default (PG_SYNCHRONOUS_COMMIT=off): with fsync on a virtual disk
# the disk sets the pace and its noise swamps the comparison; set it to `on` for durable figures.
#
# Target: median ratio >= 0.80, spread under ±10 %.
# Usage: bench/write_path.sh     (DURATION=10 CONNS=16 ROUNDS=7 INVOICES=256 PG_SYNCHRONOUS_COMMIT=off)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${DURATION:-10} CONNS=${CONNS:-16} ROUNDS=${ROUNDS:-7} INVOICES=${INVOICES:-256}
export PG_SYNCHRONOUS_COMMIT=${PG_SYNCHRONOUS_COMMIT:-off}
build
# The database lives in memory (/dev/shm) when it can: what is compared is the work the two
# clients give PostgreSQL, and a virtual disk's stalls (WAL writes, background writes) otherwise
# move single runs by half.
work=$(mktemp -d -p "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")
[ -z "${KEEP:-}" ] || echo "work: $work"
chmod 755 "$work"
svc=
cleanup() { [ -n "$svc" ] && kill "$svc" 2>/dev/null; stop_postgres; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

if [ ${#SERVER_CPU[@]} -gt 0 ]; then
  PG_CPU=(taskset -c 1) CLIENT_CPU=(taskset -c 0)
else
  PG_CPU=() CLIENT_CPU=()
fi
# Checkpoints would land on whichever side happens to be running: WAL is allowed to grow so that
# none falls in the few minutes of the benchmark. (Autovacuum stays on: this workload updates the
# same few hundred invoice rows all the time, and without it they bloat and every round is
# slower than the one before.)
PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements -c logging_collector=on -c log_destination=jsonlog -c log_directory=$work/pglog"
PG_OPTIONS+=" -c max_wal_size=16GB -c checkpoint_timeout=1h"
# (log_statement is left to postgresql.auto.conf: a -c on the command line would outrank ALTER SYSTEM.)
start_postgres "$work" "$(free_port)"
psql -q "$PG_URL" -c "CREATE EXTENSION pg_stat_statements" >/dev/null
export BILLING_DATABASE__URL=$PG_URL
bin=target/release/billing-api
"$bin" migrate run >/dev/null
KEY=$("$bin" apikey create --tenant bench --scope '*' 2>/dev/null)
export BENCH_KEY=$KEY
keyid="key_$(cut -c5-20 <<<"$KEY")"

port=$(free_port)
# No background work of its own during the run: the dispatcher and the purger poll on a timer,
# and what is measured (and captured) is the request.
BILLING_SERVER__PORT=$port BILLING_ADMIN__PORT=0 BILLING_DATABASE__MAX_CONNECTIONS=$CONNS BILLING_SHUTDOWN__GRACE_PERIOD=0s \
  BILLING_WEBHOOKS__DISPATCHER=false BILLING_IDEMPOTENCY__PURGER=false BILLING_LOG__LEVEL=warn \
  "${CLIENT_CPU[@]}" "$bin" serve >"$work/service.log" 2>&1 &
svc=$!
base="http://127.0.0.1:$port"
wait_http "$base/health/ready"

auth="Authorization: Bearer $KEY"
# One customer per invoice, so payments contend on invoice and balance rows only as real ones would.
: >"$work/invoices"
: >"$work/fixtures.tsv"
for _ in $(seq 1 "$INVOICES"); do
  customer=$(curl -fsS "$base/v1/customers" -H "$auth" -H 'Content-Type: application/json' -d '{"currency":"usd"}' | jq -r .id)
  inv=$(curl -fsS "$base/v1/invoices" -H "$auth" -H 'Content-Type: application/json' \
    -d '{"customer":"'"$customer"'","lines":[{"description":"bench","unit_amount":1000000000000}]}' | jq -r .id)
  curl -fsS -X POST "$base/v1/invoices/$inv/finalize" -H "$auth" >/dev/null
  echo "$inv" >>"$work/invoices"
  printf '%s\t%s\n' "$inv" "$customer" >>"$work/fixtures.tsv"
done
export BENCH_INVOICES=$work/invoices

# Warm the service up (connections opened, statements prepared, the key's last use recorded).
wrk -t1 -c"$CONNS" -d3s -s bench/payment.lua "$base/" >/dev/null 2>&1

# Capture one request as PostgreSQL sees it, and make the replay from it.
first=$(head -1 "$work/fixtures.tsv")
psql -q "$PG_URL" -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
curl -fsS "$base/v1/payments" -H "$auth" -H 'Content-Type: application/json' -H 'Idempotency-Key: bench-capture-1' \
  -d '{"invoice":"'"${first%%$'\t'*}"'","amount":1,"currency":"usd"}' >/dev/null
sleep 0.5
psql -q "$PG_URL" -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
echo "one POST /v1/payments, as PostgreSQL logged it:"
python3 bench/replay.py --log "$work"/pglog/*.json --invoice "${first%%$'\t'*}" --customer "${first#*$'\t'}" \
  --fixtures "$work/fixtures.tsv" --key-id "$keyid" --idempotency-key bench-capture-1 --out "$work/replay.pgbench" \
  | tee "$work/replay.txt"
captured=$(awk '/^statements: / {print $2}' "$work/replay.txt")
replayed=$(grep -cv -e '^--' -e '^\\' "$work/replay.pgbench")
[ "$captured" = "$replayed" ] || { echo "the replay has $replayed statements, the request sent $captured"; exit 1; }

pgbench_run() { # extra pgbench arguments...
  "${CLIENT_CPU[@]}" "$PGBENCH" -n -M prepared -c "$CONNS" -j 1 -f "$work/replay.pgbench" "$@" "$PG_URL"
}
pgbench_run -T 3 >/dev/null 2>&1

# Statements per payment, transaction control left out (pgbench's BEGIN/COMMIT are not counted
# in prepared mode; the replay's are checked against the capture above).
calls() { psql -tA "$PG_URL" -c "SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT ILIKE '%pg_stat_statements%' AND upper(query) !~ '^\\s*(BEGIN|COMMIT|ROLLBACK|START)'"; }
by_statement() { psql -tA "$PG_URL" -c "SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) FROM pg_stat_statements ORDER BY calls DESC LIMIT 20"; }
reset_calls() { psql -tA "$PG_URL" -c "SELECT pg_stat_statements_reset()" >/dev/null; }

# One pgbench run of $1 seconds: sets tps, txs (transactions) and pg_stmts (statements per one).
pgbench_round() {
  local out failed
  reset_calls
  out=$(pgbench_run -T "$1" 2>"$work/pgbench.err") || { echo "pgbench failed:"; cat "$work/pgbench.err"; exit 1; }
  tps=$(awk '/^tps = / {print $3}' <<<"$out")
  txs=$(awk '/^number of transactions actually processed:/ {print $NF}' <<<"$out")
  failed=$(awk '/^number of failed transactions:/ {print $5}' <<<"$out")
  [ "${failed:-0}" = 0 ] || { echo "pgbench: $failed failed transactions"; exit 1; }
  pg_stmts=$(python3 -c "print(f'{$(calls) / $txs:.2f}')")
}

# Each round is A-B-A: pgbench for half the time, the service for the whole time, pgbench for
# the other half. The service's run is centred between the two halves of its baseline, so a
# drift of the machine's speed during the round (neighbours come and go) cancels out instead of
# landing on one side.
half=$(python3 -c "print(max(1, round($DURATION / 2)))")
# CPU time the hypervisor gave to other guests (the 8th field of /proc/stat's cpu line), in ticks.
steal() { awk '/^cpu / {print $9}' /proc/stat; }
steal_before=$(steal) rounds_started=$SECONDS
ratios=() svc_rates=()
printf '%-6s %12s %12s %10s %12s %10s %8s\n' round pgbench_tps pgbench_tps stmts/tx service_rps stmts/req ratio
for round in $(seq 1 "$ROUNDS"); do
  pgbench_round "$half"
  tps_before=$tps stmts_before=$pg_stmts
  reset_calls
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/payment.lua "$base/" >"$work/wrk.out" 2>"$work/wrk.err"
  rps=$(wrk_rps <"$work/wrk.out")
  requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  grep -q "non-2xx or socket errors: 0" "$work/wrk.err" || { echo "payments failed:"; cat "$work/wrk.err"; exit 1; }
  svc_stmts=$(python3 -c "print(f'{$(calls) / $requests:.2f}')")
  pgbench_round "$half"
  # The two sides must send the same statements per payment (a few background statements, like
  # an API key's last use once a minute, are allowed for: 1 %).
  for pg in "$stmts_before" "$pg_stmts"; do
    python3 -c "import sys; sys.exit(0 if abs($svc_stmts - $pg) <= 0.01 * $pg else 1)" \
      || { echo "statements per payment differ: service $svc_stmts, replay $pg; the service's calls:"; by_statement; exit 1; }
  done
  ratio=$(python3 -c "print(f'{$rps / (($tps_before + $tps) / 2):.3f}')")
  ratios+=("$ratio") svc_rates+=("$rps")
  printf '%-6s %12.0f %12.0f %10s %12s %10s %8s\n' "$round" "$tps_before" "$tps" "$pg_stmts" "$rps" "$svc_stmts" "$ratio"
done
python3 -c "
ticks = $(steal) - $steal_before; seconds = max(1, $SECONDS - $rounds_started)
print(f'steal time during the rounds: {ticks / $(getconf CLK_TCK) / seconds * 100:.1f} % of one core (CPU taken by other guests of the host)')"
median_ratio=$(printf '%s\n' "${ratios[@]}" | median)
# The spread: the farthest round from the median, and the interquartile range, both relative
# to the median.
read -r spread iqr < <(printf '%s\n' "${ratios[@]}" | python3 -c "
import statistics, sys; r = sorted(float(x) for x in sys.stdin); m = statistics.median(r)
q = statistics.quantiles(r, n=4, method='inclusive')
print(f'{max(m - r[0], r[-1] - m) / m * 100:.1f} {(q[2] - q[0]) / 2 / m * 100:.1f}')")
echo "write path: median ratio $median_ratio (service / pgbench replay), spread ±$spread % (farthest round), ±$iqr % (interquartile) over $ROUNDS rounds; target >= 0.80, spread < ±10 %"

# Latency at half the service's peak, offered at the same rate to both sides.
peak=$(printf '%s\n' "${svc_rates[@]}" | median)
rate=$(python3 -c "print(int($peak / 2))")
BENCH_RATE=$rate BENCH_CONNS=$CONNS "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s bench/payment.lua "$base/" >"$work/wrk.lat" 2>"$work/wrk.err"
svc_p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.lat")
svc_p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.lat")
(cd "$work" && pgbench_run -T "$DURATION" -R "$rate" -l --log-prefix=pglat >/dev/null 2>&1)
# pgbench counts a throttled transaction from when it was scheduled; wrk from when it was sent:
# the schedule lag (7th field) is taken out so that both are the time to an answer.
read -r pg_p50 pg_p99 < <(cat "$work"/pglat* | python3 -c "
import sys; l = sorted(int(f[2]) - int(f[6]) for f in (line.split() for line in sys.stdin))
q = lambda p: l[min(len(l) - 1, int(p * len(l)))] / 1000
print(f'{q(0.5):.2f}ms {q(0.99):.2f}ms')")
echo "latency at $rate payments/s (half the service's peak of $peak): service p50 $svc_p50 p99 $svc_p99; pgbench replay p50 $pg_p50 p99 $pg_p99"
paid=$(psql -tA "$PG_URL" -c "SELECT COUNT(*) FROM payments")
echo "$paid payments recorded"
if [ "${BENCH_ENFORCE:-0}" = 1 ]; then
  python3 -c "import sys; sys.exit(0 if $median_ratio >= 0.80 and $spread < 10 else 1)"
fi
