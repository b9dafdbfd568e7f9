//! The figures `hvprof stat` reports: [`StatReport`] and its parts, serialized as they are for
//! `--format json` (the schema is in docs/stat.md). Built by the interval step (`interval.rs`)
//! from the run-time state; rendered as text by `render.rs`.

use serde::Serialize;

use super::debugfs;
use super::hist::LatencySummary;
use super::steal::{GuestSteal, VcpuSteal};

/// One `hvprof stat` report: one interval (`-I`) or the whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatReport {
    /// 1-based interval number; `None` for the whole-run report.
    pub interval: Option<u64>,
    /// Start of the span, seconds since the counters were enabled.
    pub start_s: f64,
    /// Length of the span, seconds.
    pub duration_s: f64,
    /// Which source the exit figures come from, for every VM: `tracepoint kvm:kvm_exit`,
    /// `tracepoints kvm:kvm_userspace_exit+kvm:kvm_pio+kvm:kvm_mmio+kvm:kvm_hypercall`,
    /// `debugfs`, or `none`.
    pub exit_source: String,
    /// Per VM.
    pub vms: Vec<VmStat>,
    /// Steal of the CPUs of the kernel hvprof runs on, as a guest (`/proc/stat`).
    pub guest_steal: Option<GuestSteal>,
    /// Xen hypercalls of this kernel as a Xen guest.
    pub xen_hypercalls: XenHypercalls,
    /// What happened to each tracepoint.
    pub tracepoints: Vec<TracepointStatus>,
    /// Things the reader must know: fallbacks taken, sources missing, VMs that exited.
    pub notes: Vec<String>,
}

/// One VM's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmStat {
    /// VMM process id.
    pub pid: i32,
    /// VM name.
    pub name: String,
    /// The VMM exited during the run; figures cover the time until then.
    pub exited: bool,
    /// Exits of all vCPUs together.
    pub exits: ExitStat,
    /// Per vCPU.
    pub vcpus: Vec<VcpuStat>,
    /// KVM's debugfs counters for this VM, when debugfs is used.
    pub debugfs: Option<debugfs::DebugfsStats>,
}

/// One vCPU's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VcpuStat {
    /// vCPU index.
    pub index: u32,
    /// Host thread running it, if found.
    pub tid: Option<i32>,
    /// The thread exited during the run.
    pub exited: bool,
    /// Its exits.
    pub exits: ExitStat,
    /// Its steal (host view); `None` without a thread.
    pub steal: Option<VcpuSteal>,
}

/// VM exits over a span, from one source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitStat {
    /// Where `total` and `by_reason` come from (see [`StatReport::exit_source`]).
    pub source: String,
    /// Exits.
    pub total: u64,
    /// Exits per second.
    pub per_s: f64,
    /// By reason, most frequent first.
    pub by_reason: Vec<ReasonStat>,
    /// What `latency` measures, when there is one.
    pub latency_source: Option<String>,
    /// Latency over all reasons, ns.
    pub latency: Option<LatencySummary>,
    /// Exits whose end was not seen (lost entry record); counted, without latency.
    pub unmatched: u64,
    /// Samples whose tracepoint payload was too short for its `format` file: received but
    /// not decoded.
    pub undecodable: u64,
    /// Exits to the VMM (`kvm:kvm_userspace_exit`) by `KVM_EXIT_*` reason, with the round
    /// trip through the VMM.
    pub userspace_exits: Vec<ReasonStat>,
    /// Port I/O exits by port (`kvm:kvm_pio`).
    pub pio: Vec<PioStat>,
    /// MMIO exits by guest physical address (`kvm:kvm_mmio`).
    pub mmio: Vec<MmioStat>,
    /// MMIO exits at addresses beyond the 1024 distinct ones kept.
    pub mmio_other: u64,
    /// KVM hypercalls by number (`kvm:kvm_hypercall`).
    pub hypercalls: Vec<HypercallStat>,
    /// Raw tracepoint counts (exact, from the counters) and samples received.
    pub tracepoints: Vec<TpCount>,
}

/// Exits of one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonStat {
    /// `vmx`, `svm`, or `None` when the source has no ISA (exit-path tracepoints, debugfs).
    pub isa: Option<String>,
    /// The reason's number (`exit_reason`, `KVM_EXIT_*`), when there is one.
    pub code: Option<u64>,
    /// Its name (`IO_INSTRUCTION`, `io`, `PIO`, `KVM_EXIT_INTR`, `io_exits`).
    pub name: String,
    /// Exits.
    pub count: u64,
    /// Exits per second.
    pub per_s: f64,
    /// Share of the total, percent.
    pub percent: f64,
    /// Latency, ns.
    pub latency: Option<LatencySummary>,
}

