#!/usr/bin/env bash
# End-to-end proof that the test guest works: build it, boot it, and check
# from the host that
#   (a) the console shows HVPROF-GUEST-READY (boot-to-READY time measured),
#   (b) /dev/virtio-ports/org.hvprof.0 exists in the guest, and a host
#       process on the unix socket receives the bytes the guest writes
#       (hello line + echo of a ping when no helper is installed),
#   (c) in-guest perf sampling works: perf_event_paranoid written to -1, the
#       software PMU exists, cpu-clock sampling yields samples, and the
#       workload's shares measured in the guest are 60/30/10,
#   (d) the host sees QEMU's vCPU threads "CPU 0/TCG", "CPU 1/TCG",
# plus: the guest kernel has no KASLR (_text as in System.map), and the
# guest powers itself off after the workload.
# Last line: "guest: N passed, N failed". Exit status 0 only if all passed.
# The run directory (console log, sockets) is removed on success unless --keep.
set -euo pipefail

GI_PROG=prove.sh
# shellcheck source=guest-image/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=$GI_OUT_DEFAULT
BUILD=1
DURATION=8
HELPER=
ACCEL=${HVPROF_GUEST_ACCEL:-tcg}
TOL=3
KEEP=0
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=${2:?}; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	--duration) DURATION=${2:?}; shift 2 ;;
	--helper) HELPER=${2:?}; shift 2 ;;
	--accel) ACCEL=${2:?}; shift 2 ;;
	--tolerance) TOL=${2:?}; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h | --help)
		echo "usage: guest-image/prove.sh [--out DIR] [--no-build] [--duration S] [--helper PATH] [--accel tcg|kvm] [--tolerance POINTS] [--keep]"
		exit 0
		;;
	*) gi_die "unknown argument: $1" ;;
	esac
done
[ "$DURATION" -ge 6 ] 2>/dev/null || gi_die "--duration must be an integer >= 6 (the in-guest shares check samples 4 s)"

pass=0
fail=0
check() { # NAME CONDITION-STATUS DETAIL
	if [ "$2" = 0 ]; then
		echo "ok   $1${3:+: $3}"
		pass=$((pass + 1))
	else
		echo "FAIL $1${3:+: $3}"
		fail=$((fail + 1))
	fi
}

BUILD_S=-
if [ "$BUILD" = 1 ]; then
	t=$(gi_now)
	bargs=(--out "$OUT" -q)
	[ -n "$HELPER" ] && bargs+=(--helper "$HELPER")
	"$GI_DIR/build.sh" "${bargs[@]}" >/dev/null
	BUILD_S=$(gi_elapsed "$t")
fi

RUN_DIR=$(mktemp -d /tmp/hvprof-prove.XXXXXX)
QPID=
cleanup() {
	if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
		kill "$QPID" 2>/dev/null || true
	fi
}
trap cleanup EXIT

PC_MS=4000
if ! "$GI_DIR/run.sh" --out "$OUT" --accel "$ACCEL" --run-dir "$RUN_DIR" --duration "$DURATION" \
	--append "hvprof.perfcheck=1 hvprof.perfcheck_ms=$PC_MS" >"$RUN_DIR/run.env"; then
	check "(a) boot to HVPROF-GUEST-READY" 1 "run.sh failed (see above)"
	echo "guest: $pass passed, $fail failed"
	exit 1
fi
envval() { sed -n "s/^$1=//p" "$RUN_DIR/run.env" | head -n 1; }
QPID=$(envval QEMU_PID)
SOCK=$(envval SERIAL_SOCKET)
LOG=$(envval CONSOLE_LOG)
ACCEL_USED=$(envval ACCEL)
READY_S=$(envval READY_S)
UPTIME_S=$(envval GUEST_UPTIME_S)
T_READY=$(gi_now)
echo "qemu pid $QPID, accel $ACCEL_USED, console $LOG, socket $SOCK"

# (a)
check "(a) console shows HVPROF-GUEST-READY" "$(grep -q '^HVPROF-GUEST-READY' "$LOG"; echo $?)" \
	"host ${READY_S} s from QEMU start, guest uptime ${UPTIME_S} s"

