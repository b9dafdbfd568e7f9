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
pub mod exits;
pub mod hist;
pub mod names;
mod render;
pub mod steal;
pub mod tracefs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::discover::{self, Vm};
use crate::error::{Error, Result};
use crate::ring::RingBuffer;
use crate::sys::abi;
use crate::sys::perf::{zeroed_attr, PerfFd, Target};

pub use render::{format_ns, render_interval_line, render_text};

use decode::{records, TpRecord, STAT_SAMPLE_TYPE};
use exits::{covers_userspace_reason, ExitCounts, ExitTracker, Layouts, Tp};
use hist::{Hist, LatencySummary};
use steal::{GuestSteal, SchedStat, StealAcc, VcpuSteal};
use tracefs::{MountState, Tracepoint};

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
    /// Set to end the run early (Ctrl-C); checked every tick.
    pub stop: Arc<AtomicBool>,
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
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

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
    /// Samples received (may be less than `count` when `lost` > 0).
    pub samples: u64,
    /// Samples lost because the ring buffer was full.
    pub lost: u64,
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
}

// ---------------------------------------------------------------------------------------------
// Run-time state.

const TICK: Duration = Duration::from_millis(20);
/// Events newer than `now - SETTLE` may still be on their way into another ring.
const SETTLE_NS: u64 = 5_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    count: u64,
    samples: u64,
    lost: u64,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.count += o.count;
        self.samples += o.samples;
        self.lost += o.lost;
    }
}

#[derive(Debug)]
struct OpenTp {
    tp: Tp,
    fd: PerfFd,
    ring: Option<RingBuffer>,
    last_count: u64,
    /// Lost records since the last interval.
    lost: u64,
}

/// Per-span accumulation of one vCPU.
#[derive(Debug, Default, Clone)]
struct VcpuAcc {
    counts: ExitCounts,
    tally: BTreeMap<Tp, Tally>,
    steal: StealAcc,
}

#[derive(Debug)]
struct VcpuRt {
    index: u32,
    tid: Option<i32>,
    tps: Vec<OpenTp>,
    exited: bool,
    interval: VcpuAcc,
    total: VcpuAcc,
}

#[derive(Debug)]
struct VmRt {
    vm: Vm,
    vcpus: Vec<VcpuRt>,
    exited: bool,
    dbg_dir: Option<PathBuf>,
    dbg_start: Option<debugfs::Reading>,
    dbg_prev: Option<debugfs::Reading>,
    dbg_latest: Option<debugfs::Reading>,
}

#[derive(Debug, Default, Clone)]
struct XenAcc {
    by_op: BTreeMap<u32, u64>,
    count: u64,
}

#[derive(Debug)]
struct XenRt {
    fds: Vec<(PerfFd, RingBuffer)>,
    op: tracefs::Field,
    interval: XenAcc,
    total: XenAcc,
}

/// The source chosen for exit figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    KvmExit,
    ExitPath,
    Debugfs,
    None,
}

/// `tracepoint kvm:kvm_exit` etc.
const SRC_KVM_EXIT: &str = "tracepoint kvm:kvm_exit";
const SRC_EXIT_PATH: &str =
    "tracepoints kvm:kvm_userspace_exit+kvm:kvm_pio+kvm:kvm_mmio+kvm:kvm_hypercall";
const LAT_KVM_EXIT: &str = "kvm:kvm_exit -> next kvm:kvm_entry of the same vCPU thread";
const LAT_EXIT_PATH: &str = "round trip through the VMM: last kvm:kvm_pio/kvm_mmio/kvm_hypercall \
     before kvm:kvm_userspace_exit -> next kvm:kvm_fpu load (KVM_RUN re-entered); exits \
     handled inside the kernel are not timed";

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::KvmExit => SRC_KVM_EXIT,
            Source::ExitPath => SRC_EXIT_PATH,
            Source::Debugfs => "debugfs",
            Source::None => "none",
        }
    }
}

fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64),
        Err(_) => 0,
    }
}

/// Opens one tracepoint on `target` for `hvprof stat`: sampling every hit (`period 1`,
/// `TID | TIME | CPU | RAW`, `CLOCK_MONOTONIC` timestamps) when `sampled`, else counting only.
/// The event starts disabled.
///
/// # Errors
/// [`Error::PerfEventOpen`].
pub fn open_tracepoint(tp: &Tracepoint, target: Target, sampled: bool) -> Result<PerfFd> {
    let mut attr = zeroed_attr();
    attr.type_ = abi::TYPE_TRACEPOINT;
    attr.config = tp.format.id;
    if sampled {
        attr.sample_type = STAT_SAMPLE_TYPE;
        attr.__bindgen_anon_1.sample_period = 1;
        attr.set_use_clockid(1);
        attr.clockid = libc::CLOCK_MONOTONIC;
    }
    attr.set_disabled(1);
    PerfFd::open(&mut attr, target, &tp.full_name())
}

