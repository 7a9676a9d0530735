#!/usr/bin/env bash
# Runs the image as production would: its non-root user, a read-only root file system, every
# capability dropped, no privilege escalation; against SQLite (a tmpfs volume) and against
# PostgreSQL (a migration run first, the URL as a secret file). Each time: wait for the image's own
# HEALTHCHECK to pass, make API requests, stop with SIGTERM and expect exit status 0.
# Usage: scripts/test-image.sh IMAGE
set -euo pipefail
image=${1:?usage: test-image.sh IMAGE}
cd "$(dirname "$0")/.."
source scripts/lib.sh
work=$(mktemp -d)
chmod 755 "$work"
containers=()
cleanup() {
  for c in "${containers[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
  stop_postgres
  rm -rf "$work"
}
trap cleanup EXIT

# podman wants systemd for periodic health checks; without it, it says so on every run (harmless:
# this script runs the image's HEALTHCHECK itself with `podman healthcheck run`).
quiet() { "$@" 2> >(grep -v 'systemd connection' >&2); }
# Host networking (the only kind here): bind both listeners to loopback, not the image's 0.0.0.0.
hardened=(--pull=never --network host --read-only --cap-drop ALL --security-opt no-new-privileges --user 65532:65532
  -e BILLING_SERVER__HOST=127.0.0.1 -e BILLING_ADMIN__HOST=127.0.0.1)

wait_healthy() { # container
  for _ in $(seq 1 100); do
    if podman healthcheck run "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$1 never became healthy"; podman logs "$1" | tail -20; return 1
}

exercise() { # container api-port admin-port
  local name=$1 port=$2 key customer
  wait_healthy "$name"
  curl -fsS "http://127.0.0.1:$port/health/ready" | grep -q '"status":"pass"'
  key=$(podman exec "$name" /usr/local/bin/billing-api apikey create --tenant image-test --scope '*' 2>/dev/null)
  customer=$(curl -fsS "http://127.0.0.1:$port/v1/customers" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d '{"name":"Image Test","currency":"eur"}' | jq -r .id)
  curl -fsS "http://127.0.0.1:$port/v1/customers/$customer" -H "Authorization: Bearer $key" | jq -e '.currency == "eur"' >/dev/null
  curl -fsS "http://127.0.0.1:$3/metrics" | grep '^billing_build_info{' >/dev/null || { echo "$name: no metrics on the admin port"; return 1; }
  podman exec "$name" /usr/local/bin/billing-api --version | head -1
  quiet podman stop --time 30 "$name" >/dev/null
  local status
  status=$(podman inspect --format '{{.State.ExitCode}}' "$name")
  [ "$status" = 0 ] || { echo "$name exited with $status after SIGTERM"; podman logs "$name" | tail -20; return 1; }
  podman logs "$name" 2>&1 | grep -q '"message":"shutdown complete"' || { echo "$name: no clean shutdown logged"; return 1; }
  echo "$name: healthy, served, stopped cleanly (exit 0)"
}

# The image's identity.
podman image inspect "$image" --format '{{.Config.User}}' | grep -qx '65532:65532' || { echo "image does not run as 65532"; exit 1; }
echo "image size: $(podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1000000}')"

# SQLite, on a tmpfs volume the image's user can write.
port=$(free_port) admin=$(free_port)
quiet podman run -d --name billing-image-sqlite "${hardened[@]}" \
  --tmpfs /data:rw,size=64m,mode=1777 -e BILLING_ADMIN__PORT="$admin" \
  -e BILLING_SERVER__PORT="$port" -e BILLING_SHUTDOWN__GRACE_PERIOD=1s "$image" >/dev/null
containers+=(billing-image-sqlite)
exercise billing-image-sqlite "$port" "$admin"

# PostgreSQL: a release-style migration job, then the service; the URL is a secret file.
start_postgres "$work" "$(free_port)"
printf '%s' "$PG_URL" >"$work/database-url"
chmod 644 "$work/database-url"
secret=(-v "$work/database-url:/run/secrets/database-url:ro" -e BILLING_DATABASE__URL_FILE=/run/secrets/database-url)
quiet podman run --rm --name billing-image-migrate "${hardened[@]}" "${secret[@]}" "$image" migrate run
port=$(free_port) admin=$(free_port)
quiet podman run -d --name billing-image-postgres "${hardened[@]}" "${secret[@]}" -e BILLING_ADMIN__PORT="$admin" \
  -e BILLING_SERVER__PORT="$port" -e BILLING_SHUTDOWN__GRACE_PERIOD=1s "$image" >/dev/null
containers+=(billing-image-postgres)
exercise billing-image-postgres "$port" "$admin"
