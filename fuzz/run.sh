#!/usr/bin/env bash
# Runs the fuzz targets for SECONDS in all (default 60), shared between them: the protocol
# decoder (fuzz_targets/decode.rs), the perf record decoder (fuzz_targets/records.rs), the
# perf.data reader (fuzz_targets/perfdata.rs) and the xentrace file parser
# (fuzz_targets/xentrace.rs).
#
#   fuzz/run.sh 300
#
# Installs cargo-fuzz from crates.io when missing. cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address, sancov); with a nightly toolchain installed (rustup) it uses it, else
# it runs the stable compiler with RUSTC_BOOTSTRAP=1, which accepts those flags (see
# docs/active.md, "Fuzzing"). Crashes land in fuzz/artifacts/TARGET/; the script exits
# non-zero when one is found.
set -euo pipefail
SECS=${1:-60}
case $SECS in '' | *[!0-9]*) echo "usage: fuzz/run.sh SECONDS" >&2; exit 2 ;; esac
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz/run.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
	cargo install cargo-fuzz --locked
fi
TOOLCHAIN=()
if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
	TOOLCHAIN=(+nightly)
else
	export RUSTC_BOOTSTRAP=1
	echo "fuzz/run.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
fi
TARGETS=(decode records perfdata xentrace)
EACH=$((SECS / ${#TARGETS[@]}))
[ "$EACH" -gt 0 ] || EACH=1
for t in "${TARGETS[@]}"; do
	mkdir -p "corpus/$t"
	echo "fuzz/run.sh: $t for $EACH s" >&2
	# -rss_limit_mb: the decoders must stay far below it whatever the input.
	cargo "${TOOLCHAIN[@]}" fuzz run "$t" "corpus/$t" -- \
		-max_total_time="$EACH" -rss_limit_mb=1024 -max_len=65536 -timeout=10
done
