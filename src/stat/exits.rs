//! IO-free VM-exit accounting from tracepoint samples.
//!
//! Stage: tracepoint samples (decoded by [`super::decode`], fields located by
//! [`super::tracefs`]) → per-vCPU counts and latency histograms. Input: [`TpSample`]s tagged
//! with the tracepoint they came from; output: [`ExitCounts`] per thread.
//!
//! Two accountings run side by side on the same thread's events, in time order:
//!
//! * **kvm_exit → kvm_entry** (the `perf kvm stat` / `kvmexits` method): each `kvm:kvm_exit`
//!   opens an exit with its reason (`isa` + `exit_reason`); the next `kvm:kvm_entry` of the
//!   same thread closes it, and the difference is that exit's latency. An exit followed by
//!   another exit (a lost entry) is counted but gets no latency.
//! * **exit-path tracepoints** for hosts where `kvm_exit`/`kvm_entry` never fire (PVM,
//!   some nested setups): `kvm:kvm_pio`, `kvm:kvm_mmio` and `kvm:kvm_hypercall` fire while
//!   KVM handles an exit, `kvm:kvm_userspace_exit` when `KVM_RUN` returns to the VMM, and
//!   `kvm:kvm_fpu` (load) when the VMM calls `KVM_RUN` again. Exits are counted as one per
//!   pio, per mmio access (not the completion of a read that userspace satisfied, which
//!   fires a second `kvm_mmio`), per hypercall, plus exits to userspace for other reasons.
//!   The latency of an exit to userspace is from the last exit-path event before the
//!   `kvm_userspace_exit` to the next `kvm_fpu` load: the whole round trip through the VMM
//!   except the hardware exit and entry themselves.

use std::collections::BTreeMap;

use super::decode::TpSample;
use super::hist::Hist;
use super::names;
use super::tracefs::{Field, TraceFormat};

/// Which KVM tracepoint a sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tp {
    /// `kvm:kvm_exit`.
    Exit,
    /// `kvm:kvm_entry`.
    Entry,
    /// `kvm:kvm_pio`.
    Pio,
    /// `kvm:kvm_mmio`.
    Mmio,
    /// `kvm:kvm_hypercall`.
    Hypercall,
    /// `kvm:kvm_userspace_exit`.
    UserspaceExit,
    /// `kvm:kvm_fpu`.
    Fpu,
    /// `kvm:kvm_emulate_insn` (counted only).
    EmulateInsn,
}

impl Tp {
    /// Every tracepoint `hvprof stat` opens per vCPU thread, in report order.
    pub const ALL: [Tp; 8] = [
        Tp::Exit,
        Tp::Entry,
        Tp::Pio,
        Tp::Mmio,
        Tp::Hypercall,
        Tp::UserspaceExit,
        Tp::Fpu,
        Tp::EmulateInsn,
    ];

    /// The event name in tracefs (`kvm_exit`).
    pub fn name(self) -> &'static str {
        match self {
            Tp::Exit => "kvm_exit",
            Tp::Entry => "kvm_entry",
            Tp::Pio => "kvm_pio",
            Tp::Mmio => "kvm_mmio",
            Tp::Hypercall => "kvm_hypercall",
            Tp::UserspaceExit => "kvm_userspace_exit",
            Tp::Fpu => "kvm_fpu",
            Tp::EmulateInsn => "kvm_emulate_insn",
        }
    }

    /// `kvm:<name>`.
    pub fn full_name(self) -> String {
        format!("kvm:{}", self.name())
    }

    /// Whether samples (with fields) are needed, rather than a count alone.
    pub fn sampled(self) -> bool {
        !matches!(self, Tp::EmulateInsn)
    }

    /// The fields this tracepoint must have for [`Layouts`] to decode it.
    fn required_fields(self) -> &'static [&'static str] {
        match self {
            Tp::Exit => &["exit_reason", "isa"],
            Tp::Entry | Tp::EmulateInsn => &[],
            Tp::Pio => &["rw", "port", "size"],
            Tp::Mmio => &["type", "gpa"],
            Tp::Hypercall => &["nr"],
            Tp::UserspaceExit => &["reason", "errno"],
            Tp::Fpu => &["load"],
        }
    }
}

