#!/usr/bin/env bash
# Build the hvprof test guest: Debian kernel (vmlinux for PVH boot, System.map)
# and a busybox initramfs with the test workload and, if given, hvprof-guest.
# Idempotent; the kernel package and what is unpacked from it are cached.
# See docs/real-guest.md.
set -euo pipefail

GI_PROG=build.sh
# shellcheck source=guest-image/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: guest-image/build.sh [options]
  --out DIR            output directory (default: $GI_OUT_DEFAULT)
  --helper PATH        static hvprof-guest binary, installed as /bin/hvprof-guest
  --helper-args STR    default helper args (/etc/hvprof-guest.args; the kernel
                       cmdline hvprof.helper_args=... overrides them)
  --extra SRC[=DEST]   extra file for the initramfs (repeatable); DEST is an
                       absolute guest path, default /bin/<name of SRC>
  --cache DIR          download/unpack cache (default: $GI_CACHE)
  --kernel-pkg NAME    kernel package (default: what linux-image-amd64 depends on)
  --no-install         do not apt-get install missing packages; fail instead
  --no-dbg             do not fetch the -dbg package for the real System.map
  --debug-vmlinux      also keep the -dbg package's vmlinux with symbols and
                       DWARF (~630 MB, in the cache; DIR/vmlinux.debug links to it)
  -q, --quiet          only print the result lines
  -h, --help           this text
Result (stdout): KEY=PATH lines: VMLINUX, SYSTEM_MAP, INITRAMFS, WORKLOAD,
KERNEL_RELEASE, ...; the same lines are written to DIR/manifest.env.
EOF
}

OUT=$GI_OUT_DEFAULT
HELPER=
HELPER_ARGS=
HELPER_ARGS_SET=0
EXTRAS=()
KPKG=${HVPROF_GUEST_KERNEL_PKG:-}
INSTALL=1
SYSMAP_FROM_DBG=1
DEBUG_VMLINUX=0
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=${2:?--out needs a directory}; shift 2 ;;
	--helper) HELPER=${2:?--helper needs a path}; shift 2 ;;
	--helper-args) HELPER_ARGS=${2?--helper-args needs a value}; HELPER_ARGS_SET=1; shift 2 ;;
	--extra) EXTRAS+=("${2:?--extra needs SRC[=DEST]}"); shift 2 ;;
	--cache) GI_CACHE=${2:?--cache needs a directory}; shift 2 ;;
	--kernel-pkg) KPKG=${2:?--kernel-pkg needs a package name}; shift 2 ;;
	--no-install) INSTALL=0; shift ;;
	--no-dbg) SYSMAP_FROM_DBG=0; shift ;;
	--debug-vmlinux) DEBUG_VMLINUX=1; shift ;;
	-q | --quiet) HVPROF_GUEST_QUIET=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; gi_die "unknown argument: $1" ;;
	esac
done

T0=$(gi_now)

# Inputs are checked before anything slow happens.
if [ -n "$HELPER" ]; then
	[ -f "$HELPER" ] || gi_die "--helper $HELPER: no such file"
	HELPER=$(cd "$(dirname "$HELPER")" && pwd)/$(basename "$HELPER")
