#!/bin/bash
# /init of the real-Xen test dom0 (Debian bookworm root, PV dom0 under Xen 4.17).
# Installed by xen-image/build.sh; the run's settings come from xen-image/run.sh in
# /xen-test/run/ (a small cpio appended to the initramfs):
#   /xen-test/run/env     shell assignments XT_* (domU kernel, initrd, vCPUs, cmdline, ...)
#   /xen-test/run/cmd.sh  the command to run once the domU is up
# Start order from docs/xen.md (measured): proc, sysfs, devtmpfs, devpts, a tmpfs on /run
# and only then /run/xen and /run/xenstored, the Xen modules, xenfs, xenstored,
# xen-init-dom0, xenconsoled. Console protocol: see xen-image/lib.sh.
PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root TERM=dumb LANG=C.UTF-8

state() { echo "XEN-TEST-STATE $* uptime_s=$(cut -d' ' -f1 /proc/uptime)"; }
poweroff_now() {
	echo "XEN-TEST-POWEROFF"
	sync
	echo 1 >/proc/sys/kernel/sysrq
	echo o >/proc/sysrq-trigger
	sleep 30
}
fail() {
	echo "XEN-TEST-ERROR $*"
	for f in /var/log/xen/xl-*.log /var/log/xen/console/guest-*.log; do
		[ -f "$f" ] || continue
		echo "--- $f (last lines) ---"
		tail -n 40 "$f"
	done
	poweroff_now
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -e /proc/self/fd/1 ] || exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
# /run first, then what lives in it (created before the mount they would be hidden).
mount -t tmpfs tmpfs /run
mkdir -p /run/xen /run/xenstored /run/lock /run/xen-test /var/log/xen/console /var/lib/xen
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# Kernel messages would land between the output lines on the shared console.
echo 1 >/proc/sys/kernel/printk
hostname dom0
state "dom0-init kernel=$(uname -r)"

# shellcheck disable=SC1091 # written by xen-image/run.sh
[ -f /xen-test/run/env ] || fail "no /xen-test/run/env (initramfs built without run.sh's cpio)"
. /xen-test/run/env

for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs; do
	modprobe "$m" || fail "modprobe $m"
done
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
xenstored || fail "xenstored"
xen-init-dom0 >/run/xen-test/xen-init-dom0.log 2>&1 || fail "xen-init-dom0: $(cat /run/xen-test/xen-init-dom0.log)"
# xl create needs a running xenconsoled ("console tty: timed out" otherwise); the
# domU's console goes to /var/log/xen/console/guest-NAME.log.
xenconsoled --log=guest --log-dir=/var/log/xen/console || fail "xenconsoled"
state "dom0-ready caps=$(cat /proc/xen/capabilities 2>/dev/null)"

# --- the domU -----------------------------------------------------------------
CFG=/run/xen-test/domu.cfg
{
	echo "name = \"$XT_DOMU_NAME\""
	echo 'type = "pv"'
	echo "kernel = \"$XT_DOMU_KERNEL\""
	[ -n "$XT_DOMU_INITRD" ] && echo "ramdisk = \"$XT_DOMU_INITRD\""
	echo "memory = $XT_DOMU_MEMORY"
	echo "vcpus = $XT_DOMU_VCPUS"
	# Single quotes: the cmdline may hold double quotes (run.sh rejects single ones).
	echo "extra = 'console=hvc0 $XT_DOMU_CMDLINE'"
	echo 'on_crash = "preserve"'
} >"$CFG"
xl create "$CFG" >/var/log/xen/xl-create.log 2>&1 || fail "xl create: $(tail -n 5 /var/log/xen/xl-create.log)"
DOMU_ID=$(xl domid "$XT_DOMU_NAME") || fail "xl domid $XT_DOMU_NAME"
state "domu-created name=$XT_DOMU_NAME id=$DOMU_ID"

# Running: (when a pattern is given) the guest's init said so on its console, and xl
# lists the requested vCPUs. The console log is polled each second (cheap); xl, which
# costs dom0 CPU time the booting domU would get under TCG, only every 10 s.
LOG=/var/log/xen/console/guest-$XT_DOMU_NAME.log
start=$(cut -d. -f1 /proc/uptime)
end=$((start + XT_READY_TIMEOUT))
n=0
while :; do
	if [ -z "$XT_DOMU_READY" ] || grep -q -- "$XT_DOMU_READY" "$LOG" 2>/dev/null; then
		nv=$(xl vcpu-list "$XT_DOMU_NAME" 2>/dev/null | awk -v n="$XT_DOMU_NAME" '$1 == n' | wc -l)
		[ "$nv" = "$XT_DOMU_VCPUS" ] && break
	elif [ $((n % 10)) = 9 ]; then
		xl list "$XT_DOMU_NAME" >/dev/null 2>&1 || fail "domU $XT_DOMU_NAME is gone"
	fi
	[ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ] ||
		fail "domU not ready within ${XT_READY_TIMEOUT}s (pattern '$XT_DOMU_READY', vcpus listed: ${nv:-?})"
	n=$((n + 1))
	sleep 1
done
state "domu-ready name=$XT_DOMU_NAME id=$DOMU_ID vcpus=$XT_DOMU_VCPUS"

# --- the command --------------------------------------------------------------
export DOMU_NAME=$XT_DOMU_NAME DOMU_ID DOMU_VCPUS=$XT_DOMU_VCPUS DOMU_KALLSYMS=$XT_DOMU_KALLSYMS
export DOMU_WORKLOAD=/xen-test/hvprof-workload DOMU_WORKLOAD_SYMS=/xen-test/hvprof-workload.syms
export DOMU_CONSOLE_LOG=$LOG
cd /root 2>/dev/null || cd /
rc=0
bash /xen-test/run/cmd.sh </dev/null >/run/xen-test/out 2>/run/xen-test/err || rc=$?
echo "XEN-TEST-OUT-BEGIN"
base64 -w 76 /run/xen-test/out | sed 's/^/XEN-TEST-O /'
base64 -w 76 /run/xen-test/err | sed 's/^/XEN-TEST-E /'
echo "XEN-TEST-OUT-END rc=$rc out_bytes=$(stat -c %s /run/xen-test/out) out_cksum=$(cksum </run/xen-test/out | cut -d' ' -f1)"
poweroff_now
