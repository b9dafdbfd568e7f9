//! Per-VM run-time state and accounting of `hvprof stat`: the open tracepoints of each vCPU
//! thread, what each vCPU accumulated over the current interval and the whole run (exit counts,
//! tracepoint tallies, steal), liveness, debugfs readings, and one VM's figures for a span.
//!
//! Input: the tracepoint fds opened by `setup.rs`, the [`ExitTracker`] fed by `drain.rs`,
//! `/proc/PID/task/TID/schedstat` and KVM's debugfs directory; output: a [`VmStat`] per span.
//!
//! ```ignore
//! // (private module) One span of one VM:
//! vm.fold(&mut tracker, &mut cum_tp_counts);
//! let stat: VmStat = vm.span_stat(source, wall_ns, 20.0, true, &mut tp_totals);
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::debugfs;
use super::exits::{ExitCounts, ExitTracker, Tp};
use super::figures::{debugfs_exit_stat, exit_stat, Tally};
use super::report::RingHealth;
use super::report::{VcpuStat, VmStat};
use super::source::Source;
use super::steal::{SchedStat, StealAcc};
use crate::error::Result;
use hvprof_perf::{PerfFd, RingBuffer};

/// One tracepoint opened on one vCPU thread.
#[derive(Debug)]
pub(super) struct OpenTp {
    /// Which tracepoint.
    pub(super) tp: Tp,
    /// Its counter.
    pub(super) fd: PerfFd,
    /// Its ring, when sampled and mapped.
    pub(super) ring: Option<RingBuffer>,
    /// The counter's value (hits) at the end of the last span.
    pub(super) last_count: u64,
    /// Lost and corrupt records, ring errors since the end of the last span.
    pub(super) health: RingHealth,
}

impl OpenTp {
    /// A freshly opened tracepoint (nothing counted yet).
    pub(super) fn new(tp: Tp, fd: PerfFd, ring: Option<RingBuffer>) -> OpenTp {
        OpenTp {
            tp,
            fd,
            ring,
            last_count: 0,
            health: RingHealth::default(),
        }
    }

    /// Its numbers since the end of the last span (the counter is read now; when it cannot
    /// be read, as after its thread exited, no hits are added).
    fn take_tally(&mut self) -> Tally {
        let now = self.fd.read_count().unwrap_or(self.last_count);
        span_tally(now, &mut self.last_count, &mut self.health)
    }
}

/// A tracepoint's numbers for the span that ends with its counter at `count_now` hits:
/// hits since `last_count` (then set to `count_now`) and the ring's `health` (then reset).
/// `samples` is filled in from the decoded counts by [`VcpuRt::set_sample_counts`].
pub(super) fn span_tally(count_now: u64, last_count: &mut u64, health: &mut RingHealth) -> Tally {
    let t = Tally {
        count: count_now.saturating_sub(*last_count),
        samples: 0,
        ring: std::mem::take(health),
    };
    *last_count = count_now;
    t
}

/// What one vCPU accumulated over a span.
#[derive(Debug, Default, Clone)]
pub(super) struct VcpuAcc {
    /// Decoded exit counts.
    pub(super) counts: ExitCounts,
    /// Per-tracepoint numbers.
    pub(super) tally: BTreeMap<Tp, Tally>,
    /// Run delay.
    pub(super) steal: StealAcc,
}

/// One vCPU at run time.
#[derive(Debug)]
pub(super) struct VcpuRt {
    /// vCPU index.
    pub(super) index: u32,
    /// Its host thread, if found.
    pub(super) tid: Option<i32>,
    /// The tracepoints opened on its thread.
    pub(super) tps: Vec<OpenTp>,
    /// Its thread exited.
    pub(super) exited: bool,
    /// Since the last interval report.
    pub(super) interval: VcpuAcc,
    /// Since the start.
    pub(super) total: VcpuAcc,
}

