#!/usr/bin/env bash
# Runs the service behind nginx configured with deploy/nginx/billing-api.conf (only ports, paths
# and addresses rewritten for a test), with a throwaway self-signed certificate, and checks:
# TLS, the HTTP→HTTPS redirect, X-Request-Id passing, the body limit, and that the service logs
# the real client address from the proxy's X-Forwarded-For while ignoring a spoofed one.
# Loopback addresses play the parts: the client is 127.0.0.3, nginx connects from 127.0.0.2.
# Usage: scripts/test-nginx.sh [path/to/billing-api]
set -euo pipefail
bin=$(realpath "${1:-target/release/billing-api}")
cd "$(dirname "$0")/.."
source scripts/lib.sh
work=$(mktemp -d)
svc=
cleanup() {
  [ -n "$svc" ] && kill "$svc" 2>/dev/null
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

svc_port=$(free_port) http_port=$(free_port) https_port=$(free_port)
BILLING_SERVER__PORT=$svc_port BILLING_DATABASE__URL="sqlite://$work/billing.db" BILLING_SHUTDOWN__GRACE_PERIOD=0s \
  BILLING_ADMIN__PORT=0 BILLING_SERVER__TRUSTED_PROXIES=127.0.0.2 "$bin" serve >"$work/service.log" 2>&1 &
svc=$!
wait_http "http://127.0.0.1:$svc_port/health/ready"

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
sed -e "s|server 127.0.0.1:8080|server 127.0.0.1:$svc_port|" -e "/server 127.0.0.1:8081/d" \
    -e "s|listen 80;|listen 127.0.0.1:$http_port;|" -e "/listen \[::\]:80;/d" \
    -e "s|listen 443 ssl;|listen 127.0.0.1:$https_port ssl;|" -e "/listen \[::\]:443 ssl;/d" \
    -e "s|/etc/nginx/tls/billing-api.crt|$work/tls.crt|" -e "s|/etc/nginx/tls/billing-api.key|$work/tls.key|" \
    -e "s|proxy_pass http://billing_api;|proxy_pass http://billing_api;\n        proxy_bind 127.0.0.2;|" \
    deploy/nginx/billing-api.conf >"$work/site.conf"
# nginx 1.22 (Debian 12) predates `http2 on;`; its equivalent is a listen parameter.
if ! nginx -V 2>&1 | grep -qE 'nginx/1\.(2[5-9]|[3-9][0-9])'; then
  sed -i -e '/http2 on;/d' -e "s|listen 127.0.0.1:$https_port ssl;|listen 127.0.0.1:$https_port ssl http2;|" "$work/site.conf"
fi
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 64; }
http {
    access_log $work/access.log;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    include $work/site.conf;
}
CONF
nginx -t -c "$work/nginx.conf" -p "$work" 2>&1 | tail -1
nginx -c "$work/nginx.conf" -p "$work"
base="https://127.0.0.1:$https_port"
for _ in $(seq 1 50); do curl -skf -o /dev/null "$base/health/live" && break; sleep 0.1; done

# TLS in front, the service behind.
curl -skf "$base/health/ready" --interface 127.0.0.3 | grep -q '"status":"pass"'
# Plain HTTP is redirected.
[ "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$http_port/v1/customers")" = \
  "301 https://127.0.0.1/v1/customers" ] || { echo "no redirect to HTTPS"; exit 1; }
# The request id goes through both ways.
rid=$(curl -sk -D - -o /dev/null "$base/health/live" -H 'X-Request-Id: via-nginx-1' --interface 127.0.0.3 | tr -d '\r' | awk -F': ' 'tolower($1)=="x-request-id" {print $2}')
[ "$rid" = via-nginx-1 ] || { echo "request id lost: $rid"; exit 1; }
# Bodies over the limit stop at nginx.
code=$(head -c 2000000 /dev/zero | curl -sk -o /dev/null -w '%{http_code}' -X POST "$base/v1/customers" --data-binary @- -H 'Content-Type: application/json')
[ "$code" = 413 ] || { echo "expected 413 from the body limit, got $code"; exit 1; }
# The client (127.0.0.3) is logged, not the address it tried to spoof, nor nginx's.
curl -sk -o /dev/null "$base/nope" -H 'X-Request-Id: spoof-check' -H 'X-Forwarded-For: 198.51.100.66' --interface 127.0.0.3
sleep 0.3
line=$(grep '"request_id":"spoof-check"' "$work/service.log" | grep '"request completed"' || true)
echo "$line" | grep -q '"client":"127.0.0.3"' || { echo "client address not taken from the proxy: $line"; exit 1; }
# Straight to the service (not a trusted proxy), a forged header changes nothing.
curl -s -o /dev/null "http://127.0.0.1:$svc_port/nope" -H 'X-Request-Id: direct-check' -H 'X-Forwarded-For: 198.51.100.66'
sleep 0.3
grep '"request_id":"direct-check"' "$work/service.log" | grep -q '"client":"127.0.0.1"' || { echo "forged X-Forwarded-For believed"; exit 1; }
echo "nginx: TLS, redirect, request id, body limit and client address checked"
