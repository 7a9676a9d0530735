# Shared by the benchmark scripts: a throwaway PostgreSQL cluster, waiting for a port, wrk figures.
# shellcheck shell=bash

# The release binary and the baseline are built once, with the workspace's Cargo.lock.
build() {
  cargo build --release --locked --quiet --bin billing-api --example bare-axum
}

# Requests per second from wrk's output.
wrk_rps() {
  awk '/^Requests\/sec:/ {print $2}'
}

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

# A benchmark is one tenant sending as fast as it can: the rate limiter runs on every request
# (its cost is measured) with budgets out of reach.
for _class in READ WRITE UNAUTHENTICATED; do
  export "BILLING_RATE_LIMIT__${_class}_PER_SECOND=10000000" "BILLING_RATE_LIMIT__${_class}_BURST=10000000"
done

median() {
  sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

# With two or more cores, the server under test runs on core 1 and the load generator on core 0,
# so each side has a core of its own and the ratio is about the server's CPU per request.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  SERVER_CPU=(taskset -c 1)
  LOAD_CPU=(taskset -c 0)
else
  SERVER_CPU=()
  LOAD_CPU=()
fi

# For the scripts that run the release binary against a database of their own: builds it (`$bin`),
# makes a work directory in memory when it can (`$work`, removed on exit with the PostgreSQL
# cluster and the service whose pid is in `$svc`), and turns off the background work that would
# run beside what is measured.
service_bench() {
  cargo build --release --locked --quiet --bin billing-api
  bin=target/release/billing-api
  work=$(mktemp -d -p "$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")
  chmod 755 "$work"
  svc=
  trap 'service_bench_cleanup' EXIT
  export BILLING_ADMIN__PORT=0 BILLING_SHUTDOWN__GRACE_PERIOD=0s BILLING_LOG__LEVEL=warn \
    BILLING_BILLING__SCHEDULER=false BILLING_WEBHOOKS__DISPATCHER=false BILLING_IDEMPOTENCY__PURGER=false
}

service_bench_cleanup() {
  [ -n "${svc:-}" ] && kill "$svc" 2>/dev/null
  stop_postgres
  rm -rf "$work"
}