fi
for e in "${EXTRAS[@]+"${EXTRAS[@]}"}"; do
	[ -e "${e%%=*}" ] || gi_die "--extra ${e%%=*}: no such file"
	case "$e" in
	*=*) case "${e#*=}" in /*) ;; *) gi_die "--extra $e: DEST must be an absolute path" ;; esac ;;
	esac
done

# --- 1. host packages -------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
	gi_install_packages "${GI_PACKAGES[@]}"
else
	for p in "${GI_PACKAGES[@]}"; do
		gi_pkg_installed "$p" || gi_die "package $p is missing (run guest-image/ci-deps.sh, or drop --no-install)"
	done
fi
for c in qemu-system-x86_64 cpio gzip xz zstd gcc dpkg-deb readelf nm flock; do
	command -v "$c" >/dev/null || gi_die "command $c not found"
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || gi_die "$BUSYBOX missing (package busybox-static)"
if readelf -lW "$BUSYBOX" | grep -q 'program interpreter'; then
	gi_die "$BUSYBOX is dynamically linked: install busybox-static (it replaces busybox)"
fi

mkdir -p "$GI_CACHE/debs" "$GI_CACHE/kernel" || gi_die "cannot create cache dir $GI_CACHE"
# Serialize concurrent builds sharing the cache.
exec 9>"$GI_CACHE/.lock"
flock 9

# --- 2. kernel package --------------------------------------------------------
newest_cached_deb() { # [PKG]
	local pat="linux-image-*.deb"
	[ -n "${1:-}" ] && pat="${1}_*.deb"
	local f found=()
	# shellcheck disable=SC2086 # $pat is a glob
	for f in "$GI_CACHE"/debs/$pat; do
		[ -f "$f" ] && found+=("$f")
	done
	[ ${#found[@]} -gt 0 ] || return 0
	printf '%s\n' "${found[@]}" | sort -V | tail -n 1
}
resolve_kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
KPKG_FROM_USER=0
[ -n "$KPKG" ] && KPKG_FROM_USER=1
if [ -z "$KPKG" ]; then
	KPKG=$(resolve_kernel_pkg)
	if [ -z "$KPKG" ] && [ -z "$(newest_cached_deb)" ]; then
		gi_apt_update_once
		KPKG=$(resolve_kernel_pkg)
	fi
	if [ -z "$KPKG" ]; then
		DEB=$(newest_cached_deb)
		[ -n "$DEB" ] || gi_die "cannot resolve the kernel package: apt-cache depends linux-image-amd64 found nothing"
		KPKG=$(basename "$DEB"); KPKG=${KPKG%%_*}
		gi_log "apt lists have no linux-image-amd64; using cached $KPKG"
	fi
fi
download_deb() { # PKG: into the cache; quiet on failure
	(cd "$GI_CACHE/debs" && apt-get download -o APT::Sandbox::User=root "$1" >&2 2>/dev/null)
}
DEB=$(newest_cached_deb "$KPKG")
if [ -z "$DEB" ]; then
	gi_log "downloading $KPKG"
	t=$(gi_now)
	if ! download_deb "$KPKG"; then
		# Stale lists: the mirror may have moved on to a newer kernel ABI.
		gi_apt_update_once
		if [ "$KPKG_FROM_USER" = 0 ]; then
			KPKG=$(resolve_kernel_pkg)
			[ -n "$KPKG" ] || gi_die "cannot resolve the kernel package after apt-get update"
			DEB=$(newest_cached_deb "$KPKG")
		fi
		if [ -z "$DEB" ]; then
			download_deb "$KPKG" || gi_die "apt-get download $KPKG failed (is a Debian mirror reachable?)"
		fi
	fi
	DEB=$(newest_cached_deb "$KPKG")
	[ -n "$DEB" ] || gi_die "apt-get download $KPKG left no .deb in $GI_CACHE/debs"
	gi_log "got $(basename "$DEB") in $(gi_elapsed "$t") s"
fi

# --- 3. unpack kernel, modules, System.map; extract vmlinux -----------------
# Modules in load order. virtio_console needs virtio, virtio_ring; virtio_pci
# needs virtio_ring, virtio_pci_modern_dev, virtio_pci_legacy_dev, virtio (the
# "depends=" of their .modinfo). vsock:* are loaded only when the guest has a
# virtio-vsock device (vhost-vsock on the host), which this machine cannot test.
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console
	vsock:vsock vsock:vmw_vsock_virtio_transport_common vsock:vmw_vsock_virtio_transport)

# extract_vmlinux BZIMAGE OUT: decompress the payload of a bzImage to an ELF.
# Like the kernel's scripts/extract-vmlinux, but the payload position comes
# from the boot protocol header (setup_sects at 0x1f1, payload_offset 0x248,
# payload_length 0x24c, boot protocol >= 2.08) instead of a magic scan.
extract_vmlinux() {
	local in=$1 out=$2 sects off len start magic dec
	[ "$(od -An -c -j 514 -N 4 "$in" | tr -d ' ')" = HdrS ] || gi_die "$in: not a bzImage (no HdrS)"
	sects=$(od -An -tu1 -j 497 -N 1 "$in" | tr -d ' ')
	[ "$sects" = 0 ] && sects=4
	off=$(od -An -tu4 -j 584 -N 4 "$in" | tr -d ' ')
	len=$(od -An -tu4 -j 588 -N 4 "$in" | tr -d ' ')
	start=$(((sects + 1) * 512 + off))
	magic=$(od -An -tx1 -j "$start" -N 6 "$in" | tr -d ' \n')
	case "$magic" in
	fd377a585a00) dec="xz -dc --single-stream" ;;
	28b52ffd*) dec="zstd -dcq" ;;
	1f8b*) dec="gzip -dc" ;;
	5d0000*) dec="xz -dc --format=lzma" ;;
	*) gi_die "$in: unknown payload compression (magic $magic at $start)" ;;
	esac
	gi_log "vmlinux: payload ${dec%% *} at $start, $len bytes"
	# The payload ends with a 4-byte size trailer that some decompressors
	# reject after writing everything; the ELF check below decides.
	tail -c "+$((start + 1))" "$in" | head -c "$len" | $dec >"$out.tmp" 2>/dev/null || true
	[ "$(od -An -tx1 -N 4 "$out.tmp" | tr -d ' ')" = 7f454c46 ] ||
		gi_die "$in: decompressed payload is not an ELF file"
	mv "$out.tmp" "$out"
}

KDIR=$GI_CACHE/kernel/$(basename "$DEB" .deb)
if [ ! -f "$KDIR/.done" ]; then
	t=$(gi_now)
	gi_log "unpacking $(basename "$DEB")"
	rm -rf "$KDIR.tmp"
	mkdir -p "$KDIR.tmp/x" "$KDIR.tmp/modules"
	pats=('*/boot/*')
	for m in "${MODULES[@]}"; do pats+=("*/${m#vsock:}.ko*"); done
	dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$KDIR.tmp/x" --wildcards "${pats[@]}" ||
		gi_die "unpacking $DEB failed"
	vmlinuz=$(find "$KDIR.tmp/x" -path '*/boot/vmlinuz-*' | head -n 1)
	[ -n "$vmlinuz" ] || gi_die "$DEB has no /boot/vmlinuz-*"
	krel=${vmlinuz##*/vmlinuz-}
	mv "$vmlinuz" "$KDIR.tmp/vmlinuz"
	# Debian's /boot/System.map-* is an 83-byte stub pointing at the -dbg
	# package; keep it only as System.map.pkg. Step 3b gets the real one.
	[ -f "$KDIR.tmp/x/boot/System.map-$krel" ] && mv "$KDIR.tmp/x/boot/System.map-$krel" "$KDIR.tmp/System.map.pkg"
	[ -f "$KDIR.tmp/x/boot/config-$krel" ] && mv "$KDIR.tmp/x/boot/config-$krel" "$KDIR.tmp/config"
	for m in "${MODULES[@]}"; do
		m=${m#vsock:}
		f=$(find "$KDIR.tmp/x" -name "$m.ko*" | head -n 1)
		[ -n "$f" ] || gi_die "$DEB has no module $m"
		# busybox insmod loads plain ELF only: decompress here.
		case "$f" in
		*.ko) cp "$f" "$KDIR.tmp/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$f" >"$KDIR.tmp/modules/$m.ko" ;;
		*.ko.zst) zstd -dcq "$f" >"$KDIR.tmp/modules/$m.ko" ;;
		*.ko.gz) gzip -dc "$f" >"$KDIR.tmp/modules/$m.ko" ;;
		*) gi_die "module $f: unknown compression" ;;
		esac
	done
	extract_vmlinux "$KDIR.tmp/vmlinuz" "$KDIR.tmp/vmlinux"
	if [ -f "$KDIR.tmp/config" ] && ! grep -q '^CONFIG_PVH=y' "$KDIR.tmp/config"; then
		gi_log "warning: CONFIG_PVH is not set: QEMU cannot boot vmlinux directly; use vmlinuz"
	fi
	echo "$krel" >"$KDIR.tmp/release"
	rm -rf "$KDIR.tmp/x"
	touch "$KDIR.tmp/.done"
	rm -rf "$KDIR"
	mv "$KDIR.tmp" "$KDIR"
	gi_log "kernel $krel unpacked in $(gi_elapsed "$t") s"
