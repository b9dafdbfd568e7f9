#!/usr/bin/env bash
# Boot the hvprof test guest built by guest-image/build.sh with QEMU, in the
# background, and wait until its init prints HVPROF-GUEST-READY.
# See docs/real-guest.md.
set -euo pipefail

GI_PROG=run.sh
# shellcheck source=guest-image/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: guest-image/run.sh [options]
  --out DIR              images from build.sh (default: $GI_OUT_DEFAULT)
  --accel tcg|kvm        default \$HVPROF_GUEST_ACCEL or tcg; kvm is used only
                         when /dev/kvm opens read-write, else tcg with a warning
  --serial-socket PATH   unix socket for the virtio-serial port org.hvprof.0
                         (default: RUN_DIR/org.hvprof.0.sock)
  --run-dir DIR          where the socket, console log, QMP socket and pid file
                         go (default: a new /tmp/hvprof-guest.XXXXXX)
  --log PATH             console log (default: RUN_DIR/console.log)
  --duration S           workload run time (hvprof.duration=S; default 20, 0 = forever)
  --workload-args STR    hvprof.workload_args="STR" (overrides --duration)
  --workload-mode MODE   shares (default: 60/30/10) or callers (hot_shared via
                         via_left/via_right 70/30; hvprof.workload_mode=MODE)
  --no-workload          do not start the workload (hvprof.workload=0)
  --helper-args STR      hvprof.helper_args="STR"
  --append STR           more kernel command line
  --mem MB               guest memory (default 512)
  --smp N                vCPUs (default 2)
  --vmlinuz              boot the compressed vmlinuz (slower) instead of vmlinux
  --vsock-cid N          add vhost-vsock-pci with guest CID N (needs /dev/vhost-vsock)
  --qemu-arg ARG         extra QEMU argument (repeatable)
  --timeout S            seconds to wait for READY (default 90 tcg, 30 kvm)
  --wait                 after READY, wait for the guest to power off; exit
                         with QEMU's status
  -h, --help             this text
Stdout: KEY=VALUE lines: QEMU_PID, SERIAL_SOCKET, QMP_SOCKET, CONSOLE_LOG,
RUN_DIR, ACCEL, then READY_S (host seconds from QEMU start to READY) and
GUEST_UPTIME_S. QEMU keeps running after this script returns (without --wait);
stop it with: kill \$QEMU_PID.
EOF
}

OUT=$GI_OUT_DEFAULT
ACCEL=${HVPROF_GUEST_ACCEL:-tcg}
SOCK=
RUN_DIR=
LOG=
APPEND=()
MEM=512
SMP=2
USE_VMLINUZ=0
VSOCK_CID=
QEMU_EXTRA=()
TIMEOUT=
WAIT=0
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=${2:?}; shift 2 ;;
	--accel) ACCEL=${2:?}; shift 2 ;;
	--serial-socket) SOCK=${2:?}; shift 2 ;;
	--run-dir) RUN_DIR=${2:?}; shift 2 ;;
	--log) LOG=${2:?}; shift 2 ;;
	--duration) APPEND+=("hvprof.duration=${2:?}"); shift 2 ;;
	--workload-args) APPEND+=("hvprof.workload_args=\"${2:?}\""); shift 2 ;;
	--workload-mode) APPEND+=("hvprof.workload_mode=${2:?}"); shift 2 ;;
	--no-workload) APPEND+=("hvprof.workload=0"); shift ;;
	--helper-args) APPEND+=("hvprof.helper_args=\"${2?}\""); shift 2 ;;
	--append) APPEND+=("${2:?}"); shift 2 ;;
	--mem) MEM=${2:?}; shift 2 ;;
	--smp) SMP=${2:?}; shift 2 ;;
	--vmlinuz) USE_VMLINUZ=1; shift ;;
	--vsock-cid) VSOCK_CID=${2:?}; shift 2 ;;
	--qemu-arg) QEMU_EXTRA+=("${2:?}"); shift 2 ;;
	--timeout) TIMEOUT=${2:?}; shift 2 ;;
	--wait) WAIT=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; gi_die "unknown argument: $1" ;;
	esac
done

[ -f "$OUT/manifest.env" ] || gi_die "$OUT/manifest.env not found: run guest-image/build.sh first"
VMLINUX=$OUT/vmlinux
[ "$USE_VMLINUZ" = 1 ] && VMLINUX=$OUT/vmlinuz
INITRAMFS=$OUT/initramfs.cpio.gz
for f in "$VMLINUX" "$INITRAMFS"; do
	[ -f "$f" ] || gi_die "$f not found: run guest-image/build.sh"
done
command -v qemu-system-x86_64 >/dev/null || gi_die "qemu-system-x86_64 not found: run guest-image/ci-deps.sh"

# Accelerator: kvm only when asked for AND /dev/kvm opens read-write. (On
# this project's nested-KVM-on-PVM machine /dev/kvm opens but a stock kernel
# does not boot under it, hence the tcg default.)
# shellcheck disable=SC2054 # commas inside QEMU option values
case "$ACCEL" in
tcg) ACCEL_ARGS=(-accel tcg,thread=multi) ;;
kvm)
	if { exec 8<>/dev/kvm; } 2>/dev/null; then
		exec 8>&-
		ACCEL_ARGS=(-accel kvm -cpu host)
	else
		gi_log "warning: --accel kvm but /dev/kvm is not usable: using tcg"
		ACCEL=tcg
		ACCEL_ARGS=(-accel tcg,thread=multi)
	fi
	;;
