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
chmod 600 "$dir"/*
echo "secrets in $dir"
