//! Kernel log evidence: the lines a guest kernel prints about its hypervisor and the paravirt
//! features it turned on, one table per topic.
//!
//! Sources of the lines: Linux `arch/x86/kernel/cpu/hypervisor.c` ("Hypervisor detected: "
//! with the `x86_hyper_*` names), `arch/x86/kernel/paravirt.c` / `init/main.c` ("Booting
//! paravirtualized kernel on " with `pv_info.name`), `arch/x86/xen/*.c`, `drivers/xen/*.c`,
//! `arch/x86/kernel/kvm.c`, `kvmclock.c`, the PVM tree's `arch/x86/kernel/pvm.c`; Brendan
//! Gregg, "Xen Feature Detection" (2014).

use super::{abridge, add_active, log_src, Ctx};
use crate::model::{Signal, Strength};
use crate::source::KernelLog;
use crate::xen::ActiveFeature;

use Signal as S;
use Strength::{Moderate as M, Strong as St, Weak as W};

/// What the kernel log says for the Xen section.
#[derive(Default)]
pub(crate) struct XenLogFacts {
    /// Xen paravirt features the log shows in use.
    pub(crate) active: Vec<ActiveFeature>,
    /// The Xen version from the "Xen version" banner.
    pub(crate) version: Option<String>,
}

/// Read every topic's lines from `log`: the hypervisor the kernel names, then Xen, KVM, PVM
/// and PMU lines. Xen facts go to the returned [`XenLogFacts`], KVM features to `kvm_active`.
pub(crate) fn log_evidence(
    cx: &mut Ctx,
    log: &KernelLog,
    kvm_active: &mut Vec<ActiveFeature>,
) -> XenLogFacts {
    named_line(cx, log, &PV_KERNEL);
    named_line(cx, log, &HYPERVISOR_DETECTED);
    let xen = xen_lines(cx, log);
    scan(cx, log, KVM_LINES, kvm_active);
    for (needle, name) in KVM_FEATURE_LINES {
        if let Some((n, line)) = log.find(needle) {
            add_active(kvm_active, name, quoted(n, line));
        }
    }
    scan(cx, log, PVM_LINES, &mut Vec::new());
    scan(cx, log, PMU_LINES, &mut Vec::new());
    xen
}

// ---------------------------------------------------------------------------------------------
// "<prefix><name>" lines: the kernel names its hypervisor

/// A line that ends in a name the kernel took from a table of its own.
struct NamedLine {
    prefix: &'static str,
    /// Known names (compared whole, after trimming) and what each means.
    names: &'static [Name],
    /// For a name not in `names`.
    other: Name,
}

/// One known name and what it says.
struct Name {
    name: &'static str,
    signal: Signal,
    strength: Strength,
    meaning: &'static str,
}

const fn name(
    name: &'static str,
    signal: Signal,
    strength: Strength,
    meaning: &'static str,
) -> Name {
    Name {
        name,
        signal,
        strength,
        meaning,
    }
}

/// "Booting paravirtualized kernel on <pv_info.name>": names from `arch/x86/xen/enlighten_pv.c`
/// ("Xen"), `enlighten_hvm.c` ("Xen HVM", "Xen PVH"), `arch/x86/kernel/kvm.c` ("KVM"),
/// `arch/x86/kernel/cpu/vmware.c` ("VMware hypervisor"), `paravirt.c` ("bare hardware").
const PV_KERNEL: NamedLine = NamedLine {
    prefix: "Booting paravirtualized kernel on ",
    names: &[
        name(
            "Xen",
            S::XenPv,
            St,
            "PV kernel on Xen (pv_info.name \"Xen\")",
        ),
        name(
            "Xen HVM",
            S::XenHvm,
            St,
            "PV-aware kernel in a Xen HVM container",
        ),
        name("Xen PVH", S::XenPvh, St, "PVH guest"),
        name("KVM", S::Kvm, St, "PV-aware kernel on KVM"),
        name(
            "VMware hypervisor",
            S::Vmware,
            St,
            "PV-aware kernel on VMware",
        ),
        name(
            "bare hardware",
            S::BareMetal,
            M,
            "the kernel uses no paravirt ops: bare metal, or a guest whose kernel lacks support \
             for its hypervisor",
        ),
    ],
    other: name(
        "",
        S::OtherHypervisor,
        St,
        "paravirtualized kernel on another hypervisor",
    ),
};

