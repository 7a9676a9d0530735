#!/usr/bin/env bash
# Rolls a new (or the previous) version through the instances behind a load balancer, one at a
# time, so that the others always carry the traffic: restart one, wait until it is ready, wait
# for the load balancer to trust it again, then the next. Stops at the first instance that does
# not become ready, leaving the rest untouched (they still serve the old version).
#
#   scripts/rollout.sh [options] INSTANCE...
#
#   --restart CMD   how to restart one instance; `{}` is replaced by the instance name.
#                   Must return once the old process has exited and the new one was started, as
#                   `systemctl restart` does for billing-api's Type=notify unit.
#                   Default: systemctl restart billing-api@{}
#   --ready CHECK   how to tell an instance is ready: a URL (`{}` replaced) that answers 200, or a
#                   command that exits 0. Default: http://127.0.0.1:{}/health/ready
#   --settle SECS   how long to wait after an instance is ready before touching the next
#                   (default 6). nginx counts a refused connection against an instance and skips
#                   it for `fail_timeout` (5 s in deploy/nginx/billing-api.conf) even after it is
#                   back: restarting the next one sooner could leave nginx with no live upstream.
#   --timeout SECS  the longest an instance may take to become ready (default 120).
#
# Examples:
#   systemd, two units billing-api@8080 and billing-api@8081 behind deploy/nginx:
#     install -m 0755 billing-api-NEW /usr/local/bin/billing-api && scripts/rollout.sh 8080 8081
#   compose (compose.yaml's api-1 and api-2, onto the image just built or pulled):
#     scripts/rollout.sh --restart 'docker compose up -d --no-deps --force-recreate --wait api-{}' \
#       --ready 'docker compose exec -T api-{} billing-api healthcheck' 1 2
set -euo pipefail
restart='systemctl restart billing-api@{}'
ready='http://127.0.0.1:{}/health/ready'
settle=6 timeout=120
while [ $# -gt 0 ]; do
  case $1 in
    --restart) restart=$2; shift 2 ;;
    --ready) ready=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --*) echo "rollout: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "rollout: name at least one instance (see --help)" >&2; exit 2; }

is_ready() { # instance
  local check=${ready//\{\}/$1}
  if [[ $check == http://* || $check == https://* ]]; then
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$check")" = 200 ]
  else
    bash -c "$check" >/dev/null 2>&1
  fi
}

log() { printf '%s rollout: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

n=0
for instance in "$@"; do
  n=$((n + 1))
  log "[$n/$#] restarting $instance"
  if ! bash -c "${restart//\{\}/$instance}"; then
    log "restarting $instance failed; stopping here (the others were not touched)"
    exit 1
  fi
  waited=0
  until is_ready "$instance"; do
    if [ "$waited" -ge $((timeout * 10)) ]; then
      log "$instance not ready after ${timeout}s; stopping here (the others were not touched)"
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log "$instance is ready"
  if [ "$n" -lt $# ]; then
    log "waiting ${settle}s for the load balancer to take $instance back"
    sleep "$settle"
  fi
done
log "all $# instance(s) restarted"
