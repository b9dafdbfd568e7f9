# shellcheck shell=bash
# Shared helpers for xen-image/*.sh (the real-Xen test harness). Sourced, not run.
# Builds on guest-image/lib.sh (package installs, logging, timing), which it sources.
#
# Environment (all optional):
#   HVPROF_XEN_OUT     output and cache dir, default <repo>/target/xen-image
#                      (or $CARGO_TARGET_DIR/xen-image)
#   HVPROF_XEN_MIRROR  Debian mirror for debootstrap, default http://deb.debian.org/debian
#   HVPROF_GUEST_*     see guest-image/lib.sh (kernel cache, quiet)

XI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=guest-image/lib.sh
. "$XI_DIR/../guest-image/lib.sh"
if [ -n "${HVPROF_XEN_OUT:-}" ]; then
	XI_OUT_DEFAULT=$HVPROF_XEN_OUT
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
	XI_OUT_DEFAULT=$CARGO_TARGET_DIR/xen-image
else
	XI_OUT_DEFAULT=$GI_REPO/target/xen-image
fi
XI_MIRROR=${HVPROF_XEN_MIRROR:-http://deb.debian.org/debian}

# Xen and dom0 userland versions: Debian 12 (bookworm) ships Xen 4.17.
XI_SUITE=bookworm
XI_XEN_VER=4.17
XI_XEN_PKG=xen-hypervisor-$XI_XEN_VER-amd64
# The dom0 root: debootstrap --variant=minbase --include=$XI_DOM0_INCLUDE.
XI_DOM0_INCLUDE=xen-utils-$XI_XEN_VER,xenstore-utils,kmod,procps

# Host packages the Xen image needs on top of guest-image's GI_PACKAGES.
XI_PACKAGES=(debootstrap)

# Name of the domU the dom0 init creates.
XI_DOMU_NAME=hvprof-domu

# Console protocol between the dom0 init and run.sh (lines, column 0):
#   XEN-TEST-STATE <what> ...        progress (dom0 up, domU created, domU ready, ...)
#   XEN-TEST-ERROR <what>            a step failed; the command is not run
#   XEN-TEST-OUT-BEGIN
#   XEN-TEST-O <base64>              the command's stdout, base64, 76 chars a line
#   XEN-TEST-E <base64>              the command's stderr, same
#   XEN-TEST-OUT-END rc=N out_bytes=B out_cksum=C
#   XEN-TEST-POWEROFF
# base64 keeps the output intact when Xen or the kernel print between lines; the
# byte count and POSIX cksum detect a line torn by such a print.

# xi_abs PATH: absolute path of PATH (which must exist).
xi_abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }

# xi_stamp FILE...: one line per file (name, size, mtime); changes when any input does.
xi_stamp() { stat -L -c '%n %s %Y' "$@"; }