fi
KREL=$(cat "$KDIR/release")

# --- 3b. the real System.map (and optionally the debug vmlinux) -----------
# The System.map in the image package is a stub ("The real System.map is in
# the linux-image-<version>-dbg package"). The -dbg package is big (~850 MB
# download, here ~5 s) but System.map is near the start of its data tarball,
# so tar stops after reading a few MB. The .deb is deleted afterwards; only
# the extracted files stay in the cache.
is_real_sysmap() { [ -f "$1" ] && [ "$(wc -l <"$1")" -gt 1000 ]; }
is_real_sysmap "$KDIR/System.map" || rm -f "$KDIR/System.map"
if is_real_sysmap "$KDIR/System.map.pkg" && [ ! -f "$KDIR/System.map" ]; then
	cp "$KDIR/System.map.pkg" "$KDIR/System.map"
fi
want_dbg=0
[ -f "$KDIR/System.map" ] || want_dbg=1
[ "$DEBUG_VMLINUX" = 1 ] && [ ! -f "$KDIR/vmlinux.debug" ] && want_dbg=1
if [ "$want_dbg" = 1 ] && [ "$SYSMAP_FROM_DBG" = 1 ]; then
	kver=$(dpkg-deb -f "$DEB" Version)
	kpkg=$(dpkg-deb -f "$DEB" Package)
	dbg=${kpkg%-unsigned}-dbg
	t=$(gi_now)
	gi_log "fetching $dbg=$kver for the real System.map (the image package has a stub)"
	dtmp=$(mktemp -d "$GI_CACHE/debs/.dbg.XXXXXX")
	if (cd "$dtmp" && apt-get download -o APT::Sandbox::User=root "$dbg=$kver" >&2 2>/dev/null) ||
		{ gi_apt_update_once && (cd "$dtmp" && apt-get download -o APT::Sandbox::User=root "$dbg=$kver" >&2); }; then
		ddeb=$(ls -1 "$dtmp"/*.deb)
		members=("./usr/lib/debug/boot/System.map-$KREL")
		[ "$DEBUG_VMLINUX" = 1 ] && members+=("./usr/lib/debug/boot/vmlinux-$KREL")
		# --occurrence: tar stops once every member was found; dpkg-deb then
		# dies of SIGPIPE, which is expected.
		(dpkg-deb --fsys-tarfile "$ddeb" 2>/dev/null || true) |
			tar -x -C "$dtmp" --occurrence=1 "${members[@]}" ||
			gi_die "extracting ${members[*]} from $ddeb failed"
		is_real_sysmap "$dtmp/usr/lib/debug/boot/System.map-$KREL" ||
			gi_die "$ddeb: System.map-$KREL missing or a stub"
		mv "$dtmp/usr/lib/debug/boot/System.map-$KREL" "$KDIR/System.map"
		if [ "$DEBUG_VMLINUX" = 1 ]; then
			mv "$dtmp/usr/lib/debug/boot/vmlinux-$KREL" "$KDIR/vmlinux.debug"
		fi
		gi_log "System.map from $(basename "$ddeb") in $(gi_elapsed "$t") s"
	else
		gi_log "warning: apt-get download $dbg=$kver failed: no System.map (passive mode needs one)"
	fi
	rm -rf "$dtmp"
fi
# Sanity: without KASLR (PVH boot) the running kernel's _text is the link-time
# one, which both System.map and the vmlinux ELF header must agree on.
if [ -f "$KDIR/System.map" ]; then
	map_text=$(awk '$3 == "_text" { print $1; exit }' "$KDIR/System.map")
	elf_text=$(readelf -lW "$KDIR/vmlinux" | awk '$1 == "LOAD" { print $3; exit }')
	if [ -z "$map_text" ] || [ -z "$elf_text" ] || [ "$((16#$map_text))" != "$((elf_text))" ]; then
		gi_die "System.map _text=${map_text:-?} differs from vmlinux's first LOAD vaddr ${elf_text:-?}"
	fi
fi

# --- 4. workload ----------------------------------------------------------------
mkdir -p "$OUT" || gi_die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CFLAGS=(-O1 -static -g -fno-omit-frame-pointer -fno-ipa-icf -Wall -Wextra)
gcc "${CFLAGS[@]}" -o "$WORK/hvprof-workload" "$GI_DIR/workload.c" -lpthread ||
	gi_die "compiling workload.c failed"
gcc -O1 -static -g -Wall -Wextra -o "$WORK/hvprof-perfcheck" "$GI_DIR/perfcheck.c" ||
	gi_die "compiling perfcheck.c failed"

# --- 5. initramfs -----------------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,dev,etc,proc,sys,tmp,run,root,usr,lib/modules/hvprof}
mkdir -p "$R/sys/kernel/debug" "$R/sys/kernel/tracing"
ln -s bin "$R/sbin"
ln -s ../bin "$R/usr/bin"
ln -s ../bin "$R/usr/sbin"
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do
	[ "$a" = busybox ] || ln -s busybox "$R/bin/$a"
done
install -m 0755 "$GI_DIR/init.sh" "$R/init"
install -m 0755 "$WORK/hvprof-workload" "$R/bin/hvprof-workload"
install -m 0755 "$WORK/hvprof-perfcheck" "$R/bin/hvprof-perfcheck"
# Address ranges of the hot functions, for hvprof-perfcheck --shares.
nm -S --defined-only "$WORK/hvprof-workload" | grep -E ' hot_(alpha|beta|gamma)$' >"$R/etc/hvprof-workload.syms"
[ "$(wc -l <"$R/etc/hvprof-workload.syms")" = 3 ] || gi_die "hot_* symbols missing from the workload"
for m in "${MODULES[@]}"; do
	cp "$KDIR/modules/${m#vsock:}.ko" "$R/lib/modules/hvprof/"
	echo "$m" >>"$R/lib/modules/hvprof/order"
done
echo "$KREL" >"$R/etc/kernel-release"
if [ -n "$HELPER" ]; then
	if readelf -lW "$HELPER" 2>/dev/null | grep -q 'program interpreter'; then
		gi_die "--helper $HELPER is dynamically linked; the guest has no shared libraries (build it static, e.g. --target x86_64-unknown-linux-musl)"
	fi
	install -m 0755 "$HELPER" "$R/bin/hvprof-guest"
fi
[ "$HELPER_ARGS_SET" = 1 ] && printf '%s\n' "$HELPER_ARGS" >"$R/etc/hvprof-guest.args"
for e in "${EXTRAS[@]+"${EXTRAS[@]}"}"; do
	src=${e%%=*}
	dest=/bin/$(basename "$src")
	case "$e" in *=*) dest=${e#*=} ;; esac
	mkdir -p "$R$(dirname "$dest")"
	cp -a "$src" "$R$dest"
done
# The kernel opens /dev/console for init before devtmpfs is mounted.
if [ "$(id -u)" = 0 ]; then
	mknod -m 600 "$R/dev/console" c 5 1
	mknod -m 666 "$R/dev/null" c 1 3
fi
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) |
	gzip -6 -n >"$WORK/initramfs.cpio.gz" || gi_die "building the initramfs failed"

# --- 6. publish ---------------------------------------------------------------------
# Each file is replaced atomically; unchanged kernel files are not rewritten.
publish() { # SRC NAME
	if ! cmp -s "$1" "$OUT/$2"; then
		cp "$1" "$OUT/.$2.tmp"
		mv -f "$OUT/.$2.tmp" "$OUT/$2"
	fi
}
publish "$KDIR/vmlinux" vmlinux
publish "$KDIR/vmlinuz" vmlinuz
[ -f "$KDIR/config" ] && publish "$KDIR/config" config
SYSTEM_MAP=
if [ -f "$KDIR/System.map" ]; then
	publish "$KDIR/System.map" System.map
	SYSTEM_MAP=$OUT/System.map
else
	rm -f "$OUT/System.map"
fi
# The debug vmlinux (~630 MB) is linked, not copied.
VMLINUX_DEBUG=
if [ "$DEBUG_VMLINUX" = 1 ] && [ -f "$KDIR/vmlinux.debug" ]; then
	ln -sfn "$KDIR/vmlinux.debug" "$OUT/vmlinux.debug"
	VMLINUX_DEBUG=$OUT/vmlinux.debug
fi
publish "$WORK/hvprof-workload" hvprof-workload
publish "$WORK/initramfs.cpio.gz" initramfs.cpio.gz

# Cache hygiene: keep the kernel just used and at most one other (~110 MB each).
prune() { # DIR-GLOB-PREFIX KEEP
	local keep=$2 f others=()
	for f in $1; do
		[ -e "$f" ] && [ "$f" != "$keep" ] && others+=("$f")
	done
	[ ${#others[@]} -gt 1 ] || return 0
	printf '%s\n' "${others[@]}" | sort -V | head -n -1 | while IFS= read -r f; do
		gi_log "pruning old cache entry $f"
		rm -rf "$f"
	done
}
prune "$GI_CACHE/kernel/linux-image-*" "$KDIR"
prune "$GI_CACHE/debs/linux-image-*.deb" "$DEB"

{
	echo "KERNEL_RELEASE=$KREL"
	echo "KERNEL_DEB=$DEB"
	echo "VMLINUX=$OUT/vmlinux"
	echo "VMLINUZ=$OUT/vmlinuz"
	echo "SYSTEM_MAP=$SYSTEM_MAP"
	echo "VMLINUX_DEBUG=$VMLINUX_DEBUG"
	echo "INITRAMFS=$OUT/initramfs.cpio.gz"
	echo "WORKLOAD=$OUT/hvprof-workload"
	echo "HELPER=$HELPER"
} >"$OUT/manifest.env.tmp"
mv -f "$OUT/manifest.env.tmp" "$OUT/manifest.env"
cat "$OUT/manifest.env"
gi_log "done in $(gi_elapsed "$T0") s; initramfs $(stat -c %s "$OUT/initramfs.cpio.gz") bytes"