/// "Hypervisor detected: <x86_hyper name>" (`arch/x86/kernel/cpu/hypervisor.c`): the `.name`
/// of `x86_hyper_xen_pv` ("Xen PV"), `x86_hyper_xen_hvm` ("Xen HVM": upstream uses it for HVM
/// and PVH domains alike), `x86_hyper_xen` of Linux before 4.14 ("Xen", PV and HVM alike),
/// `x86_hyper_kvm`, `x86_hyper_vmware`, `x86_hyper_ms_hyperv`, `x86_hyper_jailhouse`,
/// `x86_hyper_acrn`, `x86_hyper_bhyve`. "Xen PVH" is what a real PVH guest's log showed
/// (hvprof issue #9); names are compared whole, so it is never read as "Xen PV".
const HYPERVISOR_DETECTED: NamedLine = NamedLine {
    prefix: "Hypervisor detected: ",
    names: &[
        name("Xen PV", S::XenPv, St, "the kernel detected Xen PV"),
        name(
            "Xen PVH",
            S::XenPvh,
            St,
            "the kernel detected a Xen PVH domain",
        ),
        name(
            "Xen HVM",
            S::XenHvm,
            St,
            "the kernel detected a Xen HVM container (HVM or PVH)",
        ),
        name(
            "Xen",
            S::Xen,
            St,
            "the kernel detected Xen (before Linux 4.14 PV and HVM print the same name)",
        ),
        name("KVM", S::Kvm, St, "the kernel detected KVM"),
        name("VMware", S::Vmware, St, "the kernel detected VMware"),
        name(
            "Microsoft Hyper-V",
            S::HyperV,
            St,
            "the kernel detected Hyper-V",
        ),
        name(
            "Jailhouse",
            S::OtherHypervisor,
            St,
            "the kernel detected the Jailhouse partitioning hypervisor",
        ),
        name(
            "ACRN",
            S::OtherHypervisor,
            St,
            "the kernel detected the ACRN hypervisor",
        ),
        name("Bhyve", S::OtherHypervisor, St, "the kernel detected bhyve"),
    ],
    other: name(
        "",
        S::OtherHypervisor,
        St,
        "the kernel detected another hypervisor",
    ),
};

/// Evidence from the first line starting with `t.prefix` (after the log prefix), if any.
fn named_line(cx: &mut Ctx, log: &KernelLog, t: &NamedLine) {
    let Some((n, line)) = log.find(t.prefix) else {
        return;
    };
    let said = line.split_once(t.prefix).map_or("", |(_, r)| r.trim());
    let hit = t.names.iter().find(|k| k.name == said).unwrap_or(&t.other);
    cx.ev(log_src(n), line, hit.signal, hit.strength, hit.meaning);
}

// ---------------------------------------------------------------------------------------------
// Lines that say one thing each

/// A line that, when present, is evidence of `signal` and may show a paravirt feature in use.
struct LinePat {
    /// Substring that identifies the line.
    needle: &'static str,
    signal: Signal,
    strength: Strength,
    meaning: &'static str,
    /// The [`ActiveFeature`] name this line shows in use.
    feature: Option<&'static str>,
}

const fn pat(
    needle: &'static str,
    signal: Signal,
    strength: Strength,
    meaning: &'static str,
    feature: Option<&'static str>,
) -> LinePat {
    LinePat {
        needle,
        signal,
        strength,
        meaning,
        feature,
    }
}

/// Evidence from the first line matching each of `pats`, in table order; features go to
/// `active` (first evidence wins).
fn scan(cx: &mut Ctx, log: &KernelLog, pats: &[LinePat], active: &mut Vec<ActiveFeature>) {
    for p in pats {
        if let Some((n, line)) = log.find(p.needle) {
            cx.ev(log_src(n), abridge(line), p.signal, p.strength, p.meaning);
            if let Some(f) = p.feature {
                add_active(active, f, quoted(n, line));
            }
        }
    }
}

/// How an [`ActiveFeature`] cites a log line: `kernel log line N: "<line>"`.
fn quoted(n: usize, line: &str) -> String {
    format!("{}: \"{}\"", log_src(n), abridge(line))
}

// ---------------------------------------------------------------------------------------------
// Xen

