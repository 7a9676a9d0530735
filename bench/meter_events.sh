#!/usr/bin/env bash
# Usage ingestion on one PostgreSQL: meter events per second sent over HTTP in batches of 1,000
# (POST /v1/meter_events, every event new: claimed, stored, added to the rollups of two meters,
# one grouped, until the last rollup delta is folded), against COPY-ing the very rows the run
# stored into the same tables (the physical limit of this machine for those rows). The run is
# checked, not only timed: the events stored must be the events acknowledged, each once.
#
# Then the invoice-time aggregation: a customer with EVENTS_FOR_AGGREGATION events (100 million
# by default) over a month, written as the rollups ingestion makes of them (one row per minute
# and group, by bench/meter_rollups.py), and GET /v1/customers/{id}/usage for that month timed
# many times: p50 and p99.
#
# Goals (issue 14): >= 50,000 events/s, >= 0.5 of COPY, aggregation over 100M events < 1 s p99.
# 16 clients, as many producers would send: the batches that wait for one of the service's
# writers are written together (billing::group_commit), which is what makes a heavy load cheaper
# per event; with CONNS=4 few wait, and the figures are those of one batch per transaction.
# Usage: bench/meter_events.sh    (DURATION=20 CONNS=16 CUSTOMERS=100 PG_SYNCHRONOUS_COMMIT=off
#                                  EVENTS_FOR_AGGREGATION=100000000 QUERIES=200)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${DURATION:-20} CONNS=${CONNS:-16} CUSTOMERS=${CUSTOMERS:-100} QUERIES=${QUERIES:-200}
EVENTS_FOR_AGGREGATION=${EVENTS_FOR_AGGREGATION:-100000000}
export PG_SYNCHRONOUS_COMMIT=${PG_SYNCHRONOUS_COMMIT:-off}
service_bench

mkdir -p "$work/pg"
# As in production's steady state, and for the baseline after its CHECKPOINT: no checkpoint falls
# in the run, and WAL goes to recycled segments rather than new ones zero-filled first (which a
# fresh cluster would otherwise do for the load alone: 6 % of the CPU samples here).
PG_OPTIONS="-c max_wal_size=16GB -c checkpoint_timeout=1h -c wal_init_zero=off ${PG_OPTIONS:-}"
start_postgres "$work/pg" "$(free_port)"
export BILLING_DATABASE__URL=$PG_URL
"$bin" migrate run >/dev/null
key=$("$bin" apikey create --tenant bench --scope '*' 2>/dev/null)
port=$(free_port)
BILLING_SERVER__PORT=$port "$bin" serve >"$work/service.log" 2>&1 &
svc=$!
base=http://127.0.0.1:$port
wait_http "$base/health/ready"
auth=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json')
post() { curl -fsS "${auth[@]}" "$base$1" -d "$2" | jq -r .id; }
post /v1/meters '{"event_name": "api_call", "aggregation": "count"}' >/dev/null
post /v1/meters '{"event_name": "api_call", "aggregation": "sum", "value_property": "$.tokens", "group_by": ["$.model"]}' >/dev/null
for _ in $(seq "$CUSTOMERS"); do post /v1/customers '{"currency": "usd"}'; done >"$work/customers"
psql -qX "$PG_URL" -c "VACUUM ANALYZE" >/dev/null

# CPU seconds (user + system) of a process and its threads, in clock ticks.
cpu_of() { # pid
  awk '{print $14 + $15}' "/proc/$1/stat"
}
# The whole PostgreSQL cluster's: the postmaster's, its living children's, and (in the
# postmaster's cutime and cstime) those of the children that exited, such as autovacuum workers.
pg_cpu() {
  local pm
  pm=$(head -1 "$work/pg/data/postmaster.pid")
  { awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat"
    for p in $(pgrep -P "$pm"); do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true; done
  } | awk '{s += $1} END {print s}'
}
tick=$(getconf CLK_TCK)
svc_before=$(cpu_of "$svc")
pg_before=$(pg_cpu)

