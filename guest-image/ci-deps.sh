#!/usr/bin/env bash
# Install the Debian packages the hvprof test guest and the tests need (for
# .ci/run and new machines). Idempotent: installs only what is missing; runs apt-get
# update only when an install fails without it. Needs root.
#   guest-image/ci-deps.sh            guest packages + linux-perf
#   guest-image/ci-deps.sh --no-perf  guest packages only
# The kernel itself is fetched (and cached) by guest-image/build.sh.
set -euo pipefail

GI_PROG=ci-deps.sh
# shellcheck source=guest-image/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# tmux: tests/e2e_top.rs drives hvprof top in a pane; golang-go: tests/pprof_go.rs reads
# --format pprof with `go tool pprof`; debootstrap: xen-image/build.sh makes the Debian dom0
# root of tests/e2e_xen.rs
# libc6-dbg: libc's separate debug file (stacks name start_thread, clone3; symbols/tests/debugfile.rs)
pkgs=("${GI_PACKAGES[@]}" tmux golang-go debootstrap libc6-dbg)
case "${1:-}" in
--no-perf) ;;
"") pkgs+=(linux-perf) ;; # perf: check-shares.sh, the workload self-check
-h | --help) sed -n '2,8p' "$0"; exit 0 ;;
*) gi_die "unknown argument: $1" ;;
esac

t=$(gi_now)
gi_install_packages "${pkgs[@]}"
gi_log "packages present (${pkgs[*]}) after $(gi_elapsed "$t") s"
