#!/bin/sh
# /init of the hvprof test guest (busybox sh). Installed by guest-image/build.sh.
#
# Kernel command line parameters read from /proc/cmdline (a value with spaces
# goes in double quotes: hvprof.helper_args="--a 1 --b"):
#   hvprof.helper_args=ARGS    args for /bin/hvprof-guest
#                              (default: contents of /etc/hvprof-guest.args, else none)
#   hvprof.workload_args=ARGS  args for /bin/hvprof-workload (default: -d DURATION)
#   hvprof.workload_mode=MODE  workload mode: shares (default; hot_alpha/beta/gamma
#                              60/30/10) or callers (hot_shared via via_left/via_right
#                              70/30, for call-stack tests); passed as -m MODE
#   hvprof.duration=S          workload run time in seconds (default 20; 0 = forever)
#   hvprof.workload=0          do not start the workload (guest idles DURATION s)
#   hvprof.grace=S             seconds between workload exit and poweroff (default 2)
#   hvprof.perfcheck=1         run /bin/hvprof-perfcheck (in-guest cpu-clock
#                              sampling test, ~0.4 s) before READY, and after it
#                              `hvprof-perfcheck --shares` on the workload
#   hvprof.perfcheck_ms=MS     how long --shares samples (default 3000)
#
# Console protocol (lines the host may parse; all start at column 0):
#   hvprof-init: ...                 informational
#   HVPROF-GUEST-READY k=v ...       helper and workload started
#   HVPROF-GUEST-WORKLOAD-EXIT status=N
#   HVPROF-GUEST-POWEROFF
#   HVPROF-GUEST-ERROR ...           something required failed (init goes on if it can)
# The helper (if any) gets HVPROF_PORT=/dev/virtio-ports/org.hvprof.0 in its
# environment; the workload's pid is written to /run/hvprof-workload.pid.

# shellcheck disable=SC2012 # ls output is only printed
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

PORT_NAME=org.hvprof.0
PORT=/dev/virtio-ports/$PORT_NAME

say() { echo "hvprof-init: $*"; }
err() { echo "HVPROF-GUEST-ERROR $*"; }

# --- mounts ---------------------------------------------------------------
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev || err "mount devtmpfs failed"
# No /dev/console in the cpio (non-root build): reopen the console now.
[ -e /proc/self/fd/1 ] || exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || say "debugfs: not mounted"
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || say "tracefs: not mounted"

say "kernel $(uname -r) uptime_s=$(cut -d' ' -f1 /proc/uptime)"

# --- cmdline --------------------------------------------------------------
CMDLINE=" $(cat /proc/cmdline) "
# param KEY: print the value of KEY=VALUE or KEY="VALUE WITH SPACES"; fail if absent.
param() {
	case "$CMDLINE" in
	*" $1="*) ;;
	*) return 1 ;;
	esac
	_rest=${CMDLINE#*" $1="}
	case "$_rest" in
	\"*)
		_rest=${_rest#\"}
		printf '%s' "${_rest%%\"*}"
		;;
	*) printf '%s' "${_rest%% *}" ;;
	esac
}

DURATION=$(param hvprof.duration) || DURATION=20
GRACE=$(param hvprof.grace) || GRACE=2
RUN_WORKLOAD=$(param hvprof.workload) || RUN_WORKLOAD=1
WORKLOAD_ARGS=$(param hvprof.workload_args) || WORKLOAD_ARGS="-d $DURATION"
if WORKLOAD_MODE=$(param hvprof.workload_mode); then
	WORKLOAD_ARGS="-m $WORKLOAD_MODE $WORKLOAD_ARGS"
fi
if ! HELPER_ARGS=$(param hvprof.helper_args); then
	HELPER_ARGS=$(cat /etc/hvprof-guest.args 2>/dev/null) || HELPER_ARGS=
fi

# --- perf -----------------------------------------------------------------
if echo -1 >/proc/sys/kernel/perf_event_paranoid 2>/dev/null; then
	say "perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid) (written)"
else
	err "perf_event_paranoid not writable (now $(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null))"
fi
echo 0 >/proc/sys/kernel/kptr_restrict 2>/dev/null
say "event_source devices: $(ls /sys/bus/event_source/devices 2>/dev/null | tr '\n' ' ')"
if [ -d /sys/bus/event_source/devices/software ]; then
	say "software pmu: /sys/bus/event_source/devices/software type=$(cat /sys/bus/event_source/devices/software/type)"
else
	err "no /sys/bus/event_source/devices/software"