impl VcpuRt {
    /// A vCPU with nothing opened or counted yet.
    pub(super) fn new(index: u32, tid: Option<i32>) -> VcpuRt {
        VcpuRt {
            index,
            tid,
            tps: Vec::new(),
            exited: false,
            interval: VcpuAcc::default(),
            total: VcpuAcc::default(),
        }
    }

    /// Copies the sample counts of the decoded exit counts into the tallies.
    pub(super) fn set_sample_counts(&mut self) {
        for acc in [&mut self.interval, &mut self.total] {
            for (tp, &n) in &acc.counts.samples {
                acc.tally.entry(*tp).or_default().samples = n;
            }
        }
    }

    fn update_steal(&mut self, s: SchedStat) {
        self.interval.steal.update(s);
        self.total.steal.update(s);
    }
}

/// One VM at run time.
#[derive(Debug)]
pub(super) struct VmRt {
    /// VMM process id.
    pub(super) pid: i32,
    /// VM name.
    pub(super) name: String,
    /// Its vCPUs.
    pub(super) vcpus: Vec<VcpuRt>,
    /// The VMM exited.
    pub(super) exited: bool,
    /// A note said so.
    gone_noted: bool,
    /// Its KVM debugfs directory.
    pub(super) dbg_dir: Option<PathBuf>,
    /// debugfs readings: at the start, at the last interval report, the latest.
    pub(super) dbg_start: Option<debugfs::Reading>,
    dbg_prev: Option<debugfs::Reading>,
    dbg_latest: Option<debugfs::Reading>,
}

impl VmRt {
    /// A VM with nothing read yet.
    pub(super) fn new(
        pid: i32,
        name: String,
        vcpus: Vec<VcpuRt>,
        dbg_dir: Option<PathBuf>,
    ) -> VmRt {
        VmRt {
            pid,
            name,
            vcpus,
            exited: false,
            gone_noted: false,
            dbg_dir,
            dbg_start: None,
            dbg_prev: None,
            dbg_latest: None,
        }
    }

    /// Takes the baselines (debugfs counters, schedstat of each vCPU thread), then enables
    /// the tracepoints.
    ///
    /// # Errors
    /// [`crate::Error::PerfIoctl`] when a counter cannot be enabled.
    pub(super) fn start(&mut self, proc_root: &Path, notes: &mut Vec<String>) -> Result<()> {
        if let Some(d) = &self.dbg_dir {
            match debugfs::read_dir_stats(d) {
                Ok(r) => {
                    self.dbg_start = Some(r.clone());
                    self.dbg_prev = Some(r);
                }
                Err(e) => notes.push(format!("debugfs {}: {e}", d.display())),
            }
        }
        for c in &mut self.vcpus {
            if let Some(tid) = c.tid {
                if let Ok(s) = SchedStat::read(proc_root, self.pid, tid) {
                    c.update_steal(s);
                }
            }
            for t in &c.tps {
                t.fd.enable()?;
            }
        }
        Ok(())
    }

    /// Disables the tracepoints (at the end of the run; errors do not matter then).
    pub(super) fn disable(&self) {
        for c in &self.vcpus {
            for t in &c.tps {
                let _ = t.fd.disable();
            }
        }
    }

    /// One tick: reads the steal of each live vCPU thread and notices threads and the VMM
    /// exiting (`elapsed`: s since the start, for the notes).
    pub(super) fn poll(&mut self, proc_root: &Path, elapsed: f64, notes: &mut Vec<String>) {
        if !self.exited && !proc_root.join(self.pid.to_string()).exists() {
            self.exited = true;
        }
        for c in &mut self.vcpus {
            let Some(tid) = c.tid else { continue };
            if c.exited {
                continue;
            }
            match SchedStat::read(proc_root, self.pid, tid) {
                Ok(s) => c.update_steal(s),
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {}
                Err(_) => {
                    c.exited = true;
                    if !self.exited {
                        notes.push(format!(
                            "VM {} (pid {}): vCPU {} thread {tid} exited after {elapsed:.2} s",
                            self.name, self.pid, c.index
                        ));
                    }
                }
            }
        }
        if self.exited && !self.gone_noted {
            self.gone_noted = true;
            notes.push(format!(
                "VM {} (pid {}) exited after {elapsed:.2} s: its figures cover the time until then",
                self.name, self.pid
            ));
        }
    }