/// Field layouts of the tracepoints, from their tracefs `format` files.
#[derive(Debug, Clone, Default)]
pub struct Layouts {
    fields: BTreeMap<(Tp, &'static str), Field>,
}

impl Layouts {
    /// Takes the fields `tp` needs from its format.
    ///
    /// # Errors
    /// A message naming the first missing field.
    pub fn add(&mut self, tp: Tp, format: &TraceFormat) -> Result<(), String> {
        for &f in tp.required_fields() {
            let field = format
                .field(f)
                .ok_or_else(|| format!("{}: format has no field `{f}`", tp.full_name()))?;
            self.fields.insert((tp, f), field.clone());
        }
        Ok(())
    }

    fn get(&self, tp: Tp, f: &'static str, raw: &[u8]) -> Option<u64> {
        self.fields.get(&(tp, f))?.read_u64(raw)
    }

    /// Decodes the fields of a sample of `tp`. `None` when the payload is too short for the
    /// format (counted as undecodable).
    pub fn decode(&self, tp: Tp, raw: &[u8]) -> Option<Ev> {
        Some(match tp {
            Tp::Exit => Ev::Exit {
                isa: self.get(tp, "isa", raw)? as u32,
                reason: self.get(tp, "exit_reason", raw)? as u32,
            },
            Tp::Entry => Ev::Entry,
            Tp::Pio => Ev::Pio {
                write: self.get(tp, "rw", raw)? != 0,
                port: self.get(tp, "port", raw)? as u32,
                size: self.get(tp, "size", raw)? as u32,
            },
            Tp::Mmio => Ev::Mmio {
                kind: self.get(tp, "type", raw)? as u32,
                gpa: self.get(tp, "gpa", raw)?,
            },
            Tp::Hypercall => Ev::Hypercall {
                nr: self.get(tp, "nr", raw)?,
            },
            Tp::UserspaceExit => Ev::UserspaceExit {
                reason: self.get(tp, "reason", raw)? as u32,
                errno: self.get(tp, "errno", raw)? as i64 as i32,
            },
            Tp::Fpu => Ev::Fpu {
                load: self.get(tp, "load", raw)? != 0,
            },
            Tp::EmulateInsn => Ev::EmulateInsn,
        })
    }
}

/// `KVM_TRACE_MMIO_UNSATISFIED_READ` (include/trace/events/kvm.h).
pub const MMIO_UNSATISFIED_READ: u32 = 0;
/// `KVM_TRACE_MMIO_READ`.
pub const MMIO_READ: u32 = 1;
/// `KVM_TRACE_MMIO_WRITE`.
pub const MMIO_WRITE: u32 = 2;

/// A decoded tracepoint event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ev {
    /// `kvm_exit`: `isa` ([`names::KVM_ISA_VMX`] / [`names::KVM_ISA_SVM`]) and `exit_reason`.
    Exit {
        /// The `isa` field.
        isa: u32,
        /// The `exit_reason` field.
        reason: u32,
    },
    /// `kvm_entry`.
    Entry,
    /// `kvm_pio`.
    Pio {
        /// `rw != 0`: an `out`.
        write: bool,
        /// I/O port.
        port: u32,
        /// Access size in bytes.
        size: u32,
    },
    /// `kvm_mmio`.
    Mmio {
        /// `KVM_TRACE_MMIO_*`.
        kind: u32,
        /// Guest physical address.
        gpa: u64,
    },
    /// `kvm_hypercall`.
    Hypercall {
        /// Hypercall number (`KVM_HC_*`).
        nr: u64,
    },
    /// `kvm_userspace_exit`.
    UserspaceExit {
        /// `kvm_run->exit_reason` (`KVM_EXIT_*`).
        reason: u32,
        /// Negative errno when `KVM_RUN` failed (`-EINTR`: interrupted by a signal).
        errno: i32,
    },
    /// `kvm_fpu`: `load` at `KVM_RUN` entry, unload at its return.
    Fpu {
        /// 1 = load.
        load: bool,
    },
    /// `kvm_emulate_insn`.
    EmulateInsn,
}

/// A row of a count-by-key table with an optional latency histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountHist {
    /// Events.
    pub count: u64,
    /// Latencies in ns (may have fewer values than `count`).
    pub latency: Hist,
}

/// Distinct MMIO addresses kept per vCPU and interval; further ones are summed in
/// [`ExitCounts::mmio_other`].
pub const MAX_MMIO_KEYS: usize = 1024;

