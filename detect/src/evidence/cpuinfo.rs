//! `/proc/cpuinfo` evidence: the `hypervisor` and `kvm_pvm_guest` flags, and SMEP/SMAP as
//! evidence against a PVM guest.

use super::Ctx;
use crate::model::{Signal, Strength};

/// The `flags` line of `/proc/cpuinfo` (first CPU).
pub(crate) struct Flags {
    /// Every flag, in file order; empty when there is no `/proc/cpuinfo`.
    pub(crate) all: Vec<String>,
    /// The flags detection cares about, in a fixed order.
    pub(crate) selected: Vec<String>,
}

impl Flags {
    /// Whether flag `f` is set.
    pub(crate) fn has(&self, f: &str) -> bool {
        self.all.iter().any(|x| x == f)
    }

    /// Those of `wanted` that are set, in the order of `wanted`.
    pub(crate) fn present<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        wanted.iter().copied().filter(|f| self.has(f)).collect()
    }
}

/// Read the flags and record what they say about virtualization.
pub(crate) fn cpu_flags(cx: &mut Ctx) -> Flags {
    let text = cx.fs.read("/proc/cpuinfo").unwrap_or_default();
    let all: Vec<String> = text
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut flags = Flags {
        all,
        selected: Vec::new(),
    };
    flags.selected = flags
        .present(&["hypervisor", "vmx", "svm", "kvm_pvm_guest"])
        .into_iter()
        .map(str::to_string)
        .collect();
    if flags.all.is_empty() {
        return flags;
    }
    if flags.has("hypervisor") {
        cx.ev(
            "/proc/cpuinfo flags",
            "hypervisor",
            Signal::Virtualized,
            Strength::Moderate,
            "the kernel sees the hypervisor-present bit",
        );
    } else {
        cx.ev(
            "/proc/cpuinfo flags",
            "no 'hypervisor' flag",
            Signal::BareMetal,
            Strength::Weak,
            "the kernel does not see the hypervisor-present bit",
        );
    }
    if flags.has("kvm_pvm_guest") {
        cx.ev(
            "/proc/cpuinfo flags",
            "kvm_pvm_guest",
            Signal::PvmGuest,
            Strength::Strong,
            "X86_FEATURE_KVM_PVM_GUEST, set by pvm_early_setup() when booted as a PVM guest",
        );
    }
    flags
}

/// A PVM guest gets no SMEP/SMAP (pvm-spec.rst: "SMEP/SMAP is disabled"); only worth saying
/// when the question "PVM or plain KVM?" is open, so call this after the KVM evidence is in.
pub(crate) fn smep_smap_evidence(cx: &mut Ctx, flags: &Flags) {
    if !cx.has(Signal::Kvm) || flags.has("kvm_pvm_guest") {
        return;
    }
    let seen = flags.present(&["smep", "smap"]);
    if !seen.is_empty() {
        cx.ev(
            "/proc/cpuinfo flags",
            seen.join(" "),
            Signal::NotPvmGuest,
            Strength::Moderate,
            "PVM guests run without SMEP/SMAP (PVM spec), so this kernel is not one",
        );
    }
}