/// Xen guest lines (`arch/x86/xen/`, `drivers/xen/`, `drivers/block/xen-blkfront.c`,
/// `drivers/net/xen-netfront.c`), PV features first.
const XEN_LINES: &[LinePat] = &[
    pat(
        "Xen HVM callback vector for event delivery is enabled",
        S::XenPvInterrupts,
        St,
        "PV interrupts: event channels via the HVM callback vector (PVHVM, PVH)",
        Some("pv_interrupts"),
    ),
    pat(
        "Xen: using vcpuop timer interface",
        S::XenPvTimers,
        St,
        "PV timers (vcpuop)",
        Some("pv_timers"),
    ),
    pat(
        "installing Xen timer for CPU",
        S::XenPvTimers,
        St,
        "PV timers",
        Some("pv_timers"),
    ),
    pat(
        "xen: PV spinlocks enabled",
        S::XenPvSpinlocks,
        St,
        "PV spinlocks",
        Some("pv_spinlocks"),
    ),
    pat(
        "lock: xen: PV spinlocks",
        S::XenPvSpinlocks,
        St,
        "PV spinlocks",
        None,
    ),
    pat(
        "Switching to clocksource xen",
        S::XenPvClock,
        St,
        "Xen PV clock",
        Some("pv_clock"),
    ),
    pat(
        "Switched to clocksource xen",
        S::XenPvClock,
        St,
        "Xen PV clock",
        Some("pv_clock"),
    ),
    pat(
        "Initialising Xen virtual ethernet driver",
        S::XenPvDrivers,
        St,
        "PV network driver (netfront)",
        Some("pv_network"),
    ),
    pat(
        "unplug emulated NICs",
        S::XenPvDrivers,
        St,
        "emulated NICs unplugged in favour of PV netfront",
        Some("unplugged_emulated_nics"),
    ),
    pat(
        "unplug emulated disks",
        S::XenPvDrivers,
        St,
        "emulated disks unplugged in favour of PV blkfront",
        Some("unplugged_emulated_disks"),
    ),
    pat(
        "blkfront: xvd",
        S::XenPvDrivers,
        St,
        "PV block driver (blkfront)",
        Some("pv_disks"),
    ),
    pat(
        "Xen Platform PCI: I/O protocol version",
        S::XenHvm,
        M,
        "Xen platform PCI device: an HVM guest that can use PV drivers",
        None,
    ),
    pat(
        "xen-platform-pci",
        S::XenHvm,
        M,
        "Xen platform PCI device (HVM)",
        None,
    ),
    pat(
        "xen: --> pirq=",
        S::XenHvm,
        W,
        "PIRQs mapped to event channels (HVM with hvm_pirqs)",
        Some("pirqs_as_event_channels"),
    ),
    pat(
        "PCI: setting up Xen PCI frontend stub",
        S::XenPv,
        M,
        "PCI frontend stub, set up only in PV guests",
        None,
    ),
    pat(
        "Xen: using vcpu_info placement",
        S::XenPv,
        M,
        "vcpu_info placement (PV)",
        None,
    ),
    pat(
        "XENBUS: Device with no driver",
        S::Xen,
        W,
        "Xen bus device",
        None,
    ),
    // "xen/balloon: " in old kernels, "xen:balloon: " (pr_fmt) in current ones.
    pat(
        "balloon: Initialising balloon driver",
        S::Xen,
        W,
        "Xen balloon driver",
        None,
    ),
    pat("DMI: Xen HVM domU", S::XenHvm, M, "Xen HVM firmware", None),
];

/// Xen lines and the version banner.
fn xen_lines(cx: &mut Ctx, log: &KernelLog) -> XenLogFacts {
    let mut xen = XenLogFacts::default();
    scan(cx, log, XEN_LINES, &mut xen.active);
    // "Xen version: 4.2.amazon (preserve-AD)" (PV) or "Xen version 4.2." (HVM).
    if let Some((n, line)) = log.find("Xen version") {
        let v = line
            .split_once("Xen version")
            .map_or("", |(_, r)| r.trim_start_matches(':').trim());
        let v = v
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        if !v.is_empty() {
            xen.version = Some(v.to_string());
        }
        cx.ev(log_src(n), line, S::Xen, St, "Xen version banner");
    }
    xen
}

// ---------------------------------------------------------------------------------------------
// KVM, PVM, PMU

/// KVM guest lines (`arch/x86/kernel/kvm.c`, `kvmclock.c`).
const KVM_LINES: &[LinePat] = &[
    pat(
        "kvm-clock: Using msrs",
        S::Kvm,
        St,
        "kvmclock registered",
        Some("kvmclock"),
    ),
    pat("kvm-clock: cpu ", S::Kvm, M, "kvmclock registered", None),
    pat("kvm-guest: ", S::Kvm, M, "KVM guest paravirt setup", None),
];

