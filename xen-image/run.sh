#!/usr/bin/env bash
# Boot real Xen (QEMU TCG) with the Debian dom0 built by xen-image/build.sh, start a
# PV domU, run a command inside dom0 once the domU is up, print the command's
# stdout on stdout and exit with its status. See docs/xen.md.
set -euo pipefail

GI_PROG=xen-image/run.sh
# shellcheck source=xen-image/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF2
usage: xen-image/run.sh [options] -- CMD [ARG...]
  --domu-kernel F       PV domU kernel (default: guest-image's Debian vmlinuz)
  --domu-initrd F       domU initramfs (default: guest-image's busybox initramfs,
                        which starts hvprof-workload: hot_alpha/beta/gamma 60/30/10 %)
  --domu-system-map F   the domU kernel's System.map, in dom0 as \$DOMU_KALLSYMS
                        (default: the Debian kernel's, when --domu-kernel is not given)
  --domu-vcpus N        domU vCPUs (default 2)
  --domu-memory MB      domU memory (default 256)
  --domu-cmdline S      domU kernel command line after console=hvc0 (default:
                        quiet hvprof.workload_args="-d 0 -t VCPUS"); no single quotes
  --domu-ready PAT      wait until the domU console shows PAT before running CMD
                        (default HVPROF-GUEST-READY with the default initrd, else
                        only until xl lists the domU's vCPUs)
  --timeout S           seconds for the whole boot + CMD (default 600)
  --out DIR             build.sh's output dir (default: $XI_OUT_DEFAULT)
  --hvprof PATH         hvprof binary for dom0 (passed to build.sh)
  --no-build            do not run build.sh (use DIR/manifest.env as it is)
  --keep                keep the run directory (initrd, QEMU command) after the run
  -q, --quiet           no progress messages
  -h, --help            this text
CMD runs in dom0 (bash, root, cwd /root) with DOMU_NAME, DOMU_ID, DOMU_VCPUS,
DOMU_KALLSYMS (System.map path), DOMU_WORKLOAD (workload ELF), DOMU_WORKLOAD_SYMS
("ADDR SIZE T NAME" of hot_alpha/beta/gamma) and DOMU_CONSOLE_LOG in its
environment; hvprof is on PATH.
Stdout: CMD's stdout only; CMD's stderr goes to stderr. The boot log goes to
DIR/logs/ (DIR/logs/last.log links to the newest).
Exit status: CMD's; 124 on timeout; 125 when Xen, dom0 or the domU failed.
EOF2
}

OUT=$XI_OUT_DEFAULT
OPT_KERNEL=
OPT_INITRD=
OPT_MAP=
DOMU_VCPUS=2
DOMU_MEMORY=256
DOMU_CMDLINE=
DOMU_CMDLINE_SET=0
DOMU_READY=
DOMU_READY_SET=0
TIMEOUT=600
HVPROF=
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
	case "$1" in
	--domu-kernel) OPT_KERNEL=${2:?}; shift 2 ;;
	--domu-initrd) OPT_INITRD=${2:?}; shift 2 ;;
	--domu-system-map) OPT_MAP=${2:?}; shift 2 ;;
	--domu-vcpus) DOMU_VCPUS=${2:?}; shift 2 ;;
	--domu-memory) DOMU_MEMORY=${2:?}; shift 2 ;;
	--domu-cmdline) DOMU_CMDLINE=${2?}; DOMU_CMDLINE_SET=1; shift 2 ;;
	--domu-ready) DOMU_READY=${2?}; DOMU_READY_SET=1; shift 2 ;;
	--timeout) TIMEOUT=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	--hvprof) HVPROF=${2:?}; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	--keep) KEEP=1; shift ;;
	-q | --quiet) HVPROF_GUEST_QUIET=1; export HVPROF_GUEST_QUIET; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) usage >&2; gi_die "unknown argument: $1 (the command goes after --)" ;;
	esac
done
[ $# -gt 0 ] || { usage >&2; gi_die "no command given after --"; }
case "$DOMU_VCPUS" in '' | *[!0-9]*) gi_die "--domu-vcpus must be a number" ;; esac
[ "$DOMU_VCPUS" -ge 1 ] && [ "$DOMU_VCPUS" -le 8 ] || gi_die "--domu-vcpus must be 1..8"
case "$DOMU_MEMORY" in '' | *[!0-9]*) gi_die "--domu-memory must be a number (MB)" ;; esac
[ "$DOMU_MEMORY" -le 768 ] || gi_die "--domu-memory: at most 768 MB fit beside dom0's 1024 MB in 2048 MB"
case "$TIMEOUT" in '' | *[!0-9]*) gi_die "--timeout must be whole seconds" ;; esac
case "$DOMU_CMDLINE" in *"'"*) gi_die "--domu-cmdline must not contain single quotes" ;; esac
for f in "$OPT_KERNEL" "$OPT_INITRD" "$OPT_MAP"; do
	[ -z "$f" ] || [ -f "$f" ] || gi_die "$f: no such file"
