#!/usr/bin/env bash
# CI has no registry: this makes local stand-ins for the Dockerfile's two base images, so the
# image is built from the real Dockerfile with only the base-image arguments overridden.
#
#   localhost/billing-rust-builder  Debian 12 (debootstrap) with gcc and libc headers; the Rust
#                                   toolchain is this machine's, mounted at build time where the
#                                   official rust image keeps it (/usr/local/rustup, /usr/local/cargo).
#   localhost/billing-runtime       distroless-like: glibc, libgcc, CA certificates, /etc/passwd with
#                                   the "nonroot" user 65532, no shell, no package manager.
#
# Usage: scripts/make-base-images.sh WORKDIR     (needs root, debootstrap and podman)
set -euo pipefail
work=${1:?usage: make-base-images.sh WORKDIR}
mkdir -p "$work"
rootfs=$work/bookworm
if [ ! -x "$rootfs/usr/bin/gcc" ]; then
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"
fi

# Builder: the rootfs, plus the paths the rust image puts on PATH, linked to this machine's
# toolchain (mounted at /usr/local/rustup/toolchains/<name> when the image is built).
toolchain=$(basename "$(rustc --print sysroot)")
if ! podman image exists localhost/billing-rust-builder:latest; then
  mkdir -p "$rootfs/usr/local/cargo/bin" "$rootfs/usr/local/rustup/toolchains/$toolchain"
  for tool in cargo rustc rustdoc; do
    ln -sf "/usr/local/rustup/toolchains/$toolchain/bin/$tool" "$rootfs/usr/local/cargo/bin/$tool"
  done
  tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
    - localhost/billing-rust-builder:latest >/dev/null
fi

# Runtime: only what a dynamically linked Rust binary needs.
if ! podman image exists localhost/billing-runtime:latest; then
  rt=$work/runtime
  rm -rf "$rt"
  mkdir -p "$rt"/{etc/ssl/certs,lib/x86_64-linux-gnu,lib64,tmp,home/nonroot,usr/local/bin}
  chmod 1777 "$rt/tmp"
  for lib in libc.so.6 libm.so.6 libgcc_s.so.1; do
    cp -L "$rootfs/lib/x86_64-linux-gnu/$lib" "$rt/lib/x86_64-linux-gnu/"
  done
  cp -L "$rootfs/lib64/ld-linux-x86-64.so.2" "$rt/lib64/"
  cp -L "$rootfs/etc/ssl/certs/ca-certificates.crt" "$rt/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rt/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rt/etc/group"
  printf 'hosts: files dns\n' >"$rt/etc/nsswitch.conf"
  chown 65532:65532 "$rt/home/nonroot"
  tar -C "$rt" -c . | podman import --change 'USER 65532:65532' - localhost/billing-runtime:latest >/dev/null
fi
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep billing- || true