fn ring_pages(sampled_fds: usize) -> usize {
    // Total budget ~2048 pages (8 MiB) shared by every ring, 8..=64 pages each.
    let per = (2048 / sampled_fds.max(1)).clamp(8, 64);
    1usize << (usize::BITS - 1 - per.leading_zeros())
}

fn is_gone(e: &Error) -> bool {
    matches!(e, Error::PerfEventOpen { source, .. } if source.raw_os_error() == Some(libc::ESRCH))
}

fn os_msg(e: &Error) -> String {
    crate::error_chain(e)
}

/// Runs `hvprof stat`: finds the VMs, opens the sources, samples until `duration` or `stop`,
/// calls `on_interval` with each interval's report (when `interval` is set), and returns the
/// report of the whole run.
///
/// Missing sources (no tracefs, a tracepoint absent or refused, debugfs locked down) are not
/// errors: the report says which source each figure comes from, and `notes` say what was
/// missing. A VM that exits during the run keeps its figures up to then.
///
/// # Errors
/// [`Error::InvalidOption`] for an interval under 10 ms or a zero duration;
/// [`Error::NoSuchProcess`] / [`Error::NotAVm`] / [`Error::Read`] for a pid in `pids` that is
/// not an inspectable KVM VM; [`Error::Read`] when `proc_root` cannot be listed (`-a`).
pub fn run(opts: &StatOptions, on_interval: &mut dyn FnMut(&StatReport)) -> Result<StatReport> {
    if let Some(i) = opts.interval {
        if i < Duration::from_millis(10) {
            return Err(Error::InvalidOption(format!(
                "interval {i:?} is too short: at least 10 ms"
            )));
        }
    }
    if opts.duration == Some(Duration::ZERO) {
        return Err(Error::InvalidOption("duration must be > 0".into()));
    }
    let mut notes: Vec<String> = Vec::new();

    // debugfs (optional) and VMs.
    let kvm_dbg = match &opts.debugfs {
        Some(d) => {
            let root = if d.file_name().is_some_and(|n| n == "kvm") {
                d.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| d.clone())
            } else {
                d.clone()
            };
            match tracefs::ensure_mounted(&root, "debugfs", "kvm") {
                MountState::Present => {}
                MountState::Mounted => notes.push(format!("mounted debugfs at {}", root.display())),
                MountState::Absent(why) => notes.push(format!("debugfs: {why}")),
            }
            let k = debugfs::kvm_dir(d);
            k.is_dir().then_some(k)
        }
        None => None,
    };
    let vms: Vec<Vm> = if opts.pids.is_empty() {
        let v = discover::find_vms(&opts.proc_root, kvm_dbg.as_deref())?;
        if v.is_empty() {
            notes.push(format!(
                "no KVM VMs found under {} (no process holds an anon_inode:kvm-vm fd)",
                opts.proc_root.display()
            ));
        }
        v
    } else {
        opts.pids
            .iter()
            .map(|&p| discover::inspect(&opts.proc_root, kvm_dbg.as_deref(), p))
            .collect::<Result<_>>()?
    };

    // tracefs and tracepoints.
    let mut tp_status: Vec<TracepointStatus> = Vec::new();
    let mut tps: BTreeMap<Tp, Tracepoint> = BTreeMap::new();
    let mut layouts = Layouts::default();
    let tracefs_ok = match tracefs::ensure_mounted(&opts.tracefs, "tracefs", "events") {
        MountState::Present => true,
        MountState::Mounted => {
            notes.push(format!("mounted tracefs at {}", opts.tracefs.display()));
            true
        }
        MountState::Absent(why) => {
            notes.push(format!(
                "tracefs unavailable, no tracepoints: {why}; exits from debugfs only"
            ));
            false
        }
    };
    for tp in Tp::ALL {
        let loaded = if tracefs_ok {
            Tracepoint::load(&opts.tracefs, "kvm", tp.name())
                .and_then(|t| layouts.add(tp, &t.format).map(|()| t))
        } else {
            Err("tracefs unavailable".to_string())
        };
        match loaded {
            Ok(t) => {
                tps.insert(tp, t);
            }
            Err(why) => tp_status.push(TracepointStatus {
                name: tp.full_name(),
                state: "absent".into(),
                detail: why,
                count: 0,
            }),
        }
    }
    if tracefs_ok && tps.is_empty() {
        notes.push("no kvm:* tracepoints in tracefs: is the kvm module loaded?".into());
    }

    // Open per vCPU thread.
    let sampled_fds = vms
        .iter()
        .flat_map(|v| &v.vcpus)
        .filter(|c| c.tid.is_some())
        .count()
        * tps.keys().filter(|t| t.sampled()).count();
    let pages = ring_pages(sampled_fds);
    let mut open_errors: BTreeMap<Tp, String> = BTreeMap::new();
    let mut opened: BTreeMap<Tp, usize> = BTreeMap::new();
    let mut rts: Vec<VmRt> = Vec::new();
    for vm in vms {
        let mut vcpus = Vec::new();
        for c in &vm.vcpus {
            let mut rt = VcpuRt {
                index: c.index,
                tid: c.tid,
                tps: Vec::new(),
                exited: false,
                interval: VcpuAcc::default(),
                total: VcpuAcc::default(),
            };
            match c.tid {
                None => notes.push(format!(
                    "VM {} (pid {}): no thread found for vCPU {}: no figures for it",
                    vm.name, vm.pid, c.index
                )),
                Some(tid) => {
                    for (&tp, t) in &tps {
                        match open_tracepoint(t, Target::Thread(tid), tp.sampled()) {
                            Ok(fd) => {
                                let ring = if tp.sampled() {
                                    match RingBuffer::map(&fd, pages) {
                                        Ok(r) => Some(r),
                                        Err(e) => {
                                            open_errors.entry(tp).or_insert_with(|| {
                                                format!("ring buffer: {}; counted only", os_msg(&e))
                                            });
                                            None
                                        }
                                    }
                                } else {
                                    None
                                };
                                *opened.entry(tp).or_default() += 1;
                                rt.tps.push(OpenTp {
                                    tp,
                                    fd,
                                    ring,
                                    last_count: 0,
                                    lost: 0,
                                });
                            }
                            Err(e) if is_gone(&e) => {
                                rt.exited = true;
                                break;
                            }
                            Err(e) => {
                                open_errors.entry(tp).or_insert_with(|| os_msg(&e));
                            }
                        }
                    }
                }
            }
            vcpus.push(rt);
        }
        let tasks: Vec<i32> = std::iter::once(vm.pid)
            .chain(vm.threads.iter().map(|t| t.tid))
            .collect();
        let dbg_dir = kvm_dbg
            .as_deref()
            .and_then(|k| debugfs::vm_dirs(k, &tasks, &vm.vm_fds).into_iter().next());
        rts.push(VmRt {
            vm,
            vcpus,
            exited: false,
            dbg_dir,
            dbg_start: None,
            dbg_prev: None,
            dbg_latest: None,
        });
    }
    let n_threads = rts
        .iter()
        .flat_map(|v| &v.vcpus)
        .filter(|c| c.tid.is_some())
        .count();
    for &tp in tps.keys() {
        let n = opened.get(&tp).copied().unwrap_or(0);
        let (state, detail) = match (n, open_errors.get(&tp)) {
            (0, Some(e)) => ("failed", e.clone()),
            (0, None) if n_threads == 0 => ("failed", "no vCPU thread to open it on".into()),
            (0, None) => ("failed", "not opened".into()),
            (n, e) => (
                if tp.sampled() && e.is_none() {
                    "sampled"
                } else {
                    "counted"
                },
                match e {
                    Some(e) => format!("{n} of {n_threads} vCPU threads; {e}"),
                    None => format!("{n} vCPU threads"),
                },
            ),
        };
        tp_status.push(TracepointStatus {
            name: tp.full_name(),
            state: state.into(),
            detail,
            count: 0,
        });
    }
    tp_status.sort_by_key(|s| Tp::ALL.iter().position(|t| t.full_name() == s.name));

    // Xen (guest side).
    let mut xen_status = XenHypercalls {
        source: "none".into(),
        available: false,
        detail: None,
        total: 0,
        by_op: Vec::new(),
    };
    let mut xen: Option<XenRt> = None;
    if tracefs_ok {
        match Tracepoint::load(&opts.tracefs, "xen", "xen_mc_entry") {
            Err(why) => {
                xen_status.detail = Some(format!("{why}: not a Xen PV guest, no hypercall counts"))
            }
            Ok(t) => match t.format.field("op").cloned() {
                None => xen_status.detail = Some("xen:xen_mc_entry has no `op` field".into()),
                Some(op) => {
                    let mut fds = Vec::new();
                    let mut err = None;
                    for cpu in crate::session::online_cpus(Path::new("/")) {
                        match open_tracepoint(&t, Target::Cpu(cpu), true)
                            .and_then(|fd| RingBuffer::map(&fd, 16).map(|r| (fd, r)))
                        {
                            Ok(x) => fds.push(x),
                            Err(e) => err = Some(os_msg(&e)),
                        }
                    }
                    if fds.is_empty() {
                        xen_status.detail = Some(format!(
                            "xen:xen_mc_entry could not be opened: {}",
                            err.unwrap_or_default()
                        ));
                    } else {
                        xen_status.source = "tracepoint xen:xen_mc_entry".into();
                        xen_status.available = true;
                        xen_status.detail = err.map(|e| format!("some CPUs failed: {e}"));
                        xen = Some(XenRt {
                            fds,
                            op,
                            interval: XenAcc::default(),
                            total: XenAcc::default(),
                        });
                    }
                }
            },
        }
    } else {
        xen_status.detail = Some("tracefs unavailable".into());
    }

    // Baselines and enable.
    let mut tracker = ExitTracker::new(layouts);
    let hz = steal::user_hz();
    let stat_path = opts.proc_root.join("stat");
    let read_proc_stat = || {
        std::fs::read_to_string(&stat_path)
            .map(|t| steal::parse_proc_stat_steal(&t))
            .ok()
    };
    let proc_stat_start = read_proc_stat();
    if proc_stat_start.is_none() {
        notes.push(format!(
            "cannot read {}: no guest-view steal",
            stat_path.display()
        ));
    }
    let mut proc_stat_prev = proc_stat_start.clone();
    let mut dbg_refusal_noted = false;
    for vm in &mut rts {
        if let Some(d) = &vm.dbg_dir {
            match debugfs::read_dir_stats(d) {
                Ok(r) => {
                    vm.dbg_start = Some(r.clone());
                    vm.dbg_prev = Some(r);
                }
                Err(e) => notes.push(format!("debugfs {}: {e}", d.display())),
            }
        }
        for c in &mut vm.vcpus {
            if let Some(tid) = c.tid {
                if let Ok(s) = SchedStat::read(&opts.proc_root, vm.vm.pid, tid) {
                    c.interval.steal.update(s);
                    c.total.steal.update(s);
                }
            }
            for t in &c.tps {
                t.fd.enable()?;
            }
        }
    }
    if let Some(x) = &xen {
        for (fd, _) in &x.fds {
            fd.enable()?;
        }
    }

    let t0 = Instant::now();
    let mut interval_start = t0;
    let mut next_interval = opts.interval.map(|i| t0 + i);
    let mut interval_no = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut vm_gone_noted = vec![false; rts.len()];
    let ctx = BuildCtx {
        tp_status: tp_status.clone(),
        xen_status: xen_status.clone(),
    };
    let mut cum_tp_counts: BTreeMap<Tp, u64> = BTreeMap::new();

    loop {
        let now = Instant::now();
        let stop = opts.stop.load(Ordering::Relaxed)
            || opts.duration.is_some_and(|d| now >= t0 + d)
            || (!rts.is_empty() && rts.iter().all(|v| v.exited));
        let interval_due = next_interval.is_some_and(|n| now >= n);
        // Drain rings.
        let watermark = if stop {
            for vm in &rts {
                for c in &vm.vcpus {
                    for t in &c.tps {
                        let _ = t.fd.disable();
                    }
                }
            }
            u64::MAX
        } else {
            monotonic_ns().saturating_sub(SETTLE_NS)
        };
        for vm in &mut rts {
            for c in &mut vm.vcpus {
                for t in &mut c.tps {
                    if let Some(ring) = &mut t.ring {
                        buf.clear();
                        if let Err(e) = ring.drain_into(&mut buf) {
                            notes.push(os_msg(&e));
                        }
                        for r in records(&buf) {
                            match r {
                                TpRecord::Sample(s) => tracker.push(t.tp, &s),
                                TpRecord::Lost(n) => t.lost += n,
                                TpRecord::Other(_) | TpRecord::Corrupt => {}
                            }
                        }
                    }
                }
            }
        }
        if let Some(x) = &mut xen {
            for (_, ring) in &mut x.fds {
                buf.clear();
                let _ = ring.drain_into(&mut buf);
                for r in records(&buf) {
                    if let TpRecord::Sample(s) = r {
                        if let Some(op) = x.op.read_u32(s.raw) {
                            *x.interval.by_op.entry(op).or_default() += 1;
                            *x.total.by_op.entry(op).or_default() += 1;
                        }
                        x.interval.count += 1;
                        x.total.count += 1;
                    }
                }
            }
        }
        tracker.flush(watermark);
        // Steal and liveness.
        let elapsed = now.duration_since(t0).as_secs_f64();
        for (vi, vm) in rts.iter_mut().enumerate() {
            if !vm.exited && !opts.proc_root.join(vm.vm.pid.to_string()).exists() {
                vm.exited = true;
            }
            for c in &mut vm.vcpus {
                let Some(tid) = c.tid else { continue };
                if c.exited {
                    continue;
                }
                match SchedStat::read(&opts.proc_root, vm.vm.pid, tid) {
                    Ok(s) => {
                        c.interval.steal.update(s);
                        c.total.steal.update(s);
                    }
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {}
                    Err(_) => {
                        c.exited = true;
                        if !vm.exited {
                            notes.push(format!(
                                "VM {} (pid {}): vCPU {} thread {tid} exited after {elapsed:.2} s",
                                vm.vm.name, vm.vm.pid, c.index
                            ));
                        }
                    }
                }
            }
            if vm.exited && !vm_gone_noted[vi] {
                vm_gone_noted[vi] = true;
                notes.push(format!(
                    "VM {} (pid {}) exited after {elapsed:.2} s: its figures cover the time until then",
                    vm.vm.name, vm.vm.pid
                ));
            }
        }

        if interval_due || stop {
            // Counts and per-thread results into the accumulators.
            for vm in &mut rts {
                for c in &mut vm.vcpus {
                    if let Some(tid) = c.tid {
                        let counts = tracker.take(tid);
                        c.interval.counts.merge(&counts);
                        c.total.counts.merge(&counts);
                    }
                    for t in &mut c.tps {
                        let count = t.fd.read_count().unwrap_or(t.last_count);
                        let d = Tally {
                            count: count.saturating_sub(t.last_count),
                            samples: 0,
                            lost: std::mem::take(&mut t.lost),
                        };
                        t.last_count = count;
                        *cum_tp_counts.entry(t.tp).or_default() += d.count;
                        c.interval.tally.entry(t.tp).or_default().add(d);
                        c.total.tally.entry(t.tp).or_default().add(d);
                    }
                    for acc in [&mut c.interval, &mut c.total] {
                        let samples: Vec<(Tp, u64)> =
                            acc.counts.samples.iter().map(|(k, v)| (*k, *v)).collect();
                        for (tp, n) in samples {
                            acc.tally.entry(tp).or_default().samples = n;
                        }
                    }
                }
            }
            // Source: decided on everything seen so far.
            let exit_path_fired = [Tp::Pio, Tp::Mmio, Tp::Hypercall, Tp::UserspaceExit]
                .iter()
                .any(|t| cum_tp_counts.get(t).copied().unwrap_or(0) > 0);
            let dbg_exits = rts.iter().any(|v| {
                v.dbg_start
                    .as_ref()
                    .is_some_and(|r| r.values.contains_key("exits"))
            });
            let source = if cum_tp_counts.get(&Tp::Exit).copied().unwrap_or(0) > 0 {
                Source::KvmExit
            } else if exit_path_fired {
                Source::ExitPath
            } else if dbg_exits {
                Source::Debugfs
            } else {
                Source::None
            };
            let proc_stat_now = read_proc_stat();
            for vm in &mut rts {
                if let Some(d) = &vm.dbg_dir {
                    if let Ok(r) = debugfs::read_dir_stats(d) {
                        if !r.refused.is_empty() && !dbg_refusal_noted {
                            dbg_refusal_noted = true;
                            notes.push(format!(
                                "debugfs statistics in {} refused ({}: {}); kernel lockdown? (vcpuN/pid stays readable)",
                                d.display(),
                                r.refused[0].0,
                                r.refused[0].1
                            ));
                        }
                        if vm.dbg_start.is_none() {
                            vm.dbg_start = Some(r.clone());
                            vm.dbg_prev = Some(r.clone());
                        }
                        vm.dbg_latest = Some(r);
                    }
                }
            }
            // The last, partial interval is reported too (as `perf stat -I` does).
            let span = now.duration_since(interval_start);
            let last_partial = stop && opts.interval.is_some() && span >= Duration::from_millis(1);
            if (interval_due && !stop) || last_partial {
                interval_no += 1;
                let report = build_report(
                    &ctx,
                    &mut rts,
                    source,
                    Some(interval_no),
                    interval_start.duration_since(t0),
                    span,
                    proc_stat_prev.as_deref().zip(proc_stat_now.as_deref()),
                    hz,
                    xen.as_mut(),
                    &notes,
                    &cum_tp_counts,
                    true,
                );
                on_interval(&report);
                interval_start = now;
                proc_stat_prev = proc_stat_now.clone();
                next_interval = opts.interval.map(|i| {
                    let mut n = next_interval.unwrap_or(now) + i;
                    while n <= now {
                        n += i;
                    }
                    n
                });
            }
            if stop {
                let report = build_report(
                    &ctx,
                    &mut rts,
                    source,
                    None,
                    Duration::ZERO,
                    now.duration_since(t0),
                    proc_stat_start.as_deref().zip(proc_stat_now.as_deref()),
                    hz,
                    xen.as_mut(),
                    &notes,
                    &cum_tp_counts,
                    false,
                );
                return Ok(report);
            }
        }
        // Sleep until the next tick (or sooner, for the interval or the end).
        let mut wake = Instant::now() + TICK;
        if let Some(n) = next_interval {
            wake = wake.min(n);
        }
        if let Some(d) = opts.duration {
            wake = wake.min(t0 + d);
        }
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
    }
}

