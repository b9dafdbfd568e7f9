#!/usr/bin/env bash
# Builds the static in-guest helper and prints its path:
#   target/x86_64-unknown-linux-gnu/release/hvprof-guest
# (glibc static-pie: runs in a guest with no libraries; see docs/active.md).
# --target keeps RUSTFLAGS away from build scripts and proc-macros.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
	cargo build --release -p hvprof-guest --target x86_64-unknown-linux-gnu "$@" >&2
BIN=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/hvprof-guest
if ldd "$BIN" 2>&1 | grep -q '=>'; then
	echo "guest/build-static.sh: $BIN is dynamically linked" >&2
	exit 1
fi
echo "$BIN"