fi
say "kallsyms $(grep -m1 ' _text$' /proc/kallsyms)"
if [ "$(param hvprof.perfcheck)" = 1 ]; then
	/bin/hvprof-perfcheck || err "hvprof-perfcheck failed"
fi

# --- modules --------------------------------------------------------------
# /lib/modules/hvprof/order lists the modules in load order; "vsock:NAME"
# ones are loaded only when a virtio-vsock PCI device (1af4:1053) exists.
has_vsock_dev() {
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor" 2>/dev/null)" = 0x1af4 ] &&
			[ "$(cat "$d/device" 2>/dev/null)" = 0x1053 ] && return 0
	done
	return 1
}
LOADED=
VSOCK=0
has_vsock_dev && VSOCK=1
while read -r m; do
	case "$m" in
	"" | "#"*) continue ;;
	vsock:*)
		[ "$VSOCK" = 1 ] || continue
		m=${m#vsock:}
		;;
	esac
	if insmod "/lib/modules/hvprof/$m.ko"; then
		LOADED="$LOADED $m"
	else
		err "insmod $m failed"
	fi
done </lib/modules/hvprof/order
say "modules loaded:$LOADED"

# --- virtio-serial port ---------------------------------------------------
# devtmpfs creates /dev/vportNpM; the name comes from the host via a control
# message after the driver probes, so poll for it (TCG is slow).
find_port() {
	for n in /sys/class/virtio-ports/*/name; do
		[ -r "$n" ] || continue
		if [ "$(cat "$n")" = "$PORT_NAME" ]; then
			_d=${n%/name}
			echo "/dev/${_d##*/}"
			return 0
		fi
	done
	return 1
}
i=0
DEV=
while [ $i -lt 200 ]; do
	DEV=$(find_port) && break
	DEV=
	usleep 25000
	i=$((i + 1))
done
if [ -n "$DEV" ]; then
	mkdir -p /dev/virtio-ports
	ln -sf "$DEV" "$PORT"
	say "port $PORT_NAME -> $DEV (sysfs name: $(cat "/sys/class/virtio-ports/${DEV#/dev/}/name"))"
	ls -l /dev/virtio-ports | sed 's/^/hvprof-init: ls: /'
else
	err "virtio port $PORT_NAME not found (ports: $(ls /sys/class/virtio-ports 2>/dev/null | tr '\n' ' '))"
fi

# --- helper, or a hello/echo responder on the port -----------------------
HELPER_PID=none
if [ -x /bin/hvprof-guest ]; then
	say "starting /bin/hvprof-guest $HELPER_ARGS"
	# shellcheck disable=SC2086 # word splitting of the args is intended
	HVPROF_PORT=$PORT /bin/hvprof-guest $HELPER_ARGS &
	HELPER_PID=$!
elif [ -n "$DEV" ]; then
	# One open of the port for both directions (a port allows one opener).
	# Writes block until a host client connects to the socket.
	(
		exec 3<>"$PORT" || exit 1
		echo "HVPROF-GUEST-HELLO kernel=$(uname -r) port=$PORT_NAME" >&3
		while IFS= read -r line <&3; do
			echo "echo: $line" >&3
		done
	) &
	say "no helper: hello/echo responder on $PORT (pid $!)"
fi

# --- workload -------------------------------------------------------------
WORKLOAD_PID=none
if [ "$RUN_WORKLOAD" != 0 ] && [ -x /bin/hvprof-workload ]; then
	# shellcheck disable=SC2086
	/bin/hvprof-workload $WORKLOAD_ARGS &
	WORKLOAD_PID=$!
	echo "$WORKLOAD_PID" >/run/hvprof-workload.pid
	if [ "$(param hvprof.perfcheck)" = 1 ]; then
		PC_MS=$(param hvprof.perfcheck_ms) || PC_MS=3000
		/bin/hvprof-perfcheck --shares "$WORKLOAD_PID" "$PC_MS" /etc/hvprof-workload.syms &
	fi
fi

echo "HVPROF-GUEST-READY uptime_s=$(cut -d' ' -f1 /proc/uptime) workload_pid=$WORKLOAD_PID helper_pid=$HELPER_PID"

if [ "$WORKLOAD_PID" != none ]; then
	wait "$WORKLOAD_PID"
	echo "HVPROF-GUEST-WORKLOAD-EXIT status=$?"
elif [ "$DURATION" != 0 ]; then
	sleep "$DURATION"
else
	while :; do sleep 3600; done
fi

sleep "$GRACE"
[ "$HELPER_PID" != none ] && kill -TERM "$HELPER_PID" 2>/dev/null && sleep 0.5
echo "HVPROF-GUEST-POWEROFF"
poweroff -f