/// Per-CPU `/proc/stat` steal readings at the start and end of a span.
type StealSpan<'a> = (&'a [(u32, u64)], &'a [(u32, u64)]);

struct BuildCtx {
    tp_status: Vec<TracepointStatus>,
    xen_status: XenHypercalls,
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    ctx: &BuildCtx,
    rts: &mut [VmRt],
    source: Source,
    interval: Option<u64>,
    start: Duration,
    span: Duration,
    proc_stat: Option<StealSpan<'_>>,
    hz: u64,
    xen: Option<&mut XenRt>,
    notes: &[String],
    cum_tp_counts: &BTreeMap<Tp, u64>,
    is_interval: bool,
) -> StatReport {
    let wall_ns = span.as_nanos().max(1) as u64;
    let tick_ms = TICK.as_secs_f64() * 1000.0;
    let mut tp_totals: BTreeMap<Tp, u64> = BTreeMap::new();
    let mut vms = Vec::new();
    for vm in rts.iter_mut() {
        let mut vm_acc = VcpuAcc::default();
        let mut vcpus = Vec::new();
        for c in &mut vm.vcpus {
            let (counts, tally, steal) = if is_interval {
                (
                    std::mem::take(&mut c.interval.counts),
                    std::mem::take(&mut c.interval.tally),
                    c.tid.map(|_| c.interval.steal.take(wall_ns, tick_ms)),
                )
            } else {
                (
                    c.total.counts.clone(),
                    c.total.tally.clone(),
                    c.tid.map(|_| c.total.steal.clone().take(wall_ns, tick_ms)),
                )
            };
            for (tp, t) in &tally {
                *tp_totals.entry(*tp).or_default() += t.count;
                vm_acc.tally.entry(*tp).or_default().add(*t);
            }
            vm_acc.counts.merge(&counts);
            vcpus.push(VcpuStat {
                index: c.index,
                tid: c.tid,
                exited: c.exited,
                exits: exit_stat(source, &counts, &tally, wall_ns),
                steal,
            });
        }
        let before = if is_interval {
            vm.dbg_prev.as_ref()
        } else {
            vm.dbg_start.as_ref()
        };
        let dbg = match (&vm.dbg_dir, before, &vm.dbg_latest) {
            (Some(d), Some(before), Some(latest)) => {
                Some(debugfs::diff(d, before, latest, wall_ns))
            }
            _ => None,
        };
        if is_interval {
            vm.dbg_prev = vm.dbg_latest.clone();
        }
        let mut exits = exit_stat(source, &vm_acc.counts, &vm_acc.tally, wall_ns);
        if source == Source::Debugfs {
            if let Some(d) = &dbg {
                exits = debugfs_exit_stat(d, wall_ns);
            }
        }
        vms.push(VmStat {
            pid: vm.vm.pid,
            name: vm.vm.name.clone(),
            exited: vm.exited,
            exits,
            vcpus,
            debugfs: dbg,
        });
    }
    let mut tracepoints = ctx.tp_status.clone();
    for s in &mut tracepoints {
        if let Some(tp) = Tp::ALL.iter().find(|t| t.full_name() == s.name) {
            s.count = tp_totals.get(tp).copied().unwrap_or(0);
        }
    }
    let mut notes = notes.to_vec();
    if !is_interval {
        let fired = |t: Tp| cum_tp_counts.get(&t).copied().unwrap_or(0) > 0;
        let opened = |t: Tp| cum_tp_counts.contains_key(&t);
        if opened(Tp::Exit) && !fired(Tp::Exit) {
            let others: Vec<String> = [Tp::UserspaceExit, Tp::Pio, Tp::Mmio, Tp::Hypercall]
                .into_iter()
                .filter(|t| fired(*t))
                .map(Tp::full_name)
                .collect();
            if !others.is_empty() {
                notes.insert(
                    0,
                    format!(
                        "kvm:kvm_exit never fired on this host (PVM / nested): exits counted from {} \
                         (a lower bound: exits handled inside the kernel without these \
                         tracepoints are not seen); latency = {LAT_EXIT_PATH}",
                        others.join(" + ")
                    ),
                );
            } else if source == Source::Debugfs {
                notes.insert(
                    0,
                    "kvm:kvm_exit and the exit-path tracepoints never fired: exits from debugfs"
                        .into(),
                );
            } else {
                let dbg = if rts.iter().any(|v| v.dbg_dir.is_some()) {
                    "debugfs exit counters unreadable"
                } else {
                    "no KVM debugfs directory for the VM"
                };
                notes.insert(
                    0,
                    format!(
                        "no exits observed from any source: kvm:kvm_exit and the exit-path \
                         tracepoints never fired; {dbg}"
                    ),
                );
            }
        } else if !opened(Tp::Exit) && source == Source::ExitPath {
            notes.insert(
                0,
                "kvm:kvm_exit unavailable: exits counted from the exit-path tracepoints (a lower bound)"
                    .into(),
            );
        }
    }
    let mut xen_hypercalls = ctx.xen_status.clone();
    if let Some(x) = xen {
        let acc = if is_interval {
            std::mem::take(&mut x.interval)
        } else {
            x.total.clone()
        };
        let secs = wall_ns as f64 / 1e9;
        xen_hypercalls.total = acc.count;
        xen_hypercalls.by_op = acc
            .by_op
            .iter()
            .map(|(&op, &n)| HypercallStat {
                nr: u64::from(op),
                name: names::xen_hypercall_name(op),
                count: n,
                per_s: n as f64 / secs,
            })
            .collect();
        xen_hypercalls
            .by_op
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.nr.cmp(&b.nr)));
    }
    StatReport {
        interval,
        start_s: start.as_secs_f64(),
        duration_s: span.as_secs_f64(),
        exit_source: source.name().to_string(),
        vms,
        guest_steal: proc_stat.map(|(a, b)| steal::guest_steal(a, b, wall_ns, hz)),
        xen_hypercalls,
        tracepoints,
        notes,
    }
}