done
[ "$DOMU_CMDLINE_SET" = 1 ] || DOMU_CMDLINE="quiet hvprof.workload_args=\"-d 0 -t $DOMU_VCPUS\""
if [ "$DOMU_READY_SET" = 0 ] && [ -z "$OPT_INITRD" ]; then DOMU_READY=HVPROF-GUEST-READY; fi
command -v qemu-system-x86_64 >/dev/null || gi_die "qemu-system-x86_64 not found: run guest-image/ci-deps.sh"

T0=$(gi_now)
# --- 1. images -----------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
	b=(--out "$OUT" --quiet)
	[ -n "$HVPROF" ] && b+=(--hvprof "$HVPROF")
	"$XI_DIR/build.sh" "${b[@]}" >/dev/null || exit 125
fi
[ -f "$OUT/manifest.env" ] || gi_die "$OUT/manifest.env not found: run xen-image/build.sh"
# shellcheck disable=SC1091 # generated file
. "$OUT/manifest.env"
gi_log "images ready after $(gi_elapsed "$T0") s"

# --- 2. this run's cpio: settings, command, custom domU files -------------------
mkdir -p "$OUT/logs" "$OUT/runs"
RUN_DIR=$(mktemp -d "$OUT/runs/run.XXXXXX")
case "$RUN_DIR$XEN$DOM0_KERNEL" in *[,\ ]*) gi_die "paths must not contain commas or spaces (QEMU -initrd): $RUN_DIR" ;; esac
LOG=$OUT/logs/boot-$(date -u +%Y%m%dT%H%M%S)-$$.log
# Keep the newest 30 boot logs (~20 KB each).
# (`|| true`: on the first run there is none, and under pipefail ls's exit 2 would end the run.)
{ ls -1t "$OUT"/logs/boot-*.log 2>/dev/null || true; } | tail -n +30 | xargs -r rm -f
ln -sfn "$(basename "$LOG")" "$OUT/logs/last.log"
QPID=
cleanup() {
	if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
		kill "$QPID" 2>/dev/null || true
		wait "$QPID" 2>/dev/null || true
	fi
	[ "$KEEP" = 1 ] || rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

R=$RUN_DIR/root
mkdir -p "$R/xen-test/run"
k=/xen-test/domu-vmlinuz
i=/xen-test/domu-initrd
m=/xen-test/domu-System.map
if [ -n "$OPT_KERNEL" ]; then
	cp "$OPT_KERNEL" "$R/xen-test/run/domu-kernel"; k=/xen-test/run/domu-kernel
	m=
fi
if [ -n "$OPT_INITRD" ]; then
	cp "$OPT_INITRD" "$R/xen-test/run/domu-initrd"; i=/xen-test/run/domu-initrd
fi
if [ -n "$OPT_MAP" ]; then
	cp "$OPT_MAP" "$R/xen-test/run/domu-System.map"; m=/xen-test/run/domu-System.map
fi
{
	printf 'XT_DOMU_NAME=%q\n' "$XI_DOMU_NAME"
	printf 'XT_DOMU_KERNEL=%q\n' "$k"
	printf 'XT_DOMU_INITRD=%q\n' "$i"
	printf 'XT_DOMU_KALLSYMS=%q\n' "$m"
	printf 'XT_DOMU_VCPUS=%q\n' "$DOMU_VCPUS"
	printf 'XT_DOMU_MEMORY=%q\n' "$DOMU_MEMORY"
	printf 'XT_DOMU_CMDLINE=%q\n' "$DOMU_CMDLINE"
	printf 'XT_DOMU_READY=%q\n' "$DOMU_READY"
	printf 'XT_READY_TIMEOUT=%q\n' "$TIMEOUT"
} >"$R/xen-test/run/env"
{
	echo '#!/bin/bash'
	printf 'exec'
	printf ' %q' "$@"
	echo
} >"$R/xen-test/run/cmd.sh"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) |
	gzip -1 -n >"$RUN_DIR/run.cpio.gz"
# The kernel unpacks concatenated (compressed) cpio archives in order.
cat "$DOM0_ROOT_CPIO" "$DOM0_OVERLAY_CPIO" "$RUN_DIR/run.cpio.gz" >"$RUN_DIR/dom0-initrd"
rm -rf "$R"

