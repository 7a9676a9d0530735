#!/usr/bin/env bash
# The N-1 gate: builds the previous release (.ci/previous-release) and runs it on a database
# migrated by this tree, on PostgreSQL and SQLite, replaying a recorded client session
# (tests/rollout/compat.py). A migration that would break the version still running during a
# rollout, or the version rolled back to, fails here.
# Usage: scripts/test-compat.sh [path/to/billing-api]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/billing-api}")
prev=$(grep -v '^#' .ci/previous-release | head -1)
if ! git cat-file -e "$prev^{commit}" 2>/dev/null; then
  echo "the previous release $prev is not in this clone: fetch its history (git fetch --unshallow)"
  exit 1
fi
out=target/compat
mkdir -p "$out"
cp "$bin" "$out/billing-api-current"
src=$out/prev-src
rm -rf "$src" && mkdir -p "$src"
git archive "$prev" | tar -x -C "$src"
source scripts/lib-copy.sh
BUILD_GIT_COMMIT=$prev build_copy "$src" previous "$out/billing-api-previous"
echo "previous release: ${prev:0:12} ($("$out/billing-api-previous" --version | head -1))"
python3 tests/rollout/compat.py --current "$out/billing-api-current" --previous "$out/billing-api-previous"
# The gate must be able to fail: a schema that breaks the previous release (a renamed column).
python3 tests/rollout/compat.py --current "$out/billing-api-current" --previous "$out/billing-api-previous" \
  --breaking tests/compat/breaking-migration.sql
