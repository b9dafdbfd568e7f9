//! Thin, checked wrappers over the kernel interfaces hvprof uses: the perf ABI constants
//! ([`abi`]) and the `perf_event_open(2)` system call with its ioctls ([`perf`]).
//!
//! `unsafe` in hvprof lives here and in [`crate::ring`]; every block states why it is sound.

pub mod abi;
pub mod perf;

/// The system page size in bytes, from `sysconf(_SC_PAGESIZE)`.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

/// The number of configured CPUs (`sysconf(_SC_NPROCESSORS_CONF)`), at least 1.
pub fn cpu_count() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    if v > 0 {
        v as usize
    } else {
        1
    }
}
