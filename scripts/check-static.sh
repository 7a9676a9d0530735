#!/usr/bin/env bash
# The optional fully static build: glibc linked in (`-C target-feature=+crt-static`, on the gnu
# target, the only one this machine has). Shown to work: it is statically linked, it starts and
# serves, and it resolves a host name (`localhost`, in a PostgreSQL URL it migrates through).
# Usage: scripts/check-static.sh [build|check [BIN]]   (no argument: builds into target/static,
#        then checks the binary; CI checks the release binary, which is this static build, made
#        by scripts/check-reproducible.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export CARGO_TARGET_DIR=target/static
bin=${2:-$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/billing-api}
if [ "${1:-build}" = build ]; then
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --quiet \
    --target x86_64-unknown-linux-gnu --bin billing-api 2> >(grep -v 'statically linked applications requires at runtime' >&2)
fi
[ "${1:-}" = build ] && exit 0
file "$bin" | grep -qE 'static(-pie)? linked' || { echo "not statically linked: $(file "$bin")"; exit 1; }
ldd "$bin" 2>&1 | grep -qE 'statically linked|not a dynamic executable' || { echo "ldd finds dynamic dependencies"; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"
svc=
cleanup() { [ -n "$svc" ] && kill "$svc" 2>/dev/null; stop_postgres; rm -rf "$work"; }
trap cleanup EXIT
start_postgres "$work" "$(free_port)"
url=${PG_URL/127.0.0.1/localhost}
BILLING_DATABASE__URL=$url "$bin" migrate run
port=$(free_port)
BILLING_DATABASE__URL=$url BILLING_SERVER__PORT=$port BILLING_ADMIN__PORT=0 BILLING_SHUTDOWN__GRACE_PERIOD=0s "$bin" serve >"$work/out.log" 2>&1 &
svc=$!
wait_http "http://127.0.0.1:$port/health/ready"
curl -fsS "http://127.0.0.1:$port/health/ready" | grep -q '"status":"pass"'
echo "static build: $(du -k "$bin" | cut -f1) KiB, statically linked, served on PostgreSQL at localhost (name resolved)"
