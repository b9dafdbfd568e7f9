//! Machine facts the perf layer needs: page size and CPU count (`sysconf(3)`), and the TSC.

/// The system page size in bytes (`sysconf(_SC_PAGESIZE)`), 4096 if sysconf fails.
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

/// Reads the CPU's time-stamp counter (`rdtsc`), or 0 on other architectures.
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86-64 (every x86-64 CPU has it).
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}
