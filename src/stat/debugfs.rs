//! KVM's own statistics in debugfs: `<debugfs>/kvm/<pid>-<vmfd>/<stat>` (one decimal counter
//! per file: `exits`, `io_exits`, `halt_exits`, `mmio_exits`, `irq_exits`, `hypercalls`, ...,
//! summed over the VM's vCPUs) and `vcpuN/` directories (`pid`, `tsc-offset`, ...).
//!
//! Under kernel lockdown (`/sys/kernel/security/lockdown` = integrity or confidentiality) the
//! statistics files exist but reading them fails with `EPERM`; the `vcpuN/pid` files stay
//! readable. Such a refusal is data for the report, not an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The KVM directory under a debugfs path: `path` itself when it already ends in `kvm`,
/// else `path/kvm`.
pub fn kvm_dir(debugfs: &Path) -> PathBuf {
    if debugfs.file_name().is_some_and(|n| n == "kvm") {
        debugfs.to_path_buf()
    } else {
        debugfs.join("kvm")
    }
}

/// The debugfs directories of a VM (`<kvm>/<task>-<fd>`), sorted by fd.
///
/// KVM names the directory after the *thread* that created the VM (`task_pid_nr(current)` in
/// `kvm_create_vm_debugfs`), which is the process id only when the main thread did it; so
/// any of `tasks` (the process id and its thread ids) matches. When `vm_fds` is not empty,
/// only those fds match.
pub fn vm_dirs(kvm: &Path, tasks: &[i32], vm_fds: &[u32]) -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir(kvm)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (p, fd) = name.split_once('-')?;
            let (p, fd) = (p.parse::<i32>().ok()?, fd.parse::<u32>().ok()?);
            (tasks.contains(&p) && (vm_fds.is_empty() || vm_fds.contains(&fd)))
                .then_some((fd, e.path()))
        })
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// One reading of a VM's statistics directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// Counter name → value.
    pub values: BTreeMap<String, u64>,
    /// Files that could not be read, with the error (`Operation not permitted` under lockdown).
    pub refused: Vec<(String, String)>,
}

/// Reads every counter file directly in `dir` (subdirectories such as `vcpu0` are skipped).
///
/// # Errors
/// The error of listing `dir`.
pub fn read_dir_stats(dir: &Path) -> std::io::Result<Reading> {
    let mut r = Reading::default();
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(true) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        match std::fs::read_to_string(e.path()) {
            Ok(t) => {
                if let Ok(v) = t.trim().parse::<u64>() {
                    r.values.insert(name, v);
                }
            }
            Err(err) => r.refused.push((name, err.to_string())),
        }
    }
    // `exits` first: it names the refusal best.
    r.refused
        .sort_by(|a, b| (a.0 != "exits", &a.0).cmp(&(b.0 != "exits", &b.0)));
    Ok(r)
}

/// One KVM counter over a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DebugfsCounter {
    /// File name (`exits`, `io_exits`, ...).
    pub name: String,
    /// Increase over the span.
    pub delta: u64,
    /// Increase per second.
    pub per_s: f64,
}

/// KVM debugfs statistics of one VM over a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DebugfsStats {
    /// The VM's directory.
    pub dir: String,
    /// Counters that moved (all of them when `all` was asked), exits-related first.
    pub counters: Vec<DebugfsCounter>,
    /// Why statistics are missing (e.g. `exits: Operation not permitted (os error 1)`), if
    /// they are.
    pub refused: Option<String>,
}

/// Counters shown first, in this order (the rest follow alphabetically).
const FIRST: &[&str] = &[
    "exits",
    "io_exits",
    "mmio_exits",
    "halt_exits",
    "irq_exits",
    "irq_window_exits",
    "nmi_window_exits",
    "request_irq_exits",
    "signal_exits",
    "hypercalls",
    "insn_emulation",
    "halt_wakeup",
];

/// The difference between two readings as [`DebugfsStats`], keeping counters that moved.
pub fn diff(dir: &Path, before: &Reading, after: &Reading, wall_ns: u64) -> DebugfsStats {
    let secs = wall_ns.max(1) as f64 / 1e9;
    let mut counters: Vec<DebugfsCounter> = after
        .values
        .iter()
        .filter_map(|(k, &a)| {
            let b = before.values.get(k).copied().unwrap_or(a);
            let d = a.saturating_sub(b);
            (d > 0 || FIRST.contains(&k.as_str())).then(|| DebugfsCounter {
                name: k.clone(),
                delta: d,
                per_s: d as f64 / secs,
            })
        })
        .collect();
    let rank = |n: &str| FIRST.iter().position(|f| *f == n).unwrap_or(FIRST.len());
    counters.sort_by(|a, b| rank(&a.name).cmp(&rank(&b.name)).then(a.name.cmp(&b.name)));
    let refused = after.refused.first().map(|(name, e)| {
        if after.refused.len() > 1 {
            format!("{name} and {} more: {e}", after.refused.len() - 1)
        } else {
            format!("{name}: {e}")
        }
    });
    DebugfsStats {
        dir: dir.display().to_string(),
        counters,
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_and_diff() {
        let tmp = tempfile::tempdir().unwrap();
        let kvm = tmp.path().join("kvm");
        let vm = kvm.join("42-7");
        std::fs::create_dir_all(vm.join("vcpu0")).unwrap();
        std::fs::create_dir_all(kvm.join("43-1")).unwrap();
        std::fs::write(vm.join("exits"), "10\n").unwrap();
        std::fs::write(vm.join("io_exits"), "4\n").unwrap();
        std::fs::write(vm.join("pf_fixed"), "1\n").unwrap();
        assert_eq!(kvm_dir(tmp.path()), kvm);
        assert_eq!(kvm_dir(&kvm), kvm);
        assert_eq!(vm_dirs(&kvm, &[42], &[]), vec![vm.clone()]);
        assert_eq!(vm_dirs(&kvm, &[40, 42], &[7]), vec![vm.clone()]);
        assert!(vm_dirs(&kvm, &[42], &[8]).is_empty());
        let a = read_dir_stats(&vm).unwrap();
        std::fs::write(vm.join("exits"), "30\n").unwrap();
        let b = read_dir_stats(&vm).unwrap();
        let d = diff(&vm, &a, &b, 2_000_000_000);
        assert_eq!(d.counters[0].name, "exits");
        assert_eq!(d.counters[0].delta, 20);
        assert!((d.counters[0].per_s - 10.0).abs() < 1e-9);
        assert_eq!(d.counters[1].name, "io_exits");
        assert!(d.counters.iter().all(|c| c.name != "pf_fixed"));
        assert!(d.refused.is_none());
    }
}
