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
# Goal (issue 13): 100,000 invoices in under 2 minutes on a 2-core machine.
# Usage: bench/cycles.sh [postgres|sqlite|both]   (SUBSCRIPTIONS=100000 PG_SYNCHRONOUS_COMMIT=off)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
WHICH=${1:-both} N=${SUBSCRIPTIONS:-100000}
export PG_SYNCHRONOUS_COMMIT=${PG_SYNCHRONOUS_COMMIT:-off}
cargo build --release --locked --quiet --bin billing-api
bin=target/release/billing-api
work=$(mktemp -d -p "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")
chmod 755 "$work"
svc=
cleanup() { [ -n "$svc" ] && kill "$svc" 2>/dev/null; stop_postgres; rm -rf "$work"; }
trap cleanup EXIT
export BILLING_ADMIN__PORT=0 BILLING_SHUTDOWN__GRACE_PERIOD=0s BILLING_LOG__LEVEL=warn \
  BILLING_BILLING__SCHEDULER=false BILLING_WEBHOOKS__DISPATCHER=false BILLING_IDEMPOTENCY__PURGER=false

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
  [ "$backend" = postgres ] && psql -qX "$PG_URL" -c "VACUUM ANALYZE" >/dev/null

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
  stop_postgres
}

case $WHICH in
  postgres | sqlite) one "$WHICH" ;;
  both) one postgres; one sqlite ;;
  *) echo "usage: $0 [postgres|sqlite|both]"; exit 2 ;;
esac
