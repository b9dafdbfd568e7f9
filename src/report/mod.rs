//! The [`Profile`] tree: per VM → per vCPU (and other VMM threads) → class → top symbols, with
//! samples, percentages, lost and throttled counts; built by [`crate::aggregate::Aggregator`]
//! and rendered by the formats in [`crate::output`]. The JSON schema is documented in
//! `docs/formats.md`.

pub mod guest;
pub mod stack;

pub use stack::{Frame, GuestProc, StackOrigin, StackRow};

use serde::{Deserialize, Serialize};

use crate::attribute::{Class, Symbol};
use crate::counters::Rate;

/// Version of the JSON report schema (`docs/formats.md`).
pub const SCHEMA_VERSION: u32 = 1;

/// What was measured and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Event name actually used (after any fallback), e.g. `cpu-clock`.
    pub event: String,
    /// Sampling rate.
    pub rate: Rate,
    /// Whether the event's period is in ns (cpu-clock, task-clock).
    pub period_is_ns: bool,
    /// Wall-clock duration of the collection in ns.
    pub duration_ns: u64,
    /// `threads` (per-thread counters, `-p`) or `system-wide` (per-CPU counters, `-a`).
    pub mode: String,
    /// Host name.
    pub host: String,
    /// Host kernel release (`uname -r`).
    pub kernel: String,
    /// Unix time of the start, in ns.
    pub start_unix_ns: u64,
}

/// How guest IPs were seen on this host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestIpStatus {
    /// Samples tagged `PERF_RECORD_MISC_GUEST_KERNEL`/`GUEST_USER` by the host kernel.
    pub tagged_samples: u64,
    /// vCPU-thread samples at a guest-interrupt landing symbol.
    pub landing_samples: u64,
    /// True when the host does not report guest IPs and landing samples count as guest time
    /// ([`Class::GuestHidden`]).
    pub hidden: bool,
    /// The reason, in a sentence, when `hidden`.
    pub reason: Option<String>,
}

/// One class's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    /// The class.
    pub class: Class,
    /// Samples.
    pub samples: u64,
    /// Sum of sample periods (events; ns for clock events).
    pub period: u64,
    /// Percent of the enclosing total's samples (0–100).
    pub percent: f64,
}

/// One symbol's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolRow {
    /// The class the symbol's samples belong to.
    pub class: Class,
    /// The symbol.
    pub symbol: Symbol,
    /// Samples whose leaf is this symbol ("self").
    pub samples: u64,
    /// Percent of the enclosing total's samples (0–100).
    pub percent: f64,
    /// Samples with this symbol anywhere in their stack, counted once per sample
    /// ("children", inclusive, as `perf report --children`); equals `samples` when no
    /// callchains were recorded.
    #[serde(default)]
    pub inclusive_samples: u64,
    /// `inclusive_samples` as a percent of the enclosing total's samples (0–100).
    #[serde(default)]
    pub inclusive_percent: f64,
}

/// One thread of a VM (a vCPU, or another VMM thread), or a host CPU in system-wide mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadReport {
    /// Thread id.
    pub tid: i32,
    /// vCPU index, when the thread runs a vCPU.
    pub vcpu: Option<u32>,
    /// Thread name.
    pub name: String,
    /// Samples.
    pub samples: u64,
    /// Sum of periods.
    pub period: u64,
    /// Time on CPU during the collection in ns (schedstat), when measured.
    pub on_cpu_ns: Option<u64>,
    /// Samples expected from the rate and `on_cpu_ns` (clock events at a frequency).
    pub expected_samples: Option<u64>,
    /// Records lost (PERF_RECORD_LOST) in this thread's ring buffer.
    pub lost: u64,
    /// Throttle events.
    pub throttled: u64,
    /// Class shares, classes with samples only, in [`Class::ALL`] order.
    pub classes: Vec<ClassRow>,
    /// Top symbols, most samples first.
    pub top_symbols: Vec<SymbolRow>,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmReport {
    /// The VM's key (a VMM pid on KVM, a domain id on Xen).
    pub id: crate::model::VmId,
    /// VMM pid (KVM), -1 for a VM with no VMM process (a Xen domain).
    pub pid: i32,
    /// VM name.
    pub name: String,
    /// Number of vCPUs found.
    pub vcpu_count: usize,
    /// Samples of all the VM's threads.
    pub samples: u64,
    /// Lost records of all its rings.
    pub lost: u64,
    /// Throttle events.
    pub throttled: u64,
    /// Class shares over the whole VM.
    pub classes: Vec<ClassRow>,
    /// Top symbols over the whole VM.
    pub top_symbols: Vec<SymbolRow>,
    /// vCPU threads, by index.
    pub vcpus: Vec<ThreadReport>,
    /// Other VMM threads (I/O threads, main loop) that had samples.
    pub other_threads: Vec<ThreadReport>,
    /// Active mode: the guest's own view from the in-guest helper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestView>,
    /// The VM's host-seen stacks, every thread's, most samples first; filled when the
    /// snapshot asks for stacks (folded, flame graph, pprof, `--children`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<StackRow>,
}

/// Active mode's view of one VM: what the in-guest helper told, per guest process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestView {
    /// About the guest and the session (kernel, CPUs, clock relation, channel).
    pub summary: guest::GuestSummary,
    /// Guest processes, most samples first, with their classes and top symbols.
    pub processes: Vec<guest::GuestProcessReport>,
    /// Guest samples behind `processes`.
    pub samples: u64,
    /// Whether those samples also count in the VM's class table (`true`: host-tagged samples
    /// re-attributed through the guest's maps) or are the helper's own sampling, shown beside
    /// the host's view (`false`: the host sees no guest IPs).
    pub in_class_table: bool,
    /// Guest stacks sampled by the helper with the guest's own callchains
    /// ([`StackOrigin::Helper`]), most samples first; empty when the helper sent none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<StackRow>,
}

/// A whole profile: what `hvprof report` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Collection parameters.
    pub meta: Meta,
    /// Guest IP visibility.
    pub guest_ips: GuestIpStatus,
    /// Notes for the reader (fallbacks, missing symbols, a VM that exited).
    pub notes: Vec<String>,
    /// VMs.
    pub vms: Vec<VmReport>,
    /// Samples of processes that are not VMs (system-wide mode).
    pub host_other: Option<ThreadReport>,
    /// Stacks of `host_other`, when the snapshot asks for stacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_stacks: Vec<StackRow>,
    /// Whether samples carried callchains (recorded with `-g` / `--call-graph`).
    #[serde(default)]
    pub callchains: bool,
    /// Samples over everything.
    pub total_samples: u64,
    /// Lost records over everything.
    pub total_lost: u64,
    /// Throttle events over everything.
    pub total_throttled: u64,
}