fn reason_row(
    isa: Option<String>,
    code: Option<u64>,
    name: String,
    count: u64,
    total: u64,
    secs: f64,
    latency: Option<&Hist>,
) -> ReasonStat {
    ReasonStat {
        isa,
        code,
        name,
        count,
        per_s: count as f64 / secs,
        percent: if total > 0 {
            count as f64 * 100.0 / total as f64
        } else {
            0.0
        },
        latency: latency.and_then(Hist::summary),
    }
}

fn exit_stat(
    source: Source,
    counts: &ExitCounts,
    tally: &BTreeMap<Tp, Tally>,
    wall_ns: u64,
) -> ExitStat {
    let secs = wall_ns.max(1) as f64 / 1e9;
    let count_of = |tp: Tp| tally.get(&tp).map_or(0, |t| t.count);
    let userspace_hist = |reason: u32| counts.userspace.get(&(reason, 0)).map(|c| &c.latency);
    let mut by_reason: Vec<ReasonStat>;
    let total;
    let (latency_source, latency) = match source {
        Source::KvmExit => {
            total = count_of(Tp::Exit).max(counts.kvm_exits());
            by_reason = counts
                .by_reason
                .iter()
                .map(|(&(isa, reason), c)| {
                    reason_row(
                        Some(names::isa_name(isa)),
                        Some(u64::from(reason)),
                        names::exit_reason_name(isa, reason),
                        c.count,
                        total,
                        secs,
                        Some(&c.latency),
                    )
                })
                .collect();
            (Some(LAT_KVM_EXIT.to_string()), counts.latency.summary())
        }
        Source::ExitPath => {
            // pio and hypercalls: one tracepoint hit per exit, so the exact counter; mmio
            // needs the samples (a userspace read fires twice).
            let pio = count_of(Tp::Pio).max(counts.pio.values().sum());
            let hc = count_of(Tp::Hypercall).max(counts.hypercalls.values().sum());
            let mmio: u64 = counts.mmio.values().sum::<u64>() + counts.mmio_other;
            let other: u64 = counts
                .userspace
                .iter()
                .filter(|((r, e), _)| !covers_userspace_reason(*r, *e))
                .map(|(_, c)| c.count)
                .sum();
            total = pio + hc + mmio + other;
            by_reason = Vec::new();
            for (name, n, reason) in [
                ("PIO", pio, names::KVM_EXIT_IO),
                ("MMIO", mmio, names::KVM_EXIT_MMIO),
                ("HYPERCALL", hc, names::KVM_EXIT_HYPERCALL),
            ] {
                if n > 0 {
                    by_reason.push(reason_row(
                        None,
                        None,
                        name.into(),
                        n,
                        total,
                        secs,
                        userspace_hist(reason),
                    ));
                }
            }
            for (&(r, e), c) in counts
                .userspace
                .iter()
                .filter(|((r, e), _)| !covers_userspace_reason(*r, *e))
            {
                by_reason.push(reason_row(
                    None,
                    Some(u64::from(r)),
                    names::userspace_exit_name(r, e),
                    c.count,
                    total,
                    secs,
                    Some(&c.latency),
                ));
            }
            (
                Some(LAT_EXIT_PATH.to_string()),
                counts.userspace_latency.summary(),
            )
        }
        Source::Debugfs | Source::None => {
            total = 0;
            by_reason = Vec::new();
            (None, None)
        }
    };
    by_reason.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    let mut userspace_exits: Vec<ReasonStat> = counts
        .userspace
        .iter()
        .map(|(&(r, e), c)| {
            reason_row(
                None,
                Some(u64::from(r)),
                names::userspace_exit_name(r, e),
                c.count,
                counts.userspace.values().map(|c| c.count).sum(),
                secs,
                Some(&c.latency),
            )
        })
        .collect();
    userspace_exits.sort_by_key(|r| std::cmp::Reverse(r.count));
    let mut pio: Vec<PioStat> = counts
        .pio
        .iter()
        .map(|(&(port, write, size), &n)| PioStat {
            port,
            dir: if write { "out" } else { "in" }.into(),
            size,
            count: n,
            per_s: n as f64 / secs,
        })
        .collect();
    pio.sort_by_key(|r| std::cmp::Reverse(r.count));
    let mut mmio: Vec<MmioStat> = counts
        .mmio
        .iter()
        .map(|(&(gpa, write), &n)| MmioStat {
            gpa,
            dir: if write { "write" } else { "read" }.into(),
            count: n,
            per_s: n as f64 / secs,
        })
        .collect();
    mmio.sort_by_key(|r| std::cmp::Reverse(r.count));
    let mut hypercalls: Vec<HypercallStat> = counts
        .hypercalls
        .iter()
        .map(|(&nr, &n)| HypercallStat {
            nr,
            name: names::kvm_hypercall_name(nr),
            count: n,
            per_s: n as f64 / secs,
        })
        .collect();
    hypercalls.sort_by_key(|r| std::cmp::Reverse(r.count));
    let tracepoints = Tp::ALL
        .iter()
        .filter_map(|tp| {
            tally.get(tp).map(|t| TpCount {
                name: tp.full_name(),
                count: t.count,
                samples: t.samples,
                lost: t.lost,
            })
        })
        .collect();
    ExitStat {
        source: source.name().to_string(),
        total,
        per_s: total as f64 / secs,
        by_reason,
        latency_source,
        latency,
        unmatched: counts.unmatched_exits,
        userspace_exits,
        pio,
        mmio,
        mmio_other: counts.mmio_other,
        hypercalls,
        tracepoints,
    }
}