/// What the samples of one thread showed over some time (resettable per interval).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Samples received per tracepoint.
    pub samples: BTreeMap<Tp, u64>,
    /// Samples whose payload was too short for the format.
    pub undecodable: u64,
    /// `kvm_exit` by (`isa`, `exit_reason`), with exit → entry latency.
    pub by_reason: BTreeMap<(u32, u32), CountHist>,
    /// Every exit → entry latency.
    pub latency: Hist,
    /// Exits with no following entry before the next exit (latency unknown).
    pub unmatched_exits: u64,
    /// Exits to userspace by (`reason`, `errno < 0 ? errno : 0`), with the round-trip latency
    /// (exit-path event → next `kvm_fpu` load).
    pub userspace: BTreeMap<(u32, i32), CountHist>,
    /// Every exit-to-userspace round trip.
    pub userspace_latency: Hist,
    /// PIO exits by (port, write, size).
    pub pio: BTreeMap<(u32, bool, u32), u64>,
    /// MMIO exits by (gpa, write): completions of userspace reads are not counted.
    pub mmio: BTreeMap<(u64, bool), u64>,
    /// MMIO exits beyond [`MAX_MMIO_KEYS`] distinct addresses.
    pub mmio_other: u64,
    /// Hypercalls by number.
    pub hypercalls: BTreeMap<u64, u64>,
}

impl ExitCounts {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ExitCounts) {
        for (k, v) in &other.samples {
            *self.samples.entry(*k).or_default() += v;
        }
        self.undecodable += other.undecodable;
        for (k, v) in &other.by_reason {
            let e = self.by_reason.entry(*k).or_default();
            e.count += v.count;
            e.latency.merge(&v.latency);
        }
        self.latency.merge(&other.latency);
        self.unmatched_exits += other.unmatched_exits;
        for (k, v) in &other.userspace {
            let e = self.userspace.entry(*k).or_default();
            e.count += v.count;
            e.latency.merge(&v.latency);
        }
        self.userspace_latency.merge(&other.userspace_latency);
        for (k, v) in &other.pio {
            *self.pio.entry(*k).or_default() += v;
        }
        for (k, v) in &other.mmio {
            if self.mmio.len() < MAX_MMIO_KEYS || self.mmio.contains_key(k) {
                *self.mmio.entry(*k).or_default() += v;
            } else {
                self.mmio_other += v;
            }
        }
        self.mmio_other += other.mmio_other;
        for (k, v) in &other.hypercalls {
            *self.hypercalls.entry(*k).or_default() += v;
        }
    }

    /// Exits seen by `kvm_exit`.
    pub fn kvm_exits(&self) -> u64 {
        self.by_reason.values().map(|c| c.count).sum()
    }

    /// Exits seen by the exit-path tracepoints: pio + mmio + hypercalls + exits to userspace
    /// for any other reason (a lower bound: exits handled in the kernel without one of these
    /// tracepoints are invisible).
    pub fn exit_path_exits(&self) -> u64 {
        self.pio.values().sum::<u64>()
            + self.mmio.values().sum::<u64>()
            + self.mmio_other
            + self.hypercalls.values().sum::<u64>()
            + self
                .userspace
                .iter()
                .filter(|((r, e), _)| !covers_userspace_reason(*r, *e))
                .map(|(_, c)| c.count)
                .sum::<u64>()
    }
}

/// Whether exits to userspace with this reason are already counted through `kvm_pio`,
/// `kvm_mmio` or `kvm_hypercall`.
pub fn covers_userspace_reason(reason: u32, errno: i32) -> bool {
    errno >= 0
        && matches!(
            reason,
            names::KVM_EXIT_IO | names::KVM_EXIT_MMIO | names::KVM_EXIT_HYPERCALL
        )
}

/// Per-thread state that spans intervals (an exit still waiting for its entry, ...).
#[derive(Debug, Clone, Default)]
struct ThreadState {
    /// Events not yet processed (newer than the last watermark).
    pending: Vec<(u64, Tp, Ev)>,
    /// An open `kvm_exit`: (time, isa, reason).
    open_exit: Option<(u64, u32, u32)>,
    /// Time of the last exit-path event (pio, mmio, hypercall) since the last `kvm_fpu` load.
    last_exit_path: Option<u64>,
    /// An exit to userspace waiting for the next `kvm_fpu` load: (start time, key).
    open_userspace: Option<(u64, (u32, i32))>,
    /// A `kvm_mmio` unsatisfied read waiting for its completion: gpa.
    unsatisfied_read: Option<u64>,
    /// Counts since the last [`ExitTracker::take`].
    counts: ExitCounts,
}

/// Accounts VM exits from the samples of many vCPU threads.
#[derive(Debug, Default)]
pub struct ExitTracker {
    layouts: Layouts,
    threads: BTreeMap<i32, ThreadState>,
}