# Ingestion over HTTP.
BENCH_KEY=$key BENCH_CUSTOMERS="$work/customers" BENCH_NOW=$(date +%s) \
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 30s -s bench/meter_events.lua "$base" >"$work/wrk.txt" 2>"$work/wrk.err" &
load=$!
# PERF=FILE: a system-wide profile of the middle of the run, for `perf report -i FILE`.
if [ -n "${PERF:-}" ]; then sleep 3; perf record -a -g -o "$PERF" -- sleep 8 >/dev/null 2>&1 || true; fi
wait "$load"
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
seconds=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' "$work/wrk.txt")
if [ -s "$work/wrk.err" ]; then echo "refused requests:"; head -5 "$work/wrk.err"; exit 1; fi
# The run is over when the service has folded every rollup delta into the rollups (it does every
# second): that time counts, as if the load had lasted until then.
drain_start=$(date +%s%N)
until [ "$(psql -qAtX "$PG_URL" -c "SELECT count(*) FROM meter_rollup_deltas")" = 0 ]; do sleep 0.1; done
drain_ms=$(( ($(date +%s%N) - drain_start) / 1000000 ))
seconds=$(awk -v s="$seconds" -v d="$drain_ms" 'BEGIN { printf "%.2f", s + d / 1000 }')
svc_cpu=$(awk -v a="$(cpu_of "$svc")" -v b="$svc_before" -v t="$tick" 'BEGIN { printf "%.1f", (a - b) / t }')
pg_used=$(awk -v a="$(pg_cpu)" -v b="$pg_before" -v t="$tick" 'BEGIN { printf "%.1f", (a - b) / t }')
svc_peak=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$svc/status")
kill "$svc"; wait "$svc" 2>/dev/null || true; svc=
stored=$(psql -qAtX "$PG_URL" -c "SELECT count(*) FROM meter_events")
ids=$(psql -qAtX "$PG_URL" -c "SELECT count(*) FROM meter_event_ids")
counted=$(psql -qAtX "$PG_URL" -c "SELECT sum(events) FROM meter_rollups r JOIN meters m ON m.id = r.meter_id WHERE m.aggregation = 'count'")
# wrk may stop with requests in flight that were committed after it stopped counting: those
# are stored but not in its count.
if [ "$stored" -lt $((requests * 1000)) ] || [ "$stored" -gt $(((requests + CONNS) * 1000)) ] \
   || [ "$ids" != "$stored" ] || [ "$counted" != "$stored" ]; then
  echo "check failed: $requests requests acknowledged, $stored events stored, $ids identifiers, $counted counted"; exit 1
fi
# How many transactions wrote them (the group commit writes batches that wait together).
transactions=$(psql -qAtX "$PG_URL" -c "SELECT count(DISTINCT xmin::text) FROM meter_event_ids")
service=$(awk -v n="$stored" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
echo "meter events: $stored in ${seconds}s over HTTP ($CONNS connections, batches of 1,000, $CUSTOMERS customers; the last rollup deltas folded ${drain_ms} ms after the load): $service events/s"
echo "written in $transactions transactions: $(awk -v n="$stored" -v t="$transactions" 'BEGIN { printf "%.0f", n / t }') events each on average"
per_event() { awk -v c="$1" -v n="$stored" 'BEGIN { printf "%.1f", c * 1e6 / n }'; }
echo "CPU per event: the service $(per_event "$svc_cpu") µs ($svc_cpu s), PostgreSQL $(per_event "$pg_used") µs ($pg_used s), of $(nproc) cores shared with the load generator; the service's peak memory (RSS): $svc_peak MiB"

# COPY the same rows into the same tables, emptied, in one transaction.
tables=(meter_event_ids meter_events meter_rollups meter_distinct_values)
for t in "${tables[@]}"; do psql -qX "$PG_URL" -c "\copy (SELECT * FROM $t) TO '$work/$t.copy'" >/dev/null; done
psql -qX -v ON_ERROR_STOP=1 "$PG_URL" -c "TRUNCATE $(IFS=,; echo "${tables[*]}")" -c "CHECKPOINT" >/dev/null
copy_sql="BEGIN;"
for t in "${tables[@]}"; do copy_sql+=" COPY $t FROM '$work/$t.copy';"; done
copy_sql+=" COMMIT;"
start=$(date +%s%N)
psql -qX -v ON_ERROR_STOP=1 "$PG_URL" -c "$copy_sql" >/dev/null
copy_ms=$(( ($(date +%s%N) - start) / 1000000 ))
copy=$(awk -v n="$stored" -v ms="$copy_ms" 'BEGIN { printf "%.0f", n * 1000 / ms }')
ratio=$(awk -v a="$service" -v b="$copy" 'BEGIN { printf "%.2f", a / b }')
echo "COPY of the same rows into the same tables: ${copy_ms} ms, $copy events/s; ratio $ratio"

# Aggregation for an invoice over EVENTS_FOR_AGGREGATION events.
python3 bench/meter_rollups.py --url "$PG_URL" --events "$EVENTS_FOR_AGGREGATION" >"$work/agg.env"
# shellcheck disable=SC1091
source "$work/agg.env"   # AGG_CUSTOMER AGG_START AGG_END AGG_ROWS
BILLING_SERVER__PORT=$port "$bin" serve >"$work/service.log" 2>&1 &
svc=$!
wait_http "$base/health/ready"
for _ in $(seq "$QUERIES"); do
  curl -fsS -o /dev/null -w '%{time_total}\n' "${auth[@]}" "$base/v1/customers/$AGG_CUSTOMER/usage?start=$AGG_START&end=$AGG_END"
done >"$work/times"
check=$(curl -fsS "${auth[@]}" "$base/v1/customers/$AGG_CUSTOMER/usage?start=$AGG_START&end=$AGG_END" | jq '[.meters[] | select(.aggregation == "count") | .value][0]')
[ "$check" = "$EVENTS_FOR_AGGREGATION" ] || { echo "aggregation check failed: $check events counted"; exit 1; }
p50=$(sort -g "$work/times" | awk '{a[NR]=$1} END {printf "%.1f", a[int(NR*0.5)]*1000}')
p99=$(sort -g "$work/times" | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.1f", a[i]*1000}')
echo "aggregation over $EVENTS_FOR_AGGREGATION events ($AGG_ROWS rollup rows, a month): p50 ${p50} ms, p99 ${p99} ms over $QUERIES requests"
