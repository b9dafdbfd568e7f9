#!/usr/bin/env bash
# Self-check of the test workload on the host: run hvprof-workload under
# `perf record -e cpu-clock` and check that hot_alpha/hot_beta/hot_gamma get
# 60/30/10 % of all its samples, within +-TOL points (default 3).
# Needs perf (Debian package linux-perf) and the right to sample one's own
# process (root, or perf_event_paranoid <= 2).
set -euo pipefail

GI_PROG=check-shares.sh
# shellcheck source=guest-image/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=5
TOL=3
WORKLOAD=
while [ $# -gt 0 ]; do
	case "$1" in
	--duration) DURATION=${2:?}; shift 2 ;;
	--tolerance) TOL=${2:?}; shift 2 ;;
	--workload) WORKLOAD=${2:?}; shift 2 ;;
	-h | --help)
		echo "usage: guest-image/check-shares.sh [--duration S] [--tolerance POINTS] [--workload PATH]"
		exit 0
		;;
	*) gi_die "unknown argument: $1" ;;
	esac
done
command -v perf >/dev/null || gi_die "perf not found (apt-get install linux-perf)"

TMP=$(mktemp -d /tmp/hvprof-shares.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
if [ -z "$WORKLOAD" ]; then
	gcc -O1 -static -g -fno-omit-frame-pointer -fno-ipa-icf -o "$TMP/hvprof-workload" \
		"$GI_DIR/workload.c" -lpthread || gi_die "compiling workload.c failed"
	WORKLOAD=$TMP/hvprof-workload
fi

perf record -q --no-buildid -e cpu-clock -F 999 -o "$TMP/perf.data" -- "$WORKLOAD" -d "$DURATION" >"$TMP/workload.out" 2>"$TMP/perf.err" ||
	{ cat "$TMP/perf.err" >&2; gi_die "perf record failed"; }
perf report -i "$TMP/perf.data" --stdio --sort sym 2>/dev/null >"$TMP/report.txt" ||
	gi_die "perf report failed"
samples=$(perf script -i "$TMP/perf.data" -F ip 2>/dev/null | wc -l)

echo "workload: $(tail -n 1 "$TMP/workload.out")"
echo "perf samples: ${samples:-?} (cpu-clock, 999 Hz, ${DURATION} s)"
grep -v '^#' "$TMP/report.txt" | grep -v '^$' | head -n 6 | sed 's/^/  /'
pass=0
fail=0
for want in hot_alpha:60 hot_beta:30 hot_gamma:10; do
	fn=${want%%:*}
	exp=${want#*:}
	got=$(awk -v fn="$fn" '$NF == fn { sub("%", "", $1); print $1; exit }' "$TMP/report.txt")
	got=${got:-0}
	if awk -v g="$got" -v e="$exp" -v t="$TOL" 'BEGIN { d = g - e; if (d < 0) d = -d; exit !(d <= t) }'; then
		echo "ok   $fn ${got}% (expected ${exp} +-${TOL})"
		pass=$((pass + 1))
	else
		echo "FAIL $fn ${got}% (expected ${exp} +-${TOL})"
		fail=$((fail + 1))
	fi
done
echo "shares: $pass passed, $fail failed"
[ "$fail" = 0 ]