# (d) first, while QEMU surely runs.
case "$ACCEL_USED" in kvm) tag=KVM ;; *) tag=TCG ;; esac
threads=$(for t in /proc/"$QPID"/task/*; do printf '%s=%s; ' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)"; done)
ok=0
for n in 0 1; do
	grep -q "=CPU $n/$tag;" <<<"$threads" || ok=1
done
check "(d) host sees vCPU threads CPU 0/$tag, CPU 1/$tag" "$ok" "$threads"
# QMP query-cpus-fast gives each vCPU's host thread id: it must name the same
# threads.
QMP=$(envval QMP_SOCKET)
if qmp=$(perl -MIO::Socket::UNIX -e '
	my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect $ARGV[0]: $!\n";
	$SIG{ALRM} = sub { die "QMP timeout\n" };
	alarm 10;
	my $greeting = <$s>;
	print $s "{\"execute\":\"qmp_capabilities\"}\n";
	my $r = <$s>;
	print $s "{\"execute\":\"query-cpus-fast\"}\n";
	while (defined($r = <$s>)) { last if $r =~ /"return"/ }
	die "no reply\n" unless defined $r;
	# Each vCPU: {"thread-id": TID, "props": {... "thread-id": 0 ...}, ..., "cpu-index": N, ...}
	$r =~ s/"props":\s*\{[^}]*\}//g;
	my @pairs;
	while ($r =~ /\{"thread-id":\s*(\d+)[^{}]*"cpu-index":\s*(\d+)/g) { push @pairs, "$2:$1" }
	die "no vCPUs in reply: $r" unless @pairs;
	print "@pairs\n";
' "$QMP" 2>&1); then
	ok=0
	for pair in $qmp; do
		[ "$(cat "/proc/$QPID/task/${pair#*:}/comm" 2>/dev/null)" = "CPU ${pair%%:*}/$tag" ] || ok=1
	done
	check "(d) QMP query-cpus-fast thread ids are those threads" "$ok" "cpu-index:tid $qmp"
else
	check "(d) QMP query-cpus-fast thread ids are those threads" 1 "$qmp"
fi

# (b)
ok=0
grep -q '^hvprof-init: port org.hvprof.0 -> /dev/vport[0-9]*p[0-9]* (sysfs name: org.hvprof.0)' "$LOG" || ok=1
grep -q '^hvprof-init: ls: .*org.hvprof.0 -> /dev/vport' "$LOG" || ok=1
check "(b) guest has /dev/virtio-ports/org.hvprof.0" "$ok" \
	"$(grep -m1 '^hvprof-init: ls: .*org.hvprof.0' "$LOG" | sed 's/^hvprof-init: ls: *//')"
mode="echo"
[ -n "$HELPER" ] && mode=raw
if out=$(perl -MIO::Socket::UNIX -e '
	my ($path, $mode) = @ARGV;
	my $s;
	for (1 .. 100) { $s = IO::Socket::UNIX->new(Peer => $path) and last; select(undef, undef, undef, 0.1) }
	$s or die "connect $path: $!\n";
	$SIG{ALRM} = sub { die "timeout waiting for guest bytes\n" };
	alarm 30;
	if ($mode eq "raw") {
		my $n = sysread($s, my $buf, 4096);
		die "EOF\n" unless $n;
		print "received $n bytes from the helper\n";
		exit 0;
	}
	my $l = <$s>;
	defined $l or die "EOF before hello\n";
	chomp $l;
	die "unexpected first line: $l\n" unless $l =~ /^HVPROF-GUEST-HELLO /;
	my $ping = "ping-$$-" . time;
	print $s "$ping\n";
	$s->flush;
	my $e = <$s>;
	defined $e or die "EOF before echo\n";
	chomp $e;
	die "bad echo: $e\n" unless $e eq "echo: $ping";
	print "received \"$l\"; sent \"$ping\", got \"$e\"\n";
' "$SOCK" "$mode" 2>&1); then
	check "(b) host reads bytes the guest writes to the port" 0 "$out"
else
	check "(b) host reads bytes the guest writes to the port" 1 "$out"
fi

# (c)
check "(c) perf_event_paranoid writable in the guest" \
	"$(grep -q '^hvprof-init: perf_event_paranoid=-1 (written)' "$LOG"; echo $?)" \
	"$(grep -m1 '^hvprof-init: perf_event_paranoid' "$LOG" | sed 's/^hvprof-init: //')"
check "(c) /sys/bus/event_source/devices/software exists in the guest" \
	"$(grep -q '^hvprof-init: software pmu: /sys/bus/event_source/devices/software' "$LOG"; echo $?)" \
	"$(grep -m1 '^hvprof-init: event_source devices' "$LOG" | sed 's/^hvprof-init: //')"
check "(c) cpu-clock sampling in the guest yields samples" \
	"$(grep -q '^hvprof-perfcheck: cpu-clock self ok' "$LOG"; echo $?)" \
	"$(grep '^hvprof-perfcheck: \(cpu-clock\|cycles\)' "$LOG" | sed 's/^hvprof-perfcheck: //' | paste -sd ';' -)"

# KASLR: the guest's _text must be System.map's.
guest_text=$(sed -n 's/^hvprof-init: kallsyms \([0-9a-f]*\) T _text[[:space:]]*$/\1/p' "$LOG")
map_text=$(awk '$3 == "_text" { print $1; exit }' "$OUT/System.map" 2>/dev/null || true)
check "guest _text equals System.map (no KASLR)" "$([ -n "$guest_text" ] && [ "$guest_text" = "$map_text" ]; echo $?)" \
	"guest ${guest_text:-?}, System.map ${map_text:-?}"

# In-guest shares, measured by hvprof-perfcheck --shares (4 s after READY).
line=
for _ in $(seq 1 $((PC_MS / 100 + 300))); do
	line=$(grep -m1 '^hvprof-perfcheck: shares' "$LOG" || true)
	[ -n "$line" ] && break
	kill -0 "$QPID" 2>/dev/null || break
	sleep 0.1
done
if [ -n "$line" ]; then
	read -r a b g k <<<"$(sed -n 's/.* hot_alpha=\([0-9.]*\) hot_beta=\([0-9.]*\) hot_gamma=\([0-9.]*\) kernel=\([0-9.]*\).*/\1 \2 \3 \4/p' <<<"$line")"
	res=$(awk -v a="$a" -v b="$b" -v g="$g" -v t="$TOL" 'BEGIN {
		s = a + b + g; if (s <= 0) { print "1 no samples"; exit }
		na = 100 * a / s; nb = 100 * b / s; ng = 100 * g / s
		ok = (na - 60 <= t && 60 - na <= t && nb - 30 <= t && 30 - nb <= t && ng - 10 <= t && 10 - ng <= t)
		printf "%d normalized %.1f/%.1f/%.1f", !ok, na, nb, ng }')
	check "(c) workload shares in the guest are 60/30/10 +-$TOL" "${res%% *}" \
		"${res#* } (raw ${a}/${b}/${g}, guest kernel ${k}%)"
else
	check "(c) workload shares in the guest are 60/30/10 +-$TOL" 1 "no 'hvprof-perfcheck: shares' line"
fi

# Poweroff after the workload.
limit=$((DURATION + 60))
while kill -0 "$QPID" 2>/dev/null; do
	if [ "$(awk -v s="$T_READY" -v e="$(gi_now)" 'BEGIN { print int(e - s) }')" -gt "$limit" ]; then
		break
	fi
	sleep 0.2
done
TOTAL_S=$(gi_elapsed "$T_READY")
ok=0
kill -0 "$QPID" 2>/dev/null && ok=1
grep -q '^HVPROF-GUEST-WORKLOAD-EXIT status=0' "$LOG" || ok=1
grep -q '^HVPROF-GUEST-POWEROFF' "$LOG" || ok=1
check "guest runs the workload and powers off" "$ok" \
	"$(grep -m1 '^hvprof-workload: done' "$LOG" | sed 's/^hvprof-workload: //'); off ${TOTAL_S} s after READY"

echo "timings: build ${BUILD_S} s, boot-to-READY ${READY_S} s (guest uptime ${UPTIME_S} s)"
if [ "$fail" = 0 ] && [ "$KEEP" = 0 ]; then
	rm -rf "$RUN_DIR"
else
	echo "console log: $LOG"
fi
echo "guest: $pass passed, $fail failed"
[ "$fail" = 0 ]