/// KVM paravirt features the guest kernel reports (`arch/x86/kernel/kvm.c`); the lines are
/// already KVM evidence through their `kvm-guest: ` prefix, so they only name features.
const KVM_FEATURE_LINES: [(&str, &str); 7] = [
    ("kvm-guest: PV spinlocks enabled", "pv_spinlocks"),
    ("setup PV IPIs", "pv_send_ipi"),
    ("setup PV sched yield", "pv_sched_yield"),
    ("setup pv remote TLB flush", "pv_tlb_flush"),
    ("eoi() replaced with kvm_guest_apic_eoi_write", "pv_eoi"),
    ("stealtime: cpu", "steal_time"),
    ("setup async PF for cpu", "async_pf"),
];

/// PVM host and guest lines (the PVM tree's `arch/x86/kvm/pvm/` and `arch/x86/kernel/pvm.c`).
const PVM_LINES: &[LinePat] = &[
    pat(
        "kvm-pvm: loaded",
        S::PvmHost,
        St,
        "kvm_pvm (PVM host module) initialised",
        None,
    ),
    pat(
        "pvm-guest: ",
        S::PvmGuest,
        St,
        "PVM guest code active (pr_fmt of arch/x86/kernel/pvm.c)",
        None,
    ),
    pat(
        "pvm-pv: not detected",
        S::NotPvmGuest,
        St,
        "the kernel's own PVM-guest detection said no",
        None,
    ),
    pat(
        "pvm-pv: detected",
        S::PvmGuest,
        M,
        "the kernel's PVM-guest detection said yes",
        None,
    ),
];

/// `arch/x86/events/core.c` when the hypervisor offers no PMU.
const PMU_LINES: &[LinePat] = &[pat(
    "PMU not available due to virtualization",
    S::NoHardwarePmu,
    St,
    "no hardware PMU: software events only",
    None,
)];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::source::Fs;

    fn signals(text: &str) -> Vec<Signal> {
        let mut cx = Ctx::new(Fs::new(Path::new("/nonexistent")));
        log_evidence(&mut cx, &KernelLog::parse(text), &mut Vec::new());
        cx.evidence.iter().map(|e| e.signal).collect()
    }

    #[test]
    fn each_name_the_kernel_prints_means_its_own_hypervisor() {
        let hyper = HYPERVISOR_DETECTED.prefix;
        let pv = PV_KERNEL.prefix;
        for (prefix, name, want) in [
            (hyper, "Xen PV", S::XenPv),
            (hyper, "Xen PVH", S::XenPvh),
            (hyper, "Xen HVM", S::XenHvm),
            (hyper, "Xen", S::Xen),
            (hyper, "KVM", S::Kvm),
            (hyper, "VMware", S::Vmware),
            (hyper, "Microsoft Hyper-V", S::HyperV),
            (hyper, "Jailhouse", S::OtherHypervisor),
            (hyper, "ACRN", S::OtherHypervisor),
            (hyper, "Bhyve", S::OtherHypervisor),
            (hyper, "Something New", S::OtherHypervisor),
            (pv, "Xen", S::XenPv),
            (pv, "Xen HVM", S::XenHvm),
            (pv, "Xen PVH", S::XenPvh),
            (pv, "KVM", S::Kvm),
            (pv, "VMware hypervisor", S::Vmware),
            (pv, "bare hardware", S::BareMetal),
            (pv, "lguest", S::OtherHypervisor),
        ] {
            let got = signals(&format!("[    0.000000] {prefix}{name}\n"));
            assert_eq!(got, [want], "{prefix}{name}");
        }
    }

    #[test]
    fn features_are_listed_once_and_version_is_read() {
        let mut cx = Ctx::new(Fs::new(Path::new("/nonexistent")));
        let log = KernelLog::parse(
            "Xen version: 4.2.amazon (preserve-AD)\n\
             installing Xen timer for CPU 0\n\
             Xen: using vcpuop timer interface\n\
             xen:balloon: Initialising balloon driver\n",
        );
        let x = log_evidence(&mut cx, &log, &mut Vec::new());
        assert_eq!(x.version.as_deref(), Some("4.2.amazon"));
        let names: Vec<&str> = x.active.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["pv_timers"]);
        assert!(x.active[0].evidence.contains("vcpuop"), "{:?}", x.active);
        assert!(cx
            .evidence
            .iter()
            .any(|e| e.meaning == "Xen balloon driver"));
    }
}
