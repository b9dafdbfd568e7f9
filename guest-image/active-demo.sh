#!/usr/bin/env bash
# One command for active mode on a real Linux guest: build the static in-guest helper and the
# guest image (Debian kernel + busybox initramfs + hvprof-workload), boot it under QEMU, profile
# it with `hvprof record --active` and print the report (guest processes and their functions by
# name beside the host's view). Needs root; installs its packages on first use.
#
#   guest-image/active-demo.sh [SECONDS] [extra hvprof record options...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECS=${1:-5}
shift || true
bash guest-image/ci-deps.sh --no-perf >&2
cargo build --release -p hvprof >&2
HELPER=$(bash guest/build-static.sh | tail -n 1)
OUT=${CARGO_TARGET_DIR:-target}/guest-image
bash guest-image/build.sh --out "$OUT" --helper "$HELPER" >&2
ENV=$(bash guest-image/run.sh --out "$OUT" --duration $((SECS + 90)))
QEMU_PID=$(sed -n 's/^QEMU_PID=//p' <<<"$ENV")
SOCK=$(sed -n 's/^SERIAL_SOCKET=//p' <<<"$ENV")
trap 'kill "$QEMU_PID" 2>/dev/null || true' EXIT
echo "active-demo: guest booted (QEMU pid $QEMU_PID); profiling for $SECS s" >&2
"${CARGO_TARGET_DIR:-target}/release/hvprof" record -p "$QEMU_PID" -e cpu-clock -d "$SECS" \
	--active --helper "unix:$SOCK" "$@"
