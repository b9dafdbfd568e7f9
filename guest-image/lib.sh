# shellcheck shell=bash
# Shared helpers for guest-image/*.sh. Sourced, not run.
#
# Environment (all optional):
#   HVPROF_GUEST_CACHE   package/kernel cache, default /var/cache/hvprof-guest
#   HVPROF_GUEST_OUT     image output dir, default <repo>/target/guest-image
#                        (or $CARGO_TARGET_DIR/guest-image)
#   HVPROF_GUEST_QUIET=1 fewer progress messages

GI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GI_REPO=$(cd "$GI_DIR/.." && pwd)
GI_CACHE=${HVPROF_GUEST_CACHE:-/var/cache/hvprof-guest}
if [ -n "${HVPROF_GUEST_OUT:-}" ]; then
	GI_OUT_DEFAULT=$HVPROF_GUEST_OUT
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
	GI_OUT_DEFAULT=$CARGO_TARGET_DIR/guest-image
else
	GI_OUT_DEFAULT=$GI_REPO/target/guest-image
fi

# Debian packages the guest image needs on the host:
#   qemu-system-x86  QEMU (seabios, qemu-system-data with pvh.bin come as Depends)
#   busybox-static   the guest's whole userland
#   cpio gzip        initramfs (newc, gzip)
#   xz-utils zstd    decompressing the kernel payload / modules
#   gcc libc6-dev    building the static workload (libc.a is in libc6-dev)
GI_PACKAGES=(qemu-system-x86 busybox-static cpio gzip xz-utils zstd gcc libc6-dev)

export DEBIAN_FRONTEND=noninteractive

gi_log() {
	[ "${HVPROF_GUEST_QUIET:-0}" = 1 ] || printf '%s: %s\n' "${GI_PROG:-guest-image}" "$*" >&2
}

gi_die() {
	printf '%s: error: %s\n' "${GI_PROG:-guest-image}" "$*" >&2
	exit 1
}

gi_now() { date +%s.%N; }

# gi_elapsed START -> seconds since START with 2 decimals
gi_elapsed() { awk -v s="$1" -v e="$(gi_now)" 'BEGIN { printf "%.2f", e - s }'; }

GI_APT_UPDATED=0
gi_apt_update_once() {
	[ "$GI_APT_UPDATED" = 1 ] && return 0
	gi_log "apt-get update"
	apt-get update -qq >&2 || gi_die "apt-get update failed (no Debian mirror reachable?)"
	GI_APT_UPDATED=1
}

# gi_pkg_installed PKG: true when dpkg has PKG fully installed.
gi_pkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# gi_install_packages [PKG...]: install what is missing; apt-get update only
# when the first install attempt fails (stale or missing lists).
gi_install_packages() {
	local want=("$@") missing=() p
	[ ${#want[@]} -gt 0 ] || want=("${GI_PACKAGES[@]}")
	for p in "${want[@]}"; do
		gi_pkg_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" = 0 ] || gi_die "missing packages (${missing[*]}) and not root: run as root or install them: apt-get install ${missing[*]}"
	gi_log "installing: ${missing[*]}"
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
		gi_apt_update_once
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
			gi_die "apt-get install ${missing[*]} failed"
	fi
}