impl ExitTracker {
    /// A tracker decoding payloads with `layouts`.
    pub fn new(layouts: Layouts) -> ExitTracker {
        ExitTracker {
            layouts,
            threads: BTreeMap::new(),
        }
    }

    /// Queues one sample of `tp` (samples of different tracepoints may arrive out of order;
    /// [`ExitTracker::flush`] sorts them).
    pub fn push(&mut self, tp: Tp, s: &TpSample<'_>) {
        let th = self.threads.entry(s.tid).or_default();
        *th.counts.samples.entry(tp).or_default() += 1;
        match self.layouts.decode(tp, s.raw) {
            Some(ev) => th.pending.push((s.time_ns, tp, ev)),
            None => th.counts.undecodable += 1,
        }
    }

    /// Processes, in time order, every queued event with `time_ns <= watermark_ns`
    /// (`u64::MAX`: all of them).
    pub fn flush(&mut self, watermark_ns: u64) {
        for th in self.threads.values_mut() {
            th.pending
                .sort_by_key(|(t, tp, _)| (*t, order_at_same_time(*tp)));
            let n = th.pending.partition_point(|(t, _, _)| *t <= watermark_ns);
            let ready: Vec<_> = th.pending.drain(..n).collect();
            for (t, _, ev) in ready {
                th.process(t, ev);
            }
        }
    }

    /// Returns the counts of `tid` since the last call (and resets them); events still queued
    /// and open exits stay for the next call.
    pub fn take(&mut self, tid: i32) -> ExitCounts {
        self.threads
            .get_mut(&tid)
            .map(|th| std::mem::take(&mut th.counts))
            .unwrap_or_default()
    }
}

/// Tie-break for events with equal timestamps: an exit comes before its entry.
fn order_at_same_time(tp: Tp) -> u8 {
    match tp {
        Tp::Exit => 0,
        Tp::Pio | Tp::Mmio | Tp::Hypercall | Tp::EmulateInsn => 1,
        Tp::UserspaceExit => 2,
        Tp::Fpu => 3,
        Tp::Entry => 4,
    }
}

impl ThreadState {
    fn process(&mut self, t: u64, ev: Ev) {
        let c = &mut self.counts;
        match ev {
            Ev::Exit { isa, reason } => {
                if self.open_exit.is_some() {
                    c.unmatched_exits += 1;
                }
                c.by_reason.entry((isa, reason)).or_default().count += 1;
                self.open_exit = Some((t, isa, reason));
            }
            Ev::Entry => {
                if let Some((t0, isa, reason)) = self.open_exit.take() {
                    let lat = t.saturating_sub(t0);
                    c.by_reason
                        .entry((isa, reason))
                        .or_default()
                        .latency
                        .add(lat);
                    c.latency.add(lat);
                }
            }
            Ev::Pio { write, port, size } => {
                *c.pio.entry((port, write, size)).or_default() += 1;
                self.last_exit_path = Some(t);
            }
            Ev::Mmio { kind, gpa } => {
                let completion = kind == MMIO_READ && self.unsatisfied_read == Some(gpa);
                self.unsatisfied_read = (kind == MMIO_UNSATISFIED_READ).then_some(gpa);
                if !completion {
                    let key = (gpa, kind == MMIO_WRITE);
                    if c.mmio.len() < MAX_MMIO_KEYS || c.mmio.contains_key(&key) {
                        *c.mmio.entry(key).or_default() += 1;
                    } else {
                        c.mmio_other += 1;
                    }
                    self.last_exit_path = Some(t);
                }
            }
            Ev::Hypercall { nr } => {
                *c.hypercalls.entry(nr).or_default() += 1;
                self.last_exit_path = Some(t);
            }
            Ev::UserspaceExit { reason, errno } => {
                let key = (reason, errno.min(0));
                c.userspace.entry(key).or_default().count += 1;
                let start = match self.last_exit_path.take() {
                    Some(t0) if errno >= 0 => t0,
                    _ => t,
                };
                self.open_userspace = Some((start, key));
            }
            Ev::Fpu { load } => {
                if load {
                    if let Some((t0, key)) = self.open_userspace.take() {
                        let lat = t.saturating_sub(t0);
                        c.userspace.entry(key).or_default().latency.add(lat);
                        c.userspace_latency.add(lat);
                    }
                    self.last_exit_path = None;
                }
            }
            Ev::EmulateInsn => {}
        }
    }
}
