//! `hvprof stat`: the hypervisor's own costs — VM exits, exit latency, steal time, hypercalls.
//!
//! The equivalents of `perf kvm stat`, the BPF book's `kvmexits` and `cpustolen`, and
//! `xenhyper`, through `perf_event_open(2)` alone (no BPF). Input: [`StatOptions`] (which VMs,
//! for how long, where tracefs/debugfs/proc are); output: a [`StatReport`] per interval and
//! one for the whole run, each figure tagged with its source.
//!
//! Sources, best first:
//!
//! * **VM exits by reason, exit latency** — tracepoints `kvm:kvm_exit` and `kvm:kvm_entry`,
//!   opened per vCPU thread (`PERF_TYPE_TRACEPOINT`, `config` = tracefs id, sampling every
//!   hit with `TID | TIME | CPU | RAW`; field offsets from each tracepoint's tracefs `format`
//!   file). Reason names from the kernel's `VMX_EXIT_REASONS` / `SVM_EXIT_REASONS`, chosen by
//!   the `isa` field ([`names`]). Latency is exit → next entry of the same thread.
//! * When `kvm_exit` never fires (PVM, some nested hosts) — the exit-path tracepoints that do:
//!   `kvm:kvm_pio`, `kvm:kvm_mmio`, `kvm:kvm_hypercall`, `kvm:kvm_userspace_exit` (and
//!   `kvm:kvm_fpu` to time the round trip through the VMM); see [`exits`].
//! * KVM's debugfs counters (`/sys/kernel/debug/kvm/PID-FD/exits`, `io_exits`, ...) as
//!   rates, when the kernel lets us read them ([`debugfs`]).
//! * **Steal** — `run_delay` of each vCPU thread from `/proc/PID/task/TID/schedstat` (host
//!   view) and the `steal` column of `/proc/stat` (guest view) ([`steal`]).
//! * **Xen hypercalls** (inside a Xen PV guest) — `xen:xen_mc_entry` per CPU, by `op`.
//!
//! Records the rings could not deliver are never dropped silently: samples lost (ring full),
//! corrupt records and corrupt ring heads are counted per tracepoint (`lost`, `corrupt`,
//! `ring_errors` in [`TpCount`], [`TracepointStatus`] and [`XenHypercalls`]) and explained in a
//! note.
//!
//! Layout: `setup.rs` and `xen.rs` open the sources, `run.rs` runs the steps, `drain.rs`
//! decodes the rings, `vm.rs` keeps per-VM state and accounting, `interval.rs` closes spans
//! into reports, `source.rs` chooses and explains the exit source, `figures.rs` computes exit
//! figures, `report.rs` holds the report types and `render.rs` renders them.
//!
//! ```no_run
//! # fn main() -> hvprof::Result<()> {
//! use hvprof::stat::{run, render_interval_line, render_text, StatOptions};
//! use std::time::Duration;
//! let opts = StatOptions {
//!     duration: Some(Duration::from_secs(2)),
//!     interval: Some(Duration::from_millis(500)),
//!     ..StatOptions::default()
//! };
//! let report = run(&opts, &mut |r| println!("{}", render_interval_line(r)))?;
//! print!("{}", render_text(&report));
//! # Ok(()) }
//! ```

pub mod debugfs;
pub mod decode;
mod drain;
pub mod exits;
mod figures;
pub mod hist;
mod interval;
pub mod names;
mod render;
mod report;
mod run;
mod setup;
mod source;
pub mod steal;
pub mod tracefs;
mod vm;
mod xen;

use std::path::PathBuf;
use std::time::Duration;

pub use figures::exit_stat_from_counts;
pub use render::{format_ns, render_interval_line, render_text};
pub use report::{
    ExitStat, HypercallStat, MmioStat, PioStat, ReasonStat, StatReport, TpCount, TracepointStatus,
    VcpuStat, VmStat, XenHypercalls,
};
pub use run::run;
pub use setup::open_tracepoint;

/// What `hvprof stat` observes and for how long.
#[derive(Debug, Clone)]
pub struct StatOptions {
    /// VMM process ids; empty = every KVM VM found under `proc_root` (`-a`).
    pub pids: Vec<i32>,
    /// Stop after this long (`--duration`); `None` = until `stop` is set.
    pub duration: Option<Duration>,
    /// Report every this often (`-I`); at least 10 ms.
    pub interval: Option<Duration>,
    /// tracefs mount point (`/sys/kernel/tracing`). Mounted by hvprof when it is the default,
    /// absent, and we are root.
    pub tracefs: PathBuf,
    /// debugfs mount point (`/sys/kernel/debug`) or its `kvm` directory; `None` = do not use
    /// debugfs. Mounted by hvprof when it is the default, absent, and we are root.
    pub debugfs: Option<PathBuf>,
    /// procfs root (`/proc`; a fake tree in tests).
    pub proc_root: PathBuf,
    /// The run's stop token (Ctrl-C, a caller on another thread); checked every tick.
    pub stop: hvprof_rt::StopToken,
}

impl Default for StatOptions {
    fn default() -> Self {
        StatOptions {
            pids: Vec::new(),
            duration: None,
            interval: None,
            tracefs: PathBuf::from(tracefs::DEFAULT_TRACEFS),
            debugfs: Some(PathBuf::from(tracefs::DEFAULT_DEBUGFS)),
            proc_root: PathBuf::from("/proc"),
            stop: hvprof_rt::StopToken::new(),
        }
    }
}
