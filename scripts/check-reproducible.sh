#!/usr/bin/env bash
# Builds the release binary twice, from clean clones of the committed tree in two different
# directories, and fails unless the two binaries are bit-for-bit identical.
#
# The release binary is the fully static one (glibc linked in, `+crt-static` on the gnu target):
# it runs on any x86_64 Linux whatever its glibc, and CI builds one release binary instead of a
# reproducible pair and a static build besides (scripts/check-static.sh checks this one). The
# target is named so that the flag reaches our code and not the build scripts and proc macros.
#
# The clones share one target directory, and the crate is cleaned between the two builds: the
# dependencies (the same registry sources at the same paths for both) are compiled once, and the
# crate itself, whose source path is what differs between checkouts, is compiled and linked
# twice. That halves the time of the check without leaving out what a checkout can change.
# Usage: scripts/check-reproducible.sh [OUT]   (prints both SHA-256 sums; copies the binary to OUT)
set -euo pipefail
root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR=$work/target RUSTFLAGS="-C target-feature=+crt-static"
target=x86_64-unknown-linux-gnu
sums=()
for dir in first second-copy; do
  git clone --quiet "$root" "$work/$dir"
  # The commit is embedded; take it from the clone so an unset variable cannot differ.
  (cd "$work/$dir" && cargo clean --release --target $target --quiet -p billing-api 2>/dev/null || true)
  (cd "$work/$dir" && cargo build --release --locked --quiet --target $target --bin billing-api \
    2> >(grep -v 'statically linked applications requires at runtime' >&2))
  cp "$CARGO_TARGET_DIR/$target/release/billing-api" "$work/$dir.bin"
  sums+=("$(sha256sum "$work/$dir.bin" | cut -d' ' -f1)")
  echo "$dir: ${sums[-1]}"
done
if [ "${sums[0]}" != "${sums[1]}" ]; then
  echo "NOT reproducible: the two builds differ"
  exit 1
fi
echo "reproducible: sha256 ${sums[0]}"
if [ -n "${1:-}" ]; then
  install -D -m 0755 "$work/first.bin" "$1"
fi