    /// At the end of a span: moves the decoded counts of each vCPU thread out of `tracker`
    /// and each tracepoint's numbers (counter delta, ring health) into the accumulators;
    /// adds the counter deltas to `cum_tp_counts` (hits since the start, per tracepoint).
    pub(super) fn fold(
        &mut self,
        tracker: &mut ExitTracker,
        cum_tp_counts: &mut BTreeMap<Tp, u64>,
    ) {
        for c in &mut self.vcpus {
            if let Some(tid) = c.tid {
                let counts = tracker.take(tid);
                c.interval.counts.merge(&counts);
                c.total.counts.merge(&counts);
            }
            for t in &mut c.tps {
                let d = t.take_tally();
                let cum = cum_tp_counts.entry(t.tp).or_default();
                *cum = cum.saturating_add(d.count);
                c.interval.tally.entry(t.tp).or_default().add(d);
                c.total.tally.entry(t.tp).or_default().add(d);
            }
            c.set_sample_counts();
        }
    }

    /// Whether its debugfs baseline has an `exits` counter.
    pub(super) fn has_debugfs_exits(&self) -> bool {
        self.dbg_start
            .as_ref()
            .is_some_and(|r| r.values.contains_key("exits"))
    }

    /// Reads its debugfs counters again (at the end of a span); the first refusal seen by
    /// the run (`refusal_noted`) becomes a note.
    pub(super) fn refresh_debugfs(&mut self, refusal_noted: &mut bool, notes: &mut Vec<String>) {
        let Some(d) = &self.dbg_dir else { return };
        let Ok(r) = debugfs::read_dir_stats(d) else {
            return;
        };
        if let (Some(first), false) = (r.refused.first(), *refusal_noted) {
            *refusal_noted = true;
            notes.push(format!(
                "debugfs statistics in {} refused ({}: {}); kernel lockdown? (vcpuN/pid stays readable)",
                d.display(),
                first.0,
                first.1
            ));
        }
        if self.dbg_start.is_none() {
            self.dbg_start = Some(r.clone());
            self.dbg_prev = Some(r.clone());
        }
        self.dbg_latest = Some(r);
    }

    /// Its figures over a span of `wall_ns` (ns of wall time): the current interval (then
    /// reset) when `is_interval`, else the whole run. Adds each tracepoint's numbers to
    /// `tp_totals` (all VMs together). `tick_ms`: the steal sampling period, ms.
    pub(super) fn span_stat(
        &mut self,
        source: Source,
        wall_ns: u64,
        tick_ms: f64,
        is_interval: bool,
        tp_totals: &mut BTreeMap<Tp, Tally>,
    ) -> VmStat {
        let mut vm_acc = VcpuAcc::default();
        let mut vcpus = Vec::new();
        for c in &mut self.vcpus {
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
                tp_totals.entry(*tp).or_default().add(*t);
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
            self.dbg_prev.as_ref()
        } else {
            self.dbg_start.as_ref()
        };
        let dbg = match (&self.dbg_dir, before, &self.dbg_latest) {
            (Some(d), Some(before), Some(latest)) => {
                Some(debugfs::diff(d, before, latest, wall_ns))
            }
            _ => None,
        };
        if is_interval {
            self.dbg_prev = self.dbg_latest.clone();
        }
        let mut exits = exit_stat(source, &vm_acc.counts, &vm_acc.tally, wall_ns);
        if source == Source::Debugfs {
            if let Some(d) = &dbg {
                exits = debugfs_exit_stat(d, wall_ns);
            }
        }
        VmStat {
            pid: self.pid,
            name: self.name.clone(),
            exited: self.exited,
            exits,
            vcpus,
            debugfs: dbg,
        }
    }
}
