#!/usr/bin/env bash
# Build the real-Xen test image: Debian's Xen hypervisor, a debootstrap'ed Debian
# dom0 root with xen-utils and hvprof (an initramfs), and the default PV domU
# (guest-image's Debian kernel + busybox initramfs with the workload).
# Idempotent; everything expensive is cached. See docs/xen.md.
set -euo pipefail

GI_PROG=xen-image/build.sh
# shellcheck source=xen-image/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF2
usage: xen-image/build.sh [options]
  --out DIR        output and cache directory (default: $XI_OUT_DEFAULT)
  --hvprof PATH    hvprof binary for dom0 (default: the newer of
                   target/release/hvprof and target/debug/hvprof); the host
                   is Debian 12 like dom0, so a dynamically linked one runs
  --no-install     do not apt-get install missing host packages; fail instead
  -q, --quiet      only print the result lines
  -h, --help       this text
Result (stdout): KEY=PATH lines (XEN, DOM0_KERNEL, DOM0_ROOT_CPIO,
DOM0_OVERLAY_CPIO, DOMU_KERNEL, DOMU_INITRD, DOMU_SYSTEM_MAP, ...), also
written to DIR/manifest.env.
EOF2
}

OUT=$XI_OUT_DEFAULT
HVPROF=
INSTALL=1
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=${2:?--out needs a directory}; shift 2 ;;
	--hvprof) HVPROF=${2:?--hvprof needs a path}; shift 2 ;;
	--no-install) INSTALL=0; shift ;;
	-q | --quiet) HVPROF_GUEST_QUIET=1; export HVPROF_GUEST_QUIET; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; gi_die "unknown argument: $1" ;;
	esac
done

T0=$(gi_now)
if [ -z "$HVPROF" ]; then
	for c in "$GI_REPO/target/release/hvprof" "$GI_REPO/target/debug/hvprof"; do
		[ -x "$c" ] || continue
		if [ -z "$HVPROF" ] || [ "$c" -nt "$HVPROF" ]; then HVPROF=$c; fi
	done
	[ -n "$HVPROF" ] || gi_die "no hvprof binary: cargo build -p hvprof, or pass --hvprof PATH"
fi
[ -x "$HVPROF" ] || gi_die "--hvprof $HVPROF: not an executable file"
HVPROF=$(xi_abs "$HVPROF")

# --- 1. host packages -------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
	gi_install_packages "${XI_PACKAGES[@]}"
fi
for c in debootstrap dpkg-deb cpio gzip chroot flock nm; do
	command -v "$c" >/dev/null || gi_die "command $c not found (run guest-image/ci-deps.sh)"
done
[ "$(id -u)" = 0 ] || gi_die "debootstrap and the dom0 root need root"

CACHE=$OUT/cache
mkdir -p "$CACHE/debs" "$OUT/logs" || gi_die "cannot create $CACHE"
# Serialize concurrent builds sharing the output directory.
exec 8>"$OUT/.lock"
flock 8

# --- 2. the domU (and dom0) kernel: guest-image's build ---------------------
# Its own output dir, so that other tests' images (with a helper) are untouched.
GUEST_OUT=$OUT/guest
bi_args=(--out "$GUEST_OUT" --quiet)
[ "$INSTALL" = 1 ] || bi_args+=(--no-install)
"$GI_DIR/build.sh" "${bi_args[@]}" >/dev/null || gi_die "guest-image/build.sh failed"
# shellcheck disable=SC1091 # generated file
. "$GUEST_OUT/manifest.env"
[ -n "${SYSTEM_MAP:-}" ] || gi_die "guest-image/build.sh gave no System.map (needed for --guest-kallsyms)"
KREL=$KERNEL_RELEASE

# --- 3. the hypervisor --------------------------------------------------------
XEN=$OUT/xen
if [ ! -f "$XEN" ]; then
	t=$(gi_now)
	deb=$(ls -1 "$CACHE"/debs/"$XI_XEN_PKG"_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -z "$deb" ]; then
		gi_log "downloading $XI_XEN_PKG"
		(cd "$CACHE/debs" && apt-get download -o APT::Sandbox::User=root "$XI_XEN_PKG" >&2 2>/dev/null) ||
			{ gi_apt_update_once && (cd "$CACHE/debs" && apt-get download -o APT::Sandbox::User=root "$XI_XEN_PKG" >&2); } ||
			gi_die "apt-get download $XI_XEN_PKG failed"
		deb=$(ls -1 "$CACHE"/debs/"$XI_XEN_PKG"_*.deb | sort -V | tail -n 1)
	fi
	x=$(mktemp -d "$CACHE/.xen.XXXXXX")
	dpkg-deb -x "$deb" "$x" || gi_die "unpacking $deb failed"
	gz=$(find "$x/boot" -name "xen-$XI_XEN_VER-amd64.gz" | head -n 1)
	[ -n "$gz" ] || gz=$(find "$x/boot" -name 'xen-*.gz' | head -n 1)
	[ -n "$gz" ] || gi_die "$deb has no boot/xen-*.gz"
	gzip -dc "$gz" >"$XEN.tmp"
	# QEMU's -kernel takes it as a multiboot image: a 32-bit ELF with a multiboot header.
	[ "$(od -An -tx1 -N 5 "$XEN.tmp" | tr -d ' ')" = 7f454c4601 ] || gi_die "$gz: not a 32-bit ELF"
	mv "$XEN.tmp" "$XEN"
	rm -rf "$x"
	gi_log "xen from $(basename "$deb") in $(gi_elapsed "$t") s"
