#!/usr/bin/env bash
# Builds the container image from the real Dockerfile, with podman, overriding only the base-image
# arguments with the local stand-ins from scripts/make-base-images.sh (CI has no registry).
# The machine's Rust toolchain and crate cache are mounted into the build, not copied.
# Usage: scripts/build-image.sh TAG
set -euo pipefail
tag=${1:?usage: build-image.sh TAG}
cd "$(dirname "$0")/.."
sysroot=$(rustc --print sysroot)
toolchain=$(basename "$sysroot")
cargo fetch --locked >/dev/null
podman build --pull=never --network host --format docker \
  -f deploy/docker/Dockerfile \
  --build-arg RUST_IMAGE=localhost/billing-rust-builder:latest \
  --build-arg RUNTIME_IMAGE=localhost/billing-runtime:latest \
  --build-arg BUILD_GIT_COMMIT="$(git rev-parse HEAD)" \
  --build-arg VERSION="$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')" \
  --volume "$sysroot:/usr/local/rustup/toolchains/$toolchain:ro" \
  --volume "${CARGO_HOME:-$HOME/.cargo}/registry:/usr/local/cargo/registry" \
  -t "$tag" .
