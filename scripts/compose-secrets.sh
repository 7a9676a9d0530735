#!/usr/bin/env bash
# Creates the secrets compose.yaml reads, with random values, in deploy/compose/.secrets/ (not
# committed). Run once before `docker compose up`.
set -euo pipefail
dir="$(dirname "$0")/../deploy/compose/.secrets"
mkdir -p "$dir"
chmod 700 "$dir"
if [ ! -s "$dir/postgres-password" ]; then
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$dir/postgres-password"
fi
if [ ! -s "$dir/webhook-encryption-key" ]; then
  head -c 32 /dev/urandom | base64 >"$dir/webhook-encryption-key"
fi
printf 'postgres://billing:%s@postgres:5432/billing\n' "$(cat "$dir/postgres-password")" >"$dir/database-url"
# The proxy's certificate: self-signed, for local use (put your real one in its place).
if [ ! -s "$dir/tls/billing-api.crt" ]; then
  mkdir -p "$dir/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$dir/tls/billing-api.key" -out "$dir/tls/billing-api.crt" 2>/dev/null
fi
chmod 600 "$dir"/database-url "$dir"/postgres-password "$dir"/webhook-encryption-key
echo "secrets in $dir"