fi

# --- 4. dom0 root: debootstrap (cached), trimmed ------------------------------
ROOT=$CACHE/dom0-root
if [ ! -f "$ROOT/.done" ]; then
	t=$(gi_now)
	gi_log "debootstrap $XI_SUITE (minbase + $XI_DOM0_INCLUDE) from $XI_MIRROR (~1 min)"
	rm -rf "$ROOT" "$ROOT.tmp"
	debootstrap --variant=minbase --include="$XI_DOM0_INCLUDE" "$XI_SUITE" "$ROOT.tmp" "$XI_MIRROR" \
		>"$OUT/logs/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$OUT/logs/debootstrap.log" >&2; gi_die "debootstrap failed (log: $OUT/logs/debootstrap.log)"; }
	# Trim what a test dom0 never reads: ~300 MB -> ~190 MB.
	rm -rf "$ROOT.tmp"/usr/share/{doc,man,info,locale,lintian,linda} \
		"$ROOT.tmp"/var/cache/apt/* "$ROOT.tmp"/var/lib/apt/lists/* \
		"$ROOT.tmp"/var/cache/debconf/*-old "$ROOT.tmp"/usr/lib/udev/hwdb.bin \
		"$ROOT.tmp"/usr/lib/udev/hwdb.d
	touch "$ROOT.tmp/.done"
	mv "$ROOT.tmp" "$ROOT"
	gi_log "dom0 root in $(gi_elapsed "$t") s, $(du -sm "$ROOT" | cut -f1) MB"
fi
# The root as a gzip -1 newc cpio, rebuilt only when the root is.
ROOT_CPIO=$OUT/dom0-root.cpio.gz
if [ ! -f "$ROOT_CPIO" ] || [ "$ROOT/.done" -nt "$ROOT_CPIO" ]; then
	t=$(gi_now)
	(cd "$ROOT" && find . -mindepth 1 ! -name .done | LC_ALL=C sort | cpio -o -H newc --quiet) |
		gzip -1 -n >"$ROOT_CPIO.tmp" || gi_die "building $ROOT_CPIO failed"
	mv "$ROOT_CPIO.tmp" "$ROOT_CPIO"
	gi_log "dom0 root cpio in $(gi_elapsed "$t") s, $(stat -c %s "$ROOT_CPIO") bytes"
fi

# --- 5. dom0 overlay: Xen modules, init, hvprof, the default domU ------------
# A second, small cpio; the kernel unpacks both (concatenated) into one rootfs.
MODS=$CACHE/modules-$KREL
if [ ! -f "$MODS/.done" ]; then
	t=$(gi_now)
	rm -rf "$MODS" "$MODS.tmp"
	mkdir -p "$MODS.tmp"
	dpkg-deb --fsys-tarfile "$KERNEL_DEB" | tar -x -C "$MODS.tmp" --wildcards \
		"./lib/modules/$KREL/kernel/drivers/xen/*" "./lib/modules/$KREL/modules.order" \
		"./lib/modules/$KREL/modules.builtin*" || gi_die "extracting Xen modules from $KERNEL_DEB failed"
	# depmod of the dom0 root (kmod), run in it: the host needs no kmod.
	dm=$ROOT/tmp/.depmod.$$
	rm -rf "$dm"
	mkdir -p "$dm"
	cp -a "$MODS.tmp/lib" "$dm/"
	chroot "$ROOT" /usr/sbin/depmod -b "/tmp/.depmod.$$" "$KREL" || gi_die "depmod (in the dom0 root) failed"
	rm -rf "$MODS.tmp/lib"
	mv "$dm/lib" "$MODS.tmp/lib"
	rm -rf "$dm"
	touch "$MODS.tmp/.done"
	mv "$MODS.tmp" "$MODS"
	gi_log "$(find "$MODS" -name '*.ko*' | wc -l) Xen modules of $KREL in $(gi_elapsed "$t") s"
fi
# The default domU initramfs: guest-image's, with xen-image/domu-init.sh appended as /init
# (the kernel unpacks concatenated cpios in order; a later file replaces an earlier one).
DOMU_INITRD=$OUT/domu-initrd
stamp=$(xi_stamp "$INITRAMFS" "$XI_DIR/domu-init.sh")
if [ ! -f "$DOMU_INITRD" ] || [ "$stamp" != "$(cat "$OUT/.domu-initrd.stamp" 2>/dev/null)" ]; then
	D=$(mktemp -d "$CACHE/.domu.XXXXXX")
	install -m 0755 "$XI_DIR/domu-init.sh" "$D/init"
	{
		cat "$INITRAMFS"
		(cd "$D" && echo init | cpio -o -H newc --owner=0:0 --quiet | gzip -6 -n)
	} >"$DOMU_INITRD.tmp" || gi_die "building $DOMU_INITRD failed"
	rm -rf "$D"
	mv "$DOMU_INITRD.tmp" "$DOMU_INITRD"
	echo "$stamp" >"$OUT/.domu-initrd.stamp"
fi
DOM0_KERNEL=$OUT/vmlinuz
cmp -s "$VMLINUZ" "$DOM0_KERNEL" || cp "$VMLINUZ" "$DOM0_KERNEL"

OVERLAY_CPIO=$OUT/dom0-overlay.cpio.gz
OVERLAY_INPUTS=("$MODS/.done" "$XI_DIR/dom0-init.sh" "$HVPROF" "$VMLINUZ" "$DOMU_INITRD" "$SYSTEM_MAP" "$WORKLOAD")
stamp=$(xi_stamp "${OVERLAY_INPUTS[@]}")
if [ ! -f "$OVERLAY_CPIO" ] || [ "$stamp" != "$(cat "$OUT/.overlay.stamp" 2>/dev/null)" ]; then
	t=$(gi_now)
	O=$(mktemp -d "$CACHE/.overlay.XXXXXX")
	# usr/lib, not lib: the root's /lib is a symlink to usr/lib (merged /usr), and
	# the kernel's cpio unpacker replaces a symlink by a directory of the same name.
	mkdir -p "$O/usr/lib" "$O/usr/local/bin" "$O/xen-test"
	cp -a "$MODS/lib/modules" "$O/usr/lib/"
	install -m 0755 "$XI_DIR/dom0-init.sh" "$O/init"
	install -m 0755 "$HVPROF" "$O/usr/local/bin/hvprof"
	cp "$VMLINUZ" "$O/xen-test/domu-vmlinuz"
	cp "$DOMU_INITRD" "$O/xen-test/domu-initrd"
	cp "$SYSTEM_MAP" "$O/xen-test/domu-System.map"
	install -m 0755 "$WORKLOAD" "$O/xen-test/hvprof-workload"
	# "ADDR SIZE T NAME" of the hot functions (dom0 has no binutils), as guest-image's
	# /etc/hvprof-workload.syms.
	nm -S --defined-only "$WORKLOAD" | grep -E ' hot_(alpha|beta|gamma)$' >"$O/xen-test/hvprof-workload.syms"
	[ "$(wc -l <"$O/xen-test/hvprof-workload.syms")" = 3 ] || gi_die "hot_* symbols missing from $WORKLOAD"
	echo "$KREL" >"$O/xen-test/domu-kernel-release"
	(cd "$O" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) |
		gzip -1 -n >"$OVERLAY_CPIO.tmp" || gi_die "building $OVERLAY_CPIO failed"
	rm -rf "$O"
	mv "$OVERLAY_CPIO.tmp" "$OVERLAY_CPIO"
	echo "$stamp" >"$OUT/.overlay.stamp"
	gi_log "dom0 overlay cpio in $(gi_elapsed "$t") s, $(stat -c %s "$OVERLAY_CPIO") bytes"
fi

{
	echo "XEN=$XEN"
	echo "DOM0_KERNEL=$DOM0_KERNEL"
	echo "DOM0_ROOT_CPIO=$ROOT_CPIO"
	echo "DOM0_OVERLAY_CPIO=$OVERLAY_CPIO"
	echo "KERNEL_RELEASE=$KREL"
	echo "HVPROF=$HVPROF"
	echo "DOMU_KERNEL=$VMLINUZ"
	echo "DOMU_INITRD=$DOMU_INITRD"
	echo "DOMU_SYSTEM_MAP=$SYSTEM_MAP"
	echo "DOMU_WORKLOAD=$WORKLOAD"
} >"$OUT/manifest.env.tmp"
mv -f "$OUT/manifest.env.tmp" "$OUT/manifest.env"
cat "$OUT/manifest.env"
gi_log "done in $(gi_elapsed "$T0") s"
