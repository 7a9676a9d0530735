#!/usr/bin/env bash
# Builds the release binary twice, from clean clones of the committed tree in two different
# directories, and fails unless the two binaries are bit-for-bit identical.
# Usage: scripts/check-reproducible.sh [OUT]   (prints both SHA-256 sums; copies the binary to OUT)
set -euo pipefail
root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sums=()
for dir in first second-copy; do
  git clone --quiet "$root" "$work/$dir"
  # The commit is embedded; take it from the clone so an unset variable cannot differ.
  (cd "$work/$dir" && cargo build --release --locked --quiet --bin billing-api)
  sums+=("$(sha256sum "$work/$dir/target/release/billing-api" | cut -d' ' -f1)")
  echo "$dir: ${sums[-1]}"
done
if [ "${sums[0]}" != "${sums[1]}" ]; then
  echo "NOT reproducible: the two builds differ"
  exit 1
fi
echo "reproducible: sha256 ${sums[0]}"
if [ -n "${1:-}" ]; then
  install -D -m 0755 "$work/first/target/release/billing-api" "$1"
fi
