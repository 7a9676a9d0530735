#!/usr/bin/env bash
# Lints every PostgreSQL migration, as the binary runs it, with squawk: a migration may not take
# a lock that stops the running version (a non-concurrent index on an existing table, a column
# type rewrite, NOT NULL without a default, a constraint validated in place, a dropped column…)
# unless it says why that is safe, on a `-- safe: <reason>` line right above its
# `-- squawk-ignore <rule>` line.
#
# Rules set aside for every migration, and why:
#   prefer-robust-stmts        a migration runs once, recorded by sqlx in the transaction of its
#                              changes; only a no-transaction migration can stop half-way, and
#                              for those the rule stays on.
#   require-statement-timeout  every connection, the migrator's included, has
#                              database.statement_timeout.
# The released migrations before this linter (0001–0003) were applied at install to empty
# tables and can never change (their checksums are pinned), so require-lock-timeout is set aside
# for them; every later migration that locks an existing table sets `SET LOCAL lock_timeout`.
# A no-transaction migration holds a single CREATE INDEX CONCURRENTLY (no SET can precede it
# outside a transaction); what it waits for blocks no read or write.
#
# Usage: scripts/lint-migrations.sh [path/to/billing-api] [MIGRATIONS_DIR]
#   With MIGRATIONS_DIR, lints those .up.sql files (already rendered for PostgreSQL) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/billing-api}")
scripts/ci-tools.sh
squawk=target/tools/py/bin/squawk
dir=${2:-}
if [ -z "$dir" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  "$bin" migrate sql --backend postgres --out "$dir" >/dev/null
fi
released="0001_tenants 0002_billing 0003_webhooks"
status=0 count=0
for file in "$dir"/*.up.sql; do
  name=$(basename "$file" .up.sql)
  count=$((count + 1))
  exclude=require-statement-timeout
  flags=()
  if head -1 "$file" | grep -q '^-- no-transaction'; then
    exclude+=,require-lock-timeout
    statements=$(grep -v '^\s*--' "$file" | tr -d '\n' | tr ';' '\n' | grep -c '[^[:space:]]' || true)
    if [ "$statements" -ne 1 ]; then
      echo "$name: a no-transaction migration holds exactly one statement (it has $statements)"
      status=1
    fi
  else
    exclude+=,prefer-robust-stmts
    flags+=(--assume-in-transaction)
  fi
  [[ " $released " == *" $name "* ]] && exclude+=,require-lock-timeout
  # Every rule set aside in the migration itself comes with its reason.
  if { grep -n 'squawk-ignore' "$file" || true; } | while IFS=: read -r line _; do
      prev=$(sed -n "$((line - 1))p" "$file")
      [[ $prev == --\ safe:* ]] || { echo "$name:$line: squawk-ignore without a '-- safe: <reason>' line above it"; exit 1; }
    done; then :; else status=1; fi
  if ! out=$(NO_COLOR=1 "$squawk" "${flags[@]}" --exclude "$exclude" "$file" 2>&1); then
    echo "$out" | sed 's/\x1b\[[0-9;]*m//g; s/\x1b\]8;;[^\\]*\\//g'
    echo "$name: rejected by the migration linter (see docs/operations.md, \"Migrations\")"
    status=1
  fi
done
[ "$status" = 0 ] && echo "migration lint: $count PostgreSQL migration(s) take no lock that stops the running version"
exit "$status"
