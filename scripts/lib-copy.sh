# Builds a copy of a source tree (another version of billing-api) into the shared target
# directory, so that only the crate itself compiles again. The copy gets its own version
# (`<version>-<suffix>`): cargo tells path packages apart by name and version, and a copy with
# the same ones would share (and overwrite) this tree's build artifacts.
# shellcheck shell=bash

build_copy() { # source-dir suffix output-binary
  local src=$1 suffix=$2 out=$3 version saved
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/Cargo.toml" | head -1)
  sed -i "0,/^version = \"$version\"/s//version = \"$version-$suffix\"/" "$src/Cargo.toml"
  sed -i "/^name = \"billing-api\"$/{n;s/^version = \".*\"/version = \"$version-$suffix\"/}" "$src/Cargo.lock"
  # The shared directory's own binary is put back afterwards, for whatever uses it next.
  saved=$(mktemp)
  [ -f target/debug/billing-api ] && cp target/debug/billing-api "$saved"
  CARGO_TARGET_DIR=$PWD/target cargo build --quiet --locked --bin billing-api --manifest-path "$src/Cargo.toml"
  cp target/debug/billing-api "$out"
  [ -s "$saved" ] && cp "$saved" target/debug/billing-api
  rm -f "$saved"
}
