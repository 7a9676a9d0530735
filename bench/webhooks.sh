#!/usr/bin/env bash
# Webhook delivery throughput: N events queued for one endpoint while the dispatcher is off, then
# the dispatcher is started and timed until the local receiver (bench/webhook_sink.rs) has every
# one. Reports deliveries per second, signed and recorded (attempt log, delivery state) each.
# There is no baseline to compare with; the figure goes in the notes.
# Usage: bench/webhooks.sh [sqlite|postgres]     (EVENTS=2000)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BACKEND=${1:-sqlite} EVENTS=${EVENTS:-2000}
cargo build --release --locked --quiet --bin billing-api --example webhook-sink
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; stop_postgres; rm -rf "$work"; }
trap cleanup EXIT
if [ "$BACKEND" = postgres ]; then
  start_postgres "$work" "$(free_port)"
  export BILLING_DATABASE__URL=$PG_URL
else
  export BILLING_DATABASE__URL="sqlite://$work/bench.db"
fi
export BILLING_ADMIN__PORT=0 BILLING_SHUTDOWN__GRACE_PERIOD=0s BILLING_LOG__LEVEL=warn \
  BILLING_WEBHOOKS__ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64)" BILLING_WEBHOOKS__ALLOW_HTTP=true \
  BILLING_WEBHOOKS__ALLOWED_NETWORKS=127.0.0.1/32
bin=target/release/billing-api
"$bin" migrate run >/dev/null
key=$("$bin" apikey create --tenant bench --scope '*' 2>/dev/null)

sink_port=$(free_port)
target/release/examples/webhook-sink "127.0.0.1:$sink_port" >/dev/null &
pids+=($!)
port=$(free_port)
BILLING_SERVER__PORT=$port BILLING_WEBHOOKS__DISPATCHER=false "$bin" serve >/dev/null 2>&1 &
api=$!
pids+=($api)
base=http://127.0.0.1:$port
wait_http "$base/health/ready"
wait_http "http://127.0.0.1:$sink_port/count"
auth=(-H "Authorization: Bearer $key" -H 'Content-Type: application/json')
curl -fsS "${auth[@]}" -d "{\"url\":\"http://127.0.0.1:$sink_port/hook\",\"enabled_events\":[\"customer.created\"]}" \
  "$base/v1/webhook_endpoints" >/dev/null
# Queue the events (quickly, in parallel).
seq 1 "$EVENTS" | xargs -P 8 -I{} curl -fsS -o /dev/null "${auth[@]}" -d '{"name":"Bench {}","currency":"eur"}' "$base/v1/customers"
kill "$api"; wait "$api" 2>/dev/null || true

BILLING_SERVER__PORT=$port "$bin" serve >/dev/null 2>&1 &
pids+=($!)
start=$(date +%s%N)
for _ in $(seq 1 1200); do
  distinct=$(curl -fsS "http://127.0.0.1:$sink_port/count" | jq .distinct)
  [ "$distinct" -ge "$EVENTS" ] && break
  sleep 0.05
done
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
counts=$(curl -fsS "http://127.0.0.1:$sink_port/count")
[ "$(jq .distinct <<<"$counts")" -ge "$EVENTS" ] || { echo "not all delivered: $counts"; exit 1; }
echo "webhooks ($BACKEND): $EVENTS deliveries in ${elapsed_ms} ms = $(( EVENTS * 1000 / (elapsed_ms > 0 ? elapsed_ms : 1) )) per second (receiver saw $(jq -c . <<<"$counts"); defaults: batch 32, concurrency 16)"
