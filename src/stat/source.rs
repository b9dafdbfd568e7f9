//! Where `hvprof stat`'s exit figures come from, and the notes that explain it.
//!
//! Input: the exact tracepoint hit counts of the run so far and whether debugfs has an
//! `exits` counter; output: a [`Source`] (best first: `kvm:kvm_exit`, the exit-path
//! tracepoints, debugfs, none) and, for the whole-run report, a note saying why a fallback was
//! taken. No IO.

use std::collections::BTreeMap;

use super::exits::Tp;

/// `tracepoint kvm:kvm_exit`: the name of [`Source::KvmExit`] in reports.
pub(super) const SRC_KVM_EXIT: &str = "tracepoint kvm:kvm_exit";
/// The name of [`Source::ExitPath`] in reports.
pub(super) const SRC_EXIT_PATH: &str =
    "tracepoints kvm:kvm_userspace_exit+kvm:kvm_pio+kvm:kvm_mmio+kvm:kvm_hypercall";
/// What the latency of [`Source::KvmExit`] measures.
pub(super) const LAT_KVM_EXIT: &str = "kvm:kvm_exit -> next kvm:kvm_entry of the same vCPU thread";
/// What the latency of [`Source::ExitPath`] measures.
pub(super) const LAT_EXIT_PATH: &str =
    "round trip through the VMM: last kvm:kvm_pio/kvm_mmio/kvm_hypercall \
     before kvm:kvm_userspace_exit -> next kvm:kvm_fpu load (KVM_RUN re-entered); exits \
     handled inside the kernel are not timed";

/// The tracepoints of the exit-path fallback: one of them fires on every exit to the VMM.
const EXIT_PATH_TPS: [Tp; 4] = [Tp::UserspaceExit, Tp::Pio, Tp::Mmio, Tp::Hypercall];

/// The source chosen for exit figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// `kvm:kvm_exit` / `kvm:kvm_entry`.
    KvmExit,
    /// The exit-path tracepoints (a lower bound).
    ExitPath,
    /// KVM's debugfs counters.
    Debugfs,
    /// Nothing fired.
    None,
}

impl Source {
    /// The source's name in reports (`exit_source`, `ExitStat::source`).
    pub(super) fn name(self) -> &'static str {
        match self {
            Source::KvmExit => SRC_KVM_EXIT,
            Source::ExitPath => SRC_EXIT_PATH,
            Source::Debugfs => "debugfs",
            Source::None => "none",
        }
    }

    /// The best source that fired, from the exact hit counts so far (`tp_counts`; a
    /// tracepoint that was opened has an entry, maybe 0) and whether debugfs has `exits`.
    pub(super) fn choose(tp_counts: &BTreeMap<Tp, u64>, debugfs_exits: bool) -> Source {
        let fired = |t: &Tp| tp_counts.get(t).copied().unwrap_or(0) > 0;
        if fired(&Tp::Exit) {
            Source::KvmExit
        } else if EXIT_PATH_TPS.iter().any(fired) {
            Source::ExitPath
        } else if debugfs_exits {
            Source::Debugfs
        } else {
            Source::None
        }
    }
}

/// The note that explains a fallback from `kvm:kvm_exit`, for the whole-run report; `None`
/// when `kvm:kvm_exit` fired. `tp_counts` as for [`Source::choose`]; `has_debugfs_dir`: some VM
/// has a KVM debugfs directory.
pub(super) fn fallback_note(
    source: Source,
    tp_counts: &BTreeMap<Tp, u64>,
    has_debugfs_dir: bool,
) -> Option<String> {
    let fired = |t: Tp| tp_counts.get(&t).copied().unwrap_or(0) > 0;
    let opened = |t: Tp| tp_counts.contains_key(&t);
    if opened(Tp::Exit) && !fired(Tp::Exit) {
        let others: Vec<String> = EXIT_PATH_TPS
            .into_iter()
            .filter(|t| fired(*t))
            .map(Tp::full_name)
            .collect();
        if !others.is_empty() {
            Some(format!(
                "kvm:kvm_exit never fired on this host (PVM / nested): exits counted from {} \
                 (a lower bound: exits handled inside the kernel without these \
                 tracepoints are not seen); latency = {LAT_EXIT_PATH}",
                others.join(" + ")
            ))
        } else if source == Source::Debugfs {
            Some(
                "kvm:kvm_exit and the exit-path tracepoints never fired: exits from debugfs".into(),
            )
        } else {
            let dbg = if has_debugfs_dir {
                "debugfs exit counters unreadable"
            } else {
                "no KVM debugfs directory for the VM"
            };
            Some(format!(
                "no exits observed from any source: kvm:kvm_exit and the exit-path \
                 tracepoints never fired; {dbg}"
            ))
        }
    } else if !opened(Tp::Exit) && source == Source::ExitPath {
        Some(
            "kvm:kvm_exit unavailable: exits counted from the exit-path tracepoints (a lower bound)"
                .into(),
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_source_that_fired() {
        let mut c = BTreeMap::from([(Tp::Exit, 0), (Tp::Pio, 0)]);
        assert_eq!(Source::choose(&c, false), Source::None);
        assert_eq!(Source::choose(&c, true), Source::Debugfs);
        c.insert(Tp::Pio, 3);
        assert_eq!(Source::choose(&c, true), Source::ExitPath);
        let note = fallback_note(Source::ExitPath, &c, false).unwrap_or_default();
        assert!(note.starts_with("kvm:kvm_exit never fired"), "{note}");
        assert!(note.contains("kvm:kvm_pio"), "{note}");
        c.insert(Tp::Exit, 1);
        assert_eq!(Source::choose(&c, true), Source::KvmExit);
        assert_eq!(fallback_note(Source::KvmExit, &c, false), None);
    }
}