/// Exit figures from KVM's debugfs counters (per VM only).
fn debugfs_exit_stat(d: &debugfs::DebugfsStats, wall_ns: u64) -> ExitStat {
    let secs = wall_ns.max(1) as f64 / 1e9;
    let total = d
        .counters
        .iter()
        .find(|c| c.name == "exits")
        .map_or(0, |c| c.delta);
    let mut by_reason: Vec<ReasonStat> = d
        .counters
        .iter()
        .filter(|c| c.name.ends_with("_exits") && c.delta > 0)
        .map(|c| reason_row(None, None, c.name.clone(), c.delta, total, secs, None))
        .collect();
    by_reason.sort_by_key(|r| std::cmp::Reverse(r.count));
    ExitStat {
        source: "debugfs".into(),
        total,
        per_s: total as f64 / secs,
        by_reason,
        latency_source: None,
        latency: None,
        unmatched: 0,
        userspace_exits: Vec::new(),
        pio: Vec::new(),
        mmio: Vec::new(),
        mmio_other: 0,
        hypercalls: Vec::new(),
        tracepoints: Vec::new(),
    }
}

/// Builds the exit figures of one span from already-decoded counts (no IO): what [`run`]
/// reports for a vCPU, exposed for replaying recorded samples. `tp_counts` are the exact
/// tracepoint hit counts (`read(2)` of the counters); pass the sample counts when replaying.
pub fn exit_stat_from_counts(
    counts: &ExitCounts,
    tp_counts: &BTreeMap<Tp, u64>,
    wall_ns: u64,
) -> ExitStat {
    let tally: BTreeMap<Tp, Tally> = Tp::ALL
        .iter()
        .map(|&tp| {
            let samples = counts.samples.get(&tp).copied().unwrap_or(0);
            (
                tp,
                Tally {
                    count: tp_counts.get(&tp).copied().unwrap_or(samples),
                    samples,
                    lost: 0,
                },
            )
        })
        .collect();
    let fired = |tp: Tp| tally.get(&tp).is_some_and(|t| t.count > 0);
    let source = if fired(Tp::Exit) {
        Source::KvmExit
    } else if [Tp::Pio, Tp::Mmio, Tp::Hypercall, Tp::UserspaceExit]
        .into_iter()
        .any(fired)
    {
        Source::ExitPath
    } else {
        Source::None
    };
    exit_stat(source, counts, &tally, wall_ns)
}