/// Port I/O exits at one port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PioStat {
    /// I/O port.
    pub port: u32,
    /// `in` or `out`.
    pub dir: String,
    /// Access size, bytes.
    pub size: u32,
    /// Exits.
    pub count: u64,
    /// Exits per second.
    pub per_s: f64,
}

/// MMIO exits at one guest physical address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MmioStat {
    /// Guest physical address.
    pub gpa: u64,
    /// `read` or `write`.
    pub dir: String,
    /// Exits.
    pub count: u64,
    /// Exits per second.
    pub per_s: f64,
}

/// Hypercalls of one number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HypercallStat {
    /// Hypercall number.
    pub nr: u64,
    /// Its name (`KVM_HC_KICK_CPU`, `sched_op`).
    pub name: String,
    /// Calls.
    pub count: u64,
    /// Calls per second.
    pub per_s: f64,
}

/// One tracepoint's numbers for a vCPU or VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TpCount {
    /// `kvm:kvm_pio`.
    pub name: String,
    /// Hits counted by the kernel (exact, `read(2)` of the counter).
    pub count: u64,
    /// Samples received (less than `count` when `lost`, `corrupt` or `ring_errors` > 0).
    pub samples: u64,
    /// Samples lost because the ring buffer was full (`PERF_RECORD_LOST`).
    pub lost: u64,
    /// Corrupt records: records whose size or sample layout is inconsistent. When the size
    /// is, decoding of that drain stops there, and the samples after it are missing too.
    pub corrupt: u64,
    /// Drains that found the ring's `data_head - data_tail` larger than the ring (a corrupt
    /// ring head); the data in flight was skipped.
    pub ring_errors: u64,
}

/// What hvprof could do with one tracepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracepointStatus {
    /// `kvm:kvm_exit`.
    pub name: String,
    /// `sampled`, `counted`, `absent` or `failed`.
    pub state: String,
    /// Why absent/failed, or how many threads it was opened on.
    pub detail: String,
    /// Hits over the span, all threads together.
    pub count: u64,
    /// Samples lost over the span (ring full), all threads together.
    pub lost: u64,
    /// Corrupt records over the span, all threads together (see [`TpCount::corrupt`]).
    pub corrupt: u64,
    /// Corrupt ring heads over the span, all threads together (see [`TpCount::ring_errors`]).
    pub ring_errors: u64,
}

/// Xen hypercalls (guest side) from `xen:xen_mc_entry`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct XenHypercalls {
    /// `tracepoint xen:xen_mc_entry`, or `none`.
    pub source: String,
    /// Whether the tracepoint was opened.
    pub available: bool,
    /// Why not, when not.
    pub detail: Option<String>,
    /// Multicall entries counted.
    pub total: u64,
    /// By hypercall (`op`), most frequent first.
    pub by_op: Vec<HypercallStat>,
    /// Samples lost because a per-CPU ring was full (`PERF_RECORD_LOST`).
    pub lost: u64,
    /// Corrupt records (see [`TpCount::corrupt`]).
    pub corrupt: u64,
    /// Corrupt ring heads (see [`TpCount::ring_errors`]).
    pub ring_errors: u64,
}

/// What went wrong on one ring (or several, added up) over some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RingHealth {
    /// Records lost because the ring was full (sum of `PERF_RECORD_LOST` `lost` fields).
    pub(super) lost: u64,
    /// Corrupt records seen while decoding.
    pub(super) corrupt: u64,
    /// Drains that found a corrupt ring head (`data_head - data_tail` beyond the ring).
    pub(super) ring_errors: u64,
}

impl RingHealth {
    /// Adds `o` (saturating).
    pub(super) fn add(&mut self, o: RingHealth) {
        self.lost = self.lost.saturating_add(o.lost);
        self.corrupt = self.corrupt.saturating_add(o.corrupt);
        self.ring_errors = self.ring_errors.saturating_add(o.ring_errors);
    }

    /// Whether nothing was lost or corrupt.
    pub(super) fn is_clean(&self) -> bool {
        *self == RingHealth::default()
    }
}
