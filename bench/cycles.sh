#!/usr/bin/env bash
# Billing cycle at scale: SUBSCRIPTIONS subscriptions (100,000 by default), each of its own
# customer, all due at the same instant; `billing-api cycles run` is timed until it has billed
# every one (one invoice each, finalized, posted to the ledger, with its events). Reports
# invoices per second on PostgreSQL and on SQLite.
#
# The subscriptions are one made through the API (on a test clock 40 days back, so that its next
# period has started) and cloned in SQL by bench/cycles_fixtures.py. The run is checked, not
# only timed: afterwards every subscription has exactly two periods billed by the cycle and the
# template its two invoices.
#
# On PostgreSQL the baseline is a pgbench replay of the same SQL (bench/cycles_replay.py): one
# sampled transaction of the run, replayed over a copy of the same subscriptions, as many
# clients as the cycle has claimers; the ratio says how much of the time is the service's own.
#
# Goal (issue 13): 100,000 invoices in under 2 minutes on a 2-core machine.
# Usage: bench/cycles.sh [postgres|sqlite|both]   (SUBSCRIPTIONS=100000 PG_SYNCHRONOUS_COMMIT=off)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
WHICH=${1:-both} N=${SUBSCRIPTIONS:-100000}
export PG_SYNCHRONOUS_COMMIT=${PG_SYNCHRONOUS_COMMIT:-off}
service_bench

one() { # backend
  local backend=$1 url target
  if [ "$backend" = postgres ]; then
    mkdir -p "$work/pg"
    start_postgres "$work/pg" "$(free_port)"
    url=$PG_URL target=$PG_URL
  else
    url="sqlite://$work/bench.db" target="$work/bench.db"
  fi
  export BILLING_DATABASE__URL=$url
  "$bin" migrate run >/dev/null
  local key port base auth now clock customer product price sub
  key=$("$bin" apikey create --tenant bench --scope '*' 2>/dev/null)
  port=$(free_port)
  BILLING_SERVER__PORT=$port "$bin" serve >"$work/service.log" 2>&1 &
  svc=$!
  base=http://127.0.0.1:$port
  wait_http "$base/health/ready"
  auth=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json')
  post() { curl -fsS "${auth[@]}" "$base$1" -d "$2" | jq -r .id; }
  now=$(date +%s)
  clock=$(post /v1/test_clocks "{\"frozen_time\": $((now - 40 * 86400))}")
  customer=$(post /v1/customers "{\"currency\": \"usd\", \"test_clock\": \"$clock\"}")
  product=$(post /v1/products '{"name": "Seats"}')
  price=$(post /v1/prices "{\"product\": \"$product\", \"currency\": \"usd\", \"unit_amount\": 1500, \"recurring\": {\"interval\": \"month\"}}")
  sub=$(post /v1/subscriptions "{\"customer\": \"$customer\", \"items\": [{\"price\": \"$price\", \"quantity\": 3}]}")
  kill "$svc"; wait "$svc" 2>/dev/null || true; svc=
  python3 bench/cycles_fixtures.py --backend "$backend" --url "$target" --subscription "$sub" --count "$N" >/dev/null
  local replay_url=
  if [ "$backend" = postgres ]; then
    psql -qX "$PG_URL" -c "VACUUM ANALYZE" >/dev/null
    # The same subscriptions for the replay, in a copy of the database (the template left out:
    # its customer's id is not of the clones' shape).
    psql -qX "$PG_URL" -c "CREATE DATABASE replay TEMPLATE postgres" >/dev/null
    replay_url=${PG_URL%/postgres}/replay
    psql -qX "$replay_url" -c "UPDATE subscriptions SET next_action_at = NULL WHERE id = '$sub'" >/dev/null
    # A sample of the run's transactions is logged, statements and parameters, for the replay.
    psql -qX "$PG_URL" -c "ALTER SYSTEM SET log_line_prefix = '[%p %v] '" \
      -c "ALTER SYSTEM SET log_transaction_sample_rate = $(awk "BEGIN { r = 20 / $N; print (r < 0.0005 ? 0.0005 : r) }")" \
      -c "SELECT pg_reload_conf()" >/dev/null
  fi

  local start end ms out
  start=$(date +%s%N)
  out=$("$bin" cycles run 2>"$work/cycles.log")
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  local billed
  if [ "$backend" = postgres ]; then
    billed=$(psql -qtAX "$PG_URL" -c "SELECT COUNT(*) FROM invoices WHERE billing_reason = 'subscription_cycle'")
  else
    billed=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM invoices WHERE billing_reason = 'subscription_cycle'\").fetchone()[0])" "$target")
  fi
  echo "cycles ($backend): $billed invoices for $N subscriptions in $ms ms = $(( billed * 1000 / (ms > 0 ? ms : 1) )) invoices/s ($out)"
  [ "$billed" -eq "$N" ] || { echo "expected $N invoices of the cycle, found $billed"; tail -5 "$work/cycles.log"; exit 1; }
  if [ "$backend" = postgres ]; then
    # The baseline: the same SQL replayed by pgbench, as many clients as the cycle's claimers
    # (billing::cycles::WORKERS), over the same subscriptions less the template.
    psql -qX "$PG_URL" -c "ALTER SYSTEM RESET log_transaction_sample_rate" -c "SELECT pg_reload_conf()" >/dev/null
    python3 bench/cycles_replay.py --log "$work/pg/pg.log" --out "$work/replay.sql" --variables "$work/replay.vars" >/dev/null
    local clients=3 per tps replayed vars=() v
    while IFS= read -r v; do vars+=(-D "$v"); done <"$work/replay.vars"
    per=$(( (N - 1) / clients ))
    out=$("$PGBENCH" -n -M prepared -c "$clients" -j "$clients" -t "$per" -D c_next_action_at=0 -D c_id=0 "${vars[@]}" \
      -f "$work/replay.sql" "$replay_url" 2>&1) || { echo "$out" | grep -v "^number\|^maximum" | head -8; exit 1; }
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p')
    replayed=$(psql -qtAX "$replay_url" -c "SELECT COUNT(*) FROM invoices WHERE billing_reason = 'subscription_cycle'")
    [ "$replayed" -eq $(( per * clients )) ] || { echo "the replay billed $replayed, expected $(( per * clients ))"; exit 1; }
    echo "pgbench replay of the cycle's SQL ($(grep -c ';$\|gset' "$work/replay.sql") statements per invoice, $clients clients): $replayed invoices at ${tps%.*} invoices/s; cycle/replay = $(awk "BEGIN { printf \"%.2f\", ($billed * 1000 / $ms) / $tps }")"
  fi
  stop_postgres
}

case $WHICH in
  postgres | sqlite) one "$WHICH" ;;
  both) one postgres; one sqlite ;;
  *) echo "usage: $0 [postgres|sqlite|both]"; exit 2 ;;
esac
