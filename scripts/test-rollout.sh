#!/usr/bin/env bash
# Zero-downtime delivery, proven under load behind the real nginx (tests/rollout/scenarios.py):
# rolling restarts with scripts/rollout.sh, version N → N+1 → N, socket activation, and a
# Kubernetes rolling update as kubelet and the endpoints controller run it. Also checks that the
# migration linter takes N+1's expand-only migrations and refuses unsafe ones.
#
# N is the binary given; N+1 is this tree plus the throwaway migrations of
# tests/rollout/next-migrations (a nullable column, then an index built concurrently), built
# into the shared target directory as version `<version>-next` (only the crate compiles again).
# Usage: scripts/test-rollout.sh [path/to/billing-api] [scenario...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/billing-api}")
shift || true
scripts/ci-tools.sh
source scripts/lib-copy.sh
out=target/rollout
mkdir -p "$out"
cp "$bin" "$out/billing-api-n"

# N+1: the working tree as it is, plus the new migrations after the last one.
src=$out/next-src
rm -rf "$src" && mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | grep -zv '^target/' | xargs -0 tar -c | tar -x -C "$src"
last=$(ls migrations/*.up.sql | sed 's|.*/\([0-9]*\)_.*|\1|' | sort -n | tail -1)
v1=$(printf '%04d' $((10#$last + 1))) v2=$(printf '%04d' $((10#$last + 2)))
for dir in up down; do
  cp "tests/rollout/next-migrations/expand_column.$dir.sql" "$src/migrations/${v1}_rollout_probe_column.$dir.sql"
  cp "tests/rollout/next-migrations/expand_index.$dir.sql" "$src/migrations/${v2}_rollout_probe_index.$dir.sql"
done
build_copy "$src" next "$out/billing-api-next"
echo "N: $("$out/billing-api-n" --version | head -1); N+1: $("$out/billing-api-next" --version | head -1), with migrations $v1 and $v2"

# The linter takes N+1's migrations, and refuses the unsafe ones.
lint=$(mktemp -d)
trap 'rm -rf "$lint"' EXIT
"$out/billing-api-next" migrate sql --backend postgres --out "$lint/next" >/dev/null
scripts/lint-migrations.sh "$out/billing-api-next" "$lint/next"
for file in tests/rollout/unsafe-migrations/*.up.sql; do
  mkdir -p "$lint/unsafe" && rm -f "$lint/unsafe"/* && cp "$file" "$lint/unsafe/"
  if scripts/lint-migrations.sh "$bin" "$lint/unsafe" >"$lint/out" 2>&1; then
    echo "FAIL: the migration linter accepted $file"; cat "$lint/out"; exit 1
  fi
  echo "migration lint refuses $(basename "$file"): $(grep -o 'warning\[[a-z-]*\]\|without a .-- safe' "$lint/out" | sort -u | tr '\n' ' ')"
done

only=()
[ $# -gt 0 ] && only=(--only "$@")
# Bounded: every wait inside has its own timeout, and the whole run stops after 20 minutes.
timeout --kill-after=30 1200 target/tools/py/bin/python tests/rollout/scenarios.py \
  --bin "$out/billing-api-n" --next "$out/billing-api-next" "${only[@]}"