*) gi_die "--accel must be tcg or kvm, not '$ACCEL'" ;;
esac
if [ -z "$TIMEOUT" ]; then
	TIMEOUT=90
	[ "$ACCEL" = kvm ] && TIMEOUT=30
fi

if [ -z "$RUN_DIR" ]; then
	RUN_DIR=$(mktemp -d /tmp/hvprof-guest.XXXXXX)
else
	mkdir -p "$RUN_DIR"
fi
RUN_DIR=$(cd "$RUN_DIR" && pwd)
SOCK=${SOCK:-$RUN_DIR/org.hvprof.0.sock}
LOG=${LOG:-$RUN_DIR/console.log}
QMP=$RUN_DIR/qmp.sock
PIDFILE=$RUN_DIR/qemu.pid
rm -f "$SOCK" "$QMP" "$PIDFILE"
: >"$LOG" || gi_die "cannot write $LOG"

VSOCK_ARGS=()
if [ -n "$VSOCK_CID" ]; then
	[ -c /dev/vhost-vsock ] || gi_die "--vsock-cid: /dev/vhost-vsock missing (modprobe vhost_vsock)"
	VSOCK_ARGS=(-device "vhost-vsock-pci,guest-cid=$VSOCK_CID")
fi

CMDLINE="console=ttyS0 quiet panic=-1 ${APPEND[*]+"${APPEND[*]}"}"
# shellcheck disable=SC2054 # commas inside QEMU option values
QEMU=(qemu-system-x86_64
	"${ACCEL_ARGS[@]}"
	-m "$MEM" -smp "$SMP"
	-kernel "$VMLINUX" -initrd "$INITRAMFS" -append "$CMDLINE"
	-nographic -nic none -no-reboot
	-name hvprof-guest,debug-threads=on
	-pidfile "$PIDFILE"
	-qmp "unix:$QMP,server=on,wait=off"
	-device virtio-serial-pci
	-chardev "socket,id=hv0,path=$SOCK,server=on,wait=off"
	-device virtserialport,chardev=hv0,name=org.hvprof.0
	"${VSOCK_ARGS[@]+"${VSOCK_ARGS[@]}"}"
	"${QEMU_EXTRA[@]+"${QEMU_EXTRA[@]}"}")
printf '%q ' "${QEMU[@]}" >"$RUN_DIR/qemu.cmd"
echo >>"$RUN_DIR/qemu.cmd"

T0=$(gi_now)
"${QEMU[@]}" </dev/null >>"$LOG" 2>&1 &
QPID=$!
echo "QEMU_PID=$QPID"
echo "SERIAL_SOCKET=$SOCK"
echo "QMP_SOCKET=$QMP"
echo "CONSOLE_LOG=$LOG"
echo "RUN_DIR=$RUN_DIR"
echo "ACCEL=$ACCEL"

fail() {
	printf '%s: error: %s\n--- last lines of %s ---\n' "$GI_PROG" "$1" "$LOG" >&2
	tail -n 30 "$LOG" >&2 || true
	printf -- '--- end (command: %s) ---\n' "$RUN_DIR/qemu.cmd" >&2
	if kill -0 "$QPID" 2>/dev/null; then
		kill "$QPID" 2>/dev/null || true
		wait "$QPID" 2>/dev/null || true
	fi
	exit 1
}
trap 'fail "interrupted"' INT TERM

deadline=$(awk -v t="$T0" -v d="$TIMEOUT" 'BEGIN { printf "%.3f", t + d }')
while :; do
	if grep -q '^HVPROF-GUEST-READY' "$LOG"; then
		break
	fi
	if ! kill -0 "$QPID" 2>/dev/null; then
		rc=0
		wait "$QPID" || rc=$?
		fail "QEMU exited (status $rc) before HVPROF-GUEST-READY"
	fi
	if awk -v n="$(gi_now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then
		fail "no HVPROF-GUEST-READY within ${TIMEOUT}s"
	fi
	sleep 0.05
done
echo "READY_S=$(gi_elapsed "$T0")"
ready=$(grep -m1 '^HVPROF-GUEST-READY' "$LOG")
up=${ready#*uptime_s=}
echo "GUEST_UPTIME_S=${up%% *}"
if grep -q '^HVPROF-GUEST-ERROR' "$LOG"; then
	gi_log "warning: the guest reported errors:"
	grep '^HVPROF-GUEST-ERROR' "$LOG" >&2
fi

if [ "$WAIT" = 1 ]; then
	rc=0
	wait "$QPID" || rc=$?
	trap - INT TERM
	echo "QEMU_EXIT=$rc"
	echo "TOTAL_S=$(gi_elapsed "$T0")"
	grep -q '^HVPROF-GUEST-POWEROFF' "$LOG" || gi_die "QEMU exited without HVPROF-GUEST-POWEROFF (see $LOG)"
	exit "$rc"
fi
trap - INT TERM