# --- 3. boot ---------------------------------------------------------------------
# -cpu qemu64,+svm: with -cpu max the PV dom0 kernel faults early (docs/xen.md).
XEN_ARGS="console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 loglvl=warning guest_loglvl=warning"
DOM0_ARGS="console=hvc0 loglevel=4"
# shellcheck disable=SC2054 # commas inside QEMU option values
QEMU=(qemu-system-x86_64 -accel tcg -cpu qemu64,+svm -m 2048 -smp 2
	-nographic -nic none -no-reboot -name hvprof-xen
	-kernel "$XEN" -append "$XEN_ARGS"
	-initrd "$DOM0_KERNEL $DOM0_ARGS,$RUN_DIR/dom0-initrd")
printf '%q ' "${QEMU[@]}" >"$RUN_DIR/qemu.cmd"
echo >>"$RUN_DIR/qemu.cmd"
{
	echo "# xen-image/run.sh $(date -u +%FT%TZ)"
	echo "# $(cat "$RUN_DIR/qemu.cmd")"
	printf '# command:'; printf ' %q' "$@"; echo
} >"$LOG"
TB=$(gi_now)
"${QEMU[@]}" </dev/null >>"$LOG" 2>&1 &
QPID=$!
gi_log "booting Xen (log: $LOG)"

boot_fail() { # STATUS MESSAGE
	printf '%s: error: %s\n--- last lines of %s ---\n' "$GI_PROG" "$2" "$LOG" >&2
	tr -d '\r' <"$LOG" | grep -v '^XEN-TEST-[OE] ' | tail -n 40 >&2 || true
	printf -- '--- end ---\n' >&2
	exit "$1"
}

deadline=$(awk -v t="$TB" -v d="$TIMEOUT" 'BEGIN { printf "%.3f", t + d }')
seen=
while :; do
	if grep -q '^XEN-TEST-OUT-END' "$LOG"; then break; fi
	if grep -q '^XEN-TEST-ERROR' "$LOG"; then
		sleep 1
		boot_fail 125 "the dom0 init failed: $(grep -m1 '^XEN-TEST-ERROR' "$LOG" | tr -d '\r')"
	fi
	if ! kill -0 "$QPID" 2>/dev/null; then
		rc=0
		wait "$QPID" || rc=$?
		QPID=
		boot_fail 125 "QEMU exited (status $rc) before the command's output"
	fi
	if awk -v n="$(gi_now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then
		boot_fail 124 "timeout: no command output within ${TIMEOUT}s (last state: ${seen:-none})"
	fi
	s=$(grep '^XEN-TEST-STATE' "$LOG" | tail -n 1 | tr -d '\r' | cut -d' ' -f2 || true)
	if [ -n "$s" ] && [ "$s" != "$seen" ]; then
		seen=$s
		gi_log "$s after $(gi_elapsed "$TB") s"
	fi
	sleep 0.5
done
gi_log "command done after $(gi_elapsed "$TB") s"

# --- 4. output ---------------------------------------------------------------------
end=$(grep -m1 '^XEN-TEST-OUT-END' "$LOG" | tr -d '\r')
field() { echo "$end" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
rc=$(field rc)
want_bytes=$(field out_bytes)
want_cksum=$(field out_cksum)
grep '^XEN-TEST-O ' "$LOG" | cut -c12- | tr -d '\r' | base64 -d >"$RUN_DIR/out" 2>/dev/null ||
	boot_fail 125 "the command's stdout did not decode (a console line torn?)"
grep '^XEN-TEST-E ' "$LOG" | cut -c12- | tr -d '\r' | base64 -d >"$RUN_DIR/err" 2>/dev/null || true
got_bytes=$(stat -c %s "$RUN_DIR/out")
got_cksum=$(cksum <"$RUN_DIR/out" | cut -d' ' -f1)
if [ "$got_bytes" != "$want_bytes" ] || [ "$got_cksum" != "$want_cksum" ]; then
	boot_fail 125 "the command's stdout arrived damaged: $got_bytes bytes cksum $got_cksum, dom0 sent $want_bytes bytes cksum $want_cksum"
fi
cat "$RUN_DIR/err" >&2
cat "$RUN_DIR/out"

# Let dom0 power the machine off (sysrq o) before QEMU is killed.
for _ in $(seq 1 60); do
	kill -0 "$QPID" 2>/dev/null || break
	sleep 0.5
done
gi_log "total $(gi_elapsed "$T0") s"
case "$rc" in '' | *[!0-9]*) exit 125 ;; esac
exit "$rc"
