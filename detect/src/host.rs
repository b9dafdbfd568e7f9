//! Host side: what hvprof can measure on this machine.
//!
//! [`HostCapabilities`] is the part of a [`crate::Detection`] the recorder uses to pick its
//! event and to explain missing guest attribution. Whether guest samples are really tagged and
//! whether `kvm:kvm_exit` really fires can only be measured by running a VM; that is done by a
//! caller-supplied [`GuestIpProbe`] (hvprof's built-in test VM), not by this crate.

use serde::Serialize;

/// Result of one measurement that needs a running VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Probe {
    /// Not measured (no `--probe`, or no probe available). Any conclusion is a prediction.
    NotProbed,
    /// Measured and confirmed.
    Yes {
        /// What was observed, e.g. "812 of 1000 samples had cpumode GUEST_KERNEL".
        detail: String,
    },
    /// Measured and refuted, or the measurement could not run.
    No {
        /// Why, e.g. "0 of 1000 samples tagged as guest; 990 in pvm_do_event_irqoff".
        reason: String,
    },
}

/// What a [`GuestIpProbe`] measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeOutcome {
    /// Whether host-side samples taken while a vCPU ran guest code carry the guest IP and a
    /// guest cpumode (`PERF_RECORD_MISC_GUEST_KERNEL`/`GUEST_USER`).
    pub guest_ip_tagging: Probe,
    /// Whether `kvm:kvm_exit`/`kvm:kvm_entry` produced events while the VM ran.
    pub kvm_exit_firing: Probe,
}

/// Runs a short VM and samples it; implemented by the hvprof binary with its built-in test VM.
///
/// ```
/// use hvprof_detect::{GuestIpProbe, Probe, ProbeOutcome};
/// struct Fixed;
/// impl GuestIpProbe for Fixed {
///     fn probe(&self) -> ProbeOutcome {
///         ProbeOutcome {
///             guest_ip_tagging: Probe::No { reason: "0 of 100 samples tagged".into() },
///             kvm_exit_firing: Probe::Yes { detail: "5000 kvm_exit events".into() },
///         }
///     }
/// }
/// ```
pub trait GuestIpProbe {
    /// Run the measurement. Must not panic; failures are reported as [`Probe::No`].
    fn probe(&self) -> ProbeOutcome;
}

/// State of the `kvm:kvm_exit` / `kvm:kvm_entry` tracepoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tracepoints {
    /// The tracefs directory found (`/sys/kernel/tracing` or `/sys/kernel/debug/tracing`).
    pub tracefs: Option<String>,
    /// `events/kvm/kvm_exit` exists there.
    pub kvm_exit: bool,
    /// `events/kvm/kvm_entry` exists there.
    pub kvm_entry: bool,
    /// When not available: why (tracefs not mounted, kvm not loaded, ...).
    pub note: Option<String>,
    /// Whether they actually fired while a VM ran (from the probe).
    pub firing: Probe,
}

/// KVM statistics in debugfs (`/sys/kernel/debug/kvm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Debugfs {
    /// `/sys/kernel/debug/kvm` exists (debugfs mounted and kvm loaded).
    pub kvm_dir: bool,
    /// Whether a global stat (`/sys/kernel/debug/kvm/exits`) could be read; `None` if not
    /// tried. Lockdown refuses files that have any write permission bit (EPERM).
    pub stats_readable: Option<bool>,
    /// Per-VM directories (`<pid>-<fd>`) present now.
    pub vm_dirs: Vec<String>,
    /// Whether `vcpuN/pid` and `vcpuN/tsc-offset` (mode 0444, allowed under lockdown) of the
    /// first VM could be read; `None` if no VM is running or nothing was tried.
    pub vcpu_files_readable: Option<bool>,
    /// Explanation (not mounted, EPERM under lockdown, ...).
    pub note: Option<String>,
}

/// Kernel lockdown (`/sys/kernel/security/lockdown`, `man 7 kernel_lockdown`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lockdown {
    /// `none`, `integrity`, `confidentiality`, `locked` (locked but mode unknown: only the
    /// kernel log said so), or `unknown`.
    pub mode: String,
    /// Where that came from.
    pub evidence: Option<String>,
}

/// What the host can do for hvprof. Built by [`crate::detect`]; used by the recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostCapabilities {
    /// `/dev/kvm` exists (in a captured tree: any file at `dev/kvm`).
    pub kvm: bool,
    /// `/dev/kvm` opened read-write; `None` when not tried (captured tree, or absent).
    pub kvm_openable: Option<bool>,
    /// KVM backend modules present in `/sys/module`: `kvm_intel`, `kvm_amd`, `kvm_pvm`.
    pub kvm_backends: Vec<String>,
    /// `vmx` or `svm` in `/proc/cpuinfo` flags (hardware virtualization usable by this kernel).
    pub hardware_virt: bool,
    /// A hardware PMU event source exists: `/sys/bus/event_source/devices/cpu` (or `cpu_core`,
    /// `cpu_atom` on hybrid Intel, `armv8_*` on Arm).
    pub hardware_pmu: bool,
    /// All event sources in `/sys/bus/event_source/devices`.
    pub event_sources: Vec<String>,
    /// PVM host: `kvm_pvm` loaded and `/dev/kvm` present.
    pub pvm_host: bool,
    /// Whether host samples of guest execution carry guest IPs (see [`Probe`]).
    pub guest_ip_tagging: Probe,
    /// `kvm:kvm_exit` / `kvm:kvm_entry`.
    pub tracepoints: Tracepoints,
    /// debugfs KVM stats.
    pub debugfs: Debugfs,
    /// Kernel lockdown.
    pub lockdown: Lockdown,
    /// `/proc/sys/kernel/perf_event_paranoid` (-1..=4; 2 = user-only for unprivileged users).
    pub paranoid: Option<i32>,
    /// `/proc/sys/kernel/kptr_restrict` (0 = kallsyms addresses visible, 1 = only with
    /// CAP_SYSLOG, 2 = never).
    pub kptr_restrict: Option<i32>,
    /// The effective uid of the detecting process is 0 (live only; `None` for a tree).
    pub root: Option<bool>,
}

impl HostCapabilities {
    /// The sampling event the recorder should use by default: `"cycles"` with a hardware PMU,
    /// `"cpu-clock"` (an hrtimer-driven software event, period in nanoseconds) without.
    pub fn default_event(&self) -> &'static str {
        if self.hardware_pmu {
            "cycles"
        } else {
            "cpu-clock"
        }
    }

    /// Why host-side samples will not carry guest IPs here, or `None` if they should (or the
    /// probe confirmed they do).
    ///
    /// A probe result wins; without one this is a prediction from the host configuration.
    pub fn guest_ips_hidden_reason(&self) -> Option<String> {
        match &self.guest_ip_tagging {
            Probe::Yes { .. } => return None,
            Probe::No { reason } => return Some(reason.clone()),
            Probe::NotProbed => {}
        }
        if !self.kvm {
            return Some(
                "no /dev/kvm: this machine runs no KVM guests, so there are no guest samples \
                 to tag"
                    .to_string(),
            );
        }
        if self.pvm_host && !self.kvm_backends.iter().any(|b| b != "kvm_pvm") {
            return Some(
                "KVM here is PVM (software virtualization, kvm_pvm loaded): samples of events \
                 with exclude_guest set (perf's default) land in pvm_do_event_irqoff instead of \
                 carrying the guest IP; without exclude_guest (hvprof's default) Linux 6.18 was \
                 measured to tag ring-3 guest samples — run `hvprof detect --probe` to check this host"
                    .to_string(),
            );
        }
        None
    }
}
