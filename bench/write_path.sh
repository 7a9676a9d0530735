#!/usr/bin/env bash
# Write path: POST /v1/payments per second (auth → idempotency → row lock → payment → invoice →
# ledger → balance → audit → stored response → commit) against pgbench running the same SQL
# (bench/payment.pgbench) on the same PostgreSQL, same machine, same client count, in the same run.
# Target: ratio >= 0.80.
# Usage: bench/write_path.sh            (DURATION=10 CONNS=16 ROUNDS=3 INVOICES=256)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${DURATION:-10} CONNS=${CONNS:-16} ROUNDS=${ROUNDS:-3} INVOICES=${INVOICES:-256}
build
work=$(mktemp -d)
chmod 755 "$work"
svc=
cleanup() { [ -n "$svc" ] && kill "$svc" 2>/dev/null; stop_postgres; rm -rf "$work"; }
trap cleanup EXIT
start_postgres "$work" "$(free_port)"
export BILLING_DATABASE__URL=$PG_URL
bin=target/release/billing-api
"$bin" migrate run >/dev/null
KEY=$("$bin" apikey create --tenant bench --scope '*' 2>/dev/null)
export BENCH_KEY=$KEY
keyid="key_$(cut -c5-20 <<<"$KEY")"

port=$(free_port)
BILLING_SERVER__PORT=$port BILLING_ADMIN__PORT=0 BILLING_DATABASE__MAX_CONNECTIONS=$CONNS BILLING_SHUTDOWN__GRACE_PERIOD=0s \
  "$bin" serve >/dev/null 2>&1 &
svc=$!
base="http://127.0.0.1:$port"
wait_http "$base/health/ready"

auth="Authorization: Bearer $KEY"
# One customer per invoice, so payments contend on invoice and balance rows only as real ones would.
: >"$work/invoices"
: >"$work/bench_invoices.tsv"
for _ in $(seq 1 "$INVOICES"); do
  customer=$(curl -fsS "$base/v1/customers" -H "$auth" -H 'Content-Type: application/json' -d '{"currency":"usd"}' | jq -r .id)
  inv=$(curl -fsS "$base/v1/invoices" -H "$auth" -H 'Content-Type: application/json' \
    -d '{"customer":"'"$customer"'","lines":[{"description":"bench","unit_amount":1000000000000}]}' | jq -r .id)
  curl -fsS -X POST "$base/v1/invoices/$inv/finalize" -H "$auth" >/dev/null
  echo "$inv" >>"$work/invoices"
  printf '%s\t%s\n' "$inv" "$customer" >>"$work/bench_invoices.tsv"
done
export BENCH_INVOICES=$work/invoices
psql -q "$PG_URL" -c "CREATE TABLE bench_invoices (n serial PRIMARY KEY, id text NOT NULL, customer_id text NOT NULL)" \
  -c "\\copy bench_invoices (id, customer_id) FROM '$work/bench_invoices.tsv'" >/dev/null

# Warm both sides up (connections opened, statements prepared) before measuring.
wrk -t1 -c"$CONNS" -d3s -s bench/payment.lua "$base/" >/dev/null 2>&1
"$PGBENCH" -n -M prepared -c "$CONNS" -j 2 -T 3 -f bench/payment.pgbench -D ninvoices="$INVOICES" -D keyid="$keyid" "$PG_URL" >/dev/null 2>&1

ratios=()
printf '%-6s %14s %14s %8s\n' round pgbench_tps service_rps ratio
for round in $(seq 1 "$ROUNDS"); do
  tps=$("$PGBENCH" -n -M prepared -c "$CONNS" -j 2 -T "$DURATION" -f bench/payment.pgbench \
    -D ninvoices="$INVOICES" -D keyid="$keyid" "$PG_URL" 2>"$work/pgbench.err" \
    | awk '/^tps = / {print $3}') || true
  [ -n "$tps" ] || { echo "pgbench failed:"; cat "$work/pgbench.err"; exit 1; }
  rps=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/payment.lua "$base/" 2>"$work/wrk.err" | wrk_rps)
  grep -q "non-2xx or socket errors: 0" "$work/wrk.err" || { echo "payments failed:"; cat "$work/wrk.err"; exit 1; }
  ratio=$(python3 -c "print(f'{$rps / $tps:.3f}')")
  ratios+=("$ratio")
  printf '%-6s %14s %14s %8s\n' "$round" "$tps" "$rps" "$ratio"
done
median_ratio=$(printf '%s\n' "${ratios[@]}" | median)
paid=$(psql -tA "$PG_URL" -c "SELECT COUNT(*) FROM payments")
echo "write path: median ratio $median_ratio (service / pgbench), target >= 0.80; $paid payments recorded"
if [ "${BENCH_ENFORCE:-0}" = 1 ]; then python3 -c "import sys; sys.exit(0 if $median_ratio >= 0.80 else 1)"; fi
