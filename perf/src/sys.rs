//! Machine facts the perf layer needs: page size and CPU count (`sysconf(3)`), the online
//! CPUs (sysfs), and the TSC.

use std::path::Path;

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

/// Online CPUs from `<root>/sys/devices/system/cpu/online` (`0-3,5`; at most 4097 CPUs per
/// range), else `0..cpu_count()`.
pub fn online_cpus(root: &Path) -> Vec<u32> {
    let text =
        std::fs::read_to_string(root.join("sys/devices/system/cpu/online")).unwrap_or_default();
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            cpus.extend(a..=b.min(a.saturating_add(4096)));
        }
    }
    if cpus.is_empty() {
        cpus = (0..cpu_count() as u32).collect();
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_cpu_list() {
        let dir = std::env::temp_dir().join(format!("hvprof-perf-cpus-{}", std::process::id()));
        let sys = dir.join("sys/devices/system/cpu");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::write(sys.join("online"), "0-2,5\n").unwrap();
        assert_eq!(online_cpus(&dir), vec![0, 1, 2, 5]);
        std::fs::write(sys.join("online"), "garbage").unwrap();
        assert!(!online_cpus(&dir).is_empty(), "falls back to cpu_count");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
