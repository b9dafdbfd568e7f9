#!/bin/sh
# /init of the Xen PV test domU (busybox sh). xen-image/build.sh appends it, as a small
# cpio, to guest-image's initramfs (busybox + hvprof-workload), replacing guest-image's
# init: that one loads virtio modules and polls ~200 times for a virtio-serial port a
# Xen PV domU does not have, and each poll forks; under TCG, where a PV guest's fork
# costs page-table hypercalls, that took ~130 s. This one starts the workload at once.
#
# Kernel command line (as guest-image's init; a value with spaces in double quotes):
#   hvprof.workload_args=ARGS  args for /bin/hvprof-workload (default: -d DURATION)
#   hvprof.duration=S          workload run time in seconds (default 0 = forever)
#   hvprof.workload=0          do not start the workload
# Console (hvc0, logged by dom0's xenconsoled): the lines of guest-image's init:
#   HVPROF-GUEST-READY uptime_s=S workload_pid=P
#   HVPROF-GUEST-WORKLOAD-EXIT status=N
#   HVPROF-GUEST-ERROR ...
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev || echo "HVPROF-GUEST-ERROR mount devtmpfs failed"
[ -e /proc/self/fd/1 ] || exec </dev/console >/dev/console 2>&1
mkdir -p /run /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo -1 >/proc/sys/kernel/perf_event_paranoid 2>/dev/null
echo 0 >/proc/sys/kernel/kptr_restrict 2>/dev/null
echo "hvprof-init: kernel $(uname -r) uptime_s=$(cut -d' ' -f1 /proc/uptime) (Xen PV domU)"

CMDLINE=" $(cat /proc/cmdline) "
# param KEY: the value of KEY=VALUE or KEY="VALUE WITH SPACES"; fails if absent.
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
DURATION=$(param hvprof.duration) || DURATION=0
RUN_WORKLOAD=$(param hvprof.workload) || RUN_WORKLOAD=1
WORKLOAD_ARGS=$(param hvprof.workload_args) || WORKLOAD_ARGS="-d $DURATION"

WORKLOAD_PID=none
if [ "$RUN_WORKLOAD" != 0 ] && [ -x /bin/hvprof-workload ]; then
	# shellcheck disable=SC2086 # word splitting of the args is intended
	/bin/hvprof-workload $WORKLOAD_ARGS &
	WORKLOAD_PID=$!
	echo "$WORKLOAD_PID" >/run/hvprof-workload.pid
elif [ "$RUN_WORKLOAD" != 0 ]; then
	echo "HVPROF-GUEST-ERROR /bin/hvprof-workload missing"
fi
echo "HVPROF-GUEST-READY uptime_s=$(cut -d' ' -f1 /proc/uptime) workload_pid=$WORKLOAD_PID"
if [ "$WORKLOAD_PID" != none ]; then
	wait "$WORKLOAD_PID"
	echo "HVPROF-GUEST-WORKLOAD-EXIT status=$?"
else
	while :; do sleep 3600; done
fi
echo "HVPROF-GUEST-POWEROFF"
poweroff -f
