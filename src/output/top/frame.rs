//! The frame model of `hvprof top`: one refresh ([`TopFrame`]) per VM ([`TopVm`]) → thread
//! ([`TopThread`]), with the latest `hvprof stat` interval's exits ([`TopExits`]) and steal
//! ([`TopSteal`]). Plain data: built by [`super::TopState`], read by the renderers.

use serde::Serialize;

use crate::counters::Rate;
use crate::report::{ClassRow, SymbolRow};

/// Symbols kept per VM and per thread in a frame, most samples first.
pub const FRAME_SYMBOLS: usize = 20;

/// Exit reasons kept per VM in a frame, most frequent first.
pub const FRAME_REASONS: usize = 6;

/// Whether a VM's process is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// Its process exists.
    Running,
    /// Its process exited (or it dropped out of the session's machines); shown with zeros.
    Gone,
}

/// One refresh of `hvprof top`: the interval between two snapshots of the aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopFrame {
    /// Frame number, from 1.
    pub frame: u64,
    /// End of the interval, seconds since sampling started.
    pub time_s: f64,
    /// Length of the interval in seconds.
    pub interval_s: f64,
    /// Event sampled, e.g. `cpu-clock`.
    pub event: String,
    /// Sampling rate.
    pub rate: Rate,
    /// `threads` (`-p`) or `system-wide` (`-a`).
    pub mode: String,
    /// Whether `cpu_percent` is measured: the event's period is in ns (cpu-clock, task-clock),
    /// so a row's summed periods are its time on CPU. Otherwise rows carry `share` only.
    pub cpu_measured: bool,
    /// Samples of the interval, everything included.
    pub samples: u64,
    /// Records lost in the interval.
    pub lost: u64,
    /// VMs, most CPU first (most samples when CPU is not measured); gone VMs last.
    pub vms: Vec<TopVm>,
    /// Host processes that are not VMs (system-wide).
    pub host_other: Option<TopThread>,
    /// `hvprof stat`'s exit source of the latest interval (`StatReport::exit_source`), when
    /// its figures are attached.
    pub exit_source: Option<String>,
    /// Number of that stat interval.
    pub stat_interval: Option<u64>,
    /// Notes of the session and of the stat interval first seen in this frame.
    pub notes: Vec<String>,
}

/// One VM's interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopVm {
    /// VMM pid (KVM), -1 for a VM with no VMM process.
    pub pid: i32,
    /// VM name.
    pub name: String,
    /// Running or gone.
    pub state: VmState,
    /// vCPUs found.
    pub vcpu_count: usize,
    /// Time on CPU in the interval as a percentage of one CPU (above 100 for several busy
    /// vCPUs), when the frame's `cpu_measured`.
    pub cpu_percent: Option<f64>,
    /// Percent of the interval's samples (0–100).
    pub share: f64,
    /// Samples in the interval.
    pub samples: u64,
    /// Records lost in the interval.
    pub lost: u64,
    /// Class shares of the interval, percent of `samples`.
    pub classes: Vec<ClassRow>,
    /// Top symbols of the interval, percent of `samples`.
    pub top_symbols: Vec<SymbolRow>,
    /// vCPU threads, by index.
    pub vcpus: Vec<TopThread>,
    /// Other VMM threads with samples in the interval.
    pub other_threads: Vec<TopThread>,
    /// VM exits of the latest stat interval.
    pub exits: Option<TopExits>,
}

/// One thread's interval (a vCPU, another VMM thread, or the host's other processes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopThread {
    /// Thread id (-1 for the host's other processes).
    pub tid: i32,
    /// vCPU index.
    pub vcpu: Option<u32>,
    /// Thread name.
    pub name: String,
    /// Time on CPU in the interval, percent of one CPU, when measured.
    pub cpu_percent: Option<f64>,
    /// Percent of the interval's samples (0–100).
    pub share: f64,
    /// Samples in the interval.
    pub samples: u64,
    /// Class shares, percent of `samples`.
    pub classes: Vec<ClassRow>,
    /// Top symbols, percent of `samples`.
    pub top_symbols: Vec<SymbolRow>,
    /// Steal of the latest stat interval (vCPUs).
    pub steal: Option<TopSteal>,
    /// VM exits per second of the latest stat interval (vCPUs).
    pub exits_per_s: Option<f64>,
}

/// A VM's exits in the latest stat interval (`VmStat::exits`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopExits {
    /// The `source` field of the stat report (`tracepoint kvm:kvm_exit`, `debugfs`, `none`, ...).
    pub source: String,
    /// Exits counted.
    pub total: u64,
    /// Exits per second.
    pub per_s: f64,
    /// By reason, most frequent first.
    pub by_reason: Vec<TopReason>,
}

/// One exit reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopReason {
    /// Reason name (`HLT`, `IO_INSTRUCTION`, ...).
    pub name: String,
    /// Exits.
    pub count: u64,
    /// Per second.
    pub per_s: f64,
    /// Percent of the VM's exits.
    pub percent: f64,
}

/// A vCPU's steal in the latest stat interval (`VcpuStat::steal`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopSteal {
    /// The `source` field of the stat report (`schedstat`: run_delay of the vCPU thread).
    pub source: String,
    /// Runnable but not running, ms per second of wall time.
    pub ms_per_s: f64,
    /// The same as a percentage of wall time.
    pub percent: f64,
    /// Time on a CPU, percent of wall time.
    pub on_cpu_percent: f64,
}
