#!/usr/bin/env bash
# Starts the release binary as an operator would and checks what only a release build can show:
# the debug-only test routes do not exist, cold start to ready, idle memory, clean SIGTERM exit.
# Usage: scripts/smoke-release.sh [path/to/billing-api]
set -euo pipefail
bin=${1:-target/release/billing-api}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
pid=

export BILLING_DATABASE__URL="sqlite://$work/billing.db" BILLING_SERVER__PORT=0 BILLING_ADMIN__PORT=0 BILLING_SHUTDOWN__GRACE_PERIOD=0s

# The test-routes switch is not even a known setting in a release build.
if out=$(BILLING_TEST_ROUTES=1 "$bin" config check 2>&1); then
  echo "FAIL: a release build accepted BILLING_TEST_ROUTES"; exit 1
fi
grep -q "test_routes: unknown setting" <<<"$out" || { echo "FAIL: unexpected output: $out"; exit 1; }

start=$(date +%s%N)
"$bin" serve >"$work/out.log" 2>&1 &
pid=$!
addr=
for _ in $(seq 1 200); do
  addr=$(grep -o '"listen":"[^"]*"' "$work/out.log" | head -1 | cut -d'"' -f4 || true)
  if [ -n "$addr" ] && curl -fsS "http://$addr/health/ready" >/dev/null 2>&1; then break; fi
  sleep 0.02
done
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
curl -fsS "http://$addr/health/ready" >/dev/null || { echo "FAIL: never ready"; cat "$work/out.log"; exit 1; }
sleep 0.5
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/__test/panic")
[ "$code" = 404 ] || { echo "FAIL: /__test/panic answered $code in a release build"; exit 1; }

kill -TERM "$pid"
status=0; wait "$pid" || status=$?
[ "$status" = 0 ] || { echo "FAIL: exit status $status after SIGTERM"; cat "$work/out.log"; exit 1; }
grep -q "shutdown complete" "$work/out.log" || { echo "FAIL: no 'shutdown complete' line"; exit 1; }

size_kb=$(( $(stat -c %s "$bin") / 1024 ))
echo "release smoke: ok  cold start to ready ${ready_ms} ms, idle RSS $((rss_kb / 1024)) MiB (${rss_kb} kB), binary ${size_kb} KiB, sha256 $(sha256sum "$bin" | cut -c1-16)…"
