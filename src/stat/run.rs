//! The `hvprof stat` run: set up, take baselines and enable, then tick (drain, poll, close
//! spans) until the duration is over, `stop` is set or every VM has exited.
//!
//! Input: [`StatOptions`]; output: a [`StatReport`] per interval (to a callback) and one for
//! the whole run. Each step is a method of [`Stat`]; see the module docs of `stat` for the
//! sources.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::drain::{drain_vcpus, RingNotes};
use super::exits::{ExitTracker, Tp};
use super::interval::{build_report, BuildCtx, Schedule, Span};
use super::report::StatReport;
use super::setup;
use super::source::Source;
use super::steal;
use super::vm::VmRt;
use super::xen::{self, XenRt};
use super::StatOptions;
use crate::error::Result;

/// Events newer than `now - SETTLE_NS` (ns, `CLOCK_MONOTONIC`) may still be on their way into
/// another ring of the same thread: they wait for the next tick.
const SETTLE_NS: u64 = 5_000_000;

/// Runs `hvprof stat`: finds the VMs, opens the sources, samples until `duration` or `stop`,
/// calls `on_interval` with each interval's report (when `interval` is set), and returns the
/// report of the whole run.
///
/// Missing sources (no tracefs, a tracepoint absent or refused, debugfs locked down) are not
/// errors: the report says which source each figure comes from, and `notes` say what was
/// missing. A VM that exits during the run keeps its figures up to then. Records lost or
/// corrupt in the rings are counted in the report (`lost`, `corrupt`, `ring_errors`).
///
/// # Errors
/// [`crate::Error::InvalidOption`] for an interval under 10 ms or a zero duration;
/// [`crate::Error::NoSuchProcess`] / [`crate::Error::NotAVm`] / [`crate::Error::Read`] for a
/// pid in `pids` that is not an inspectable KVM VM; [`crate::Error::Read`] when `proc_root`
/// cannot be listed (`-a`); [`crate::Error::PerfIoctl`] when a counter cannot be enabled.
pub fn run(opts: &StatOptions, on_interval: &mut dyn FnMut(&StatReport)) -> Result<StatReport> {
    setup::validate(opts)?;
    let mut stat = Stat::open(opts)?;
    stat.start()?;
    loop {
        if let Some(report) = stat.tick(on_interval) {
            return Ok(report);
        }
        stat.sleep();
    }
}

/// One run's state.
struct Stat<'o> {
    opts: &'o StatOptions,
    /// The VMs observed.
    rts: Vec<VmRt>,
    /// Xen hypercalls, when the tracepoint could be opened.
    xen: Option<XenRt>,
    /// Exit accounting of the samples drained so far.
    tracker: ExitTracker,
    /// What every report shares.
    ctx: BuildCtx,
    /// Notes so far (fallbacks, missing sources, exits, ring errors).
    notes: Vec<String>,
    ring_notes: RingNotes,
    dbg_refusal_noted: bool,
    /// `/proc/stat` steal at the start and at the start of the current interval.
    proc_stat_start: Option<Vec<(u32, u64)>>,
    proc_stat_prev: Option<Vec<(u32, u64)>>,
    /// Exact hits per opened tracepoint since the start.
    cum_tp_counts: BTreeMap<Tp, u64>,
    /// Drain buffer, reused.
    buf: Vec<u8>,
    /// Set when the counters are enabled.
    schedule: Schedule,
}

impl<'o> Stat<'o> {
    /// Step 1: finds the VMs and opens every source (disabled).
    fn open(opts: &'o StatOptions) -> Result<Stat<'o>> {
        let mut notes = Vec::new();
        let kvm_dbg = setup::kvm_debugfs(opts, &mut notes);
        let vms = setup::find_vms(opts, kvm_dbg.as_deref(), &mut notes)?;
        let mut tps = setup::load_tracepoints(&opts.tracefs, &mut notes);
        let (rts, tp_status) = setup::open_vms(vms, &tps, kvm_dbg.as_deref(), &mut notes);
        let (xen_status, xen) = xen::open(&opts.tracefs, tps.tracefs_ok);
        let layouts = std::mem::take(&mut tps.layouts);
        Ok(Stat {
            opts,
            rts,
            xen,
            tracker: ExitTracker::new(layouts),
            ctx: BuildCtx {
                tp_status,
                xen_status,
                hz: steal::user_hz(),
            },
            notes,
            ring_notes: RingNotes::default(),
            dbg_refusal_noted: false,
            proc_stat_start: None,
            proc_stat_prev: None,
            cum_tp_counts: BTreeMap::new(),
            buf: Vec::new(),
            schedule: Schedule::new(Instant::now(), opts.interval),
        })
    }

    /// Step 2: takes the baselines (`/proc/stat`, debugfs, schedstat) and enables the counters.
    fn start(&mut self) -> Result<()> {
        self.proc_stat_start = self.read_proc_stat();
        if self.proc_stat_start.is_none() {
            self.notes.push(format!(
                "cannot read {}: no guest-view steal",
                self.opts.proc_root.join("stat").display()
            ));
        }
        self.proc_stat_prev = self.proc_stat_start.clone();
        for vm in &mut self.rts {
            vm.start(&self.opts.proc_root, &mut self.notes)?;
        }
        if let Some(x) = &self.xen {
            x.enable()?;
        }
        self.schedule = Schedule::new(Instant::now(), self.opts.interval);
        Ok(())
    }

    /// Step 3, every tick: drains the rings, reads steal and liveness, and closes the span
    /// when an interval is due or the run ends. Returns the whole-run report at the end.
    fn tick(&mut self, on_interval: &mut dyn FnMut(&StatReport)) -> Option<StatReport> {
        let now = Instant::now();
        let stop = self.should_stop(now);
        let interval_due = self.schedule.due(now);
        self.drain(stop);
        let elapsed = now.duration_since(self.schedule.t0()).as_secs_f64();
        for vm in &mut self.rts {
            vm.poll(&self.opts.proc_root, elapsed, &mut self.notes);
        }
        if interval_due || stop {
            return self.close_span(now, stop, on_interval);
        }
        None
    }

    /// Whether the run ends now: `stop` set, the duration over, or every VM gone.
    fn should_stop(&self, now: Instant) -> bool {
        self.opts.stop.is_stopped()
            || self
                .opts
                .duration
                .is_some_and(|d| now >= self.schedule.t0() + d)
            || (!self.rts.is_empty() && self.rts.iter().all(|v| v.exited))
    }

    /// Drains every ring. At the end (`stop`) the counters are disabled first and every
    /// event is accounted; otherwise the events of the last [`SETTLE_NS`] wait.
    fn drain(&mut self, stop: bool) {
        let watermark = if stop {
            for vm in &self.rts {
                vm.disable();
            }
            u64::MAX
        } else {
            monotonic_ns().saturating_sub(SETTLE_NS)
        };
        drain_vcpus(
            &mut self.rts,
            &mut self.tracker,
            &mut self.buf,
            &mut self.ring_notes,
            &mut self.notes,
        );
        if let Some(x) = &mut self.xen {
            x.drain(&mut self.buf, &mut self.ring_notes, &mut self.notes);
        }
        self.tracker.flush(watermark);
    }

    /// Step 4, at the end of an interval or of the run: folds the counts into the
    /// accumulators, chooses the source, reads debugfs, reports the interval (the last,
    /// partial one too) and, at the end, returns the whole-run report.
    fn close_span(
        &mut self,
        now: Instant,
        stop: bool,
        on_interval: &mut dyn FnMut(&StatReport),
    ) -> Option<StatReport> {
        for vm in &mut self.rts {
            vm.fold(&mut self.tracker, &mut self.cum_tp_counts);
        }
        let dbg_exits = self.rts.iter().any(VmRt::has_debugfs_exits);
        let source = Source::choose(&self.cum_tp_counts, dbg_exits);
        let proc_stat_now = self.read_proc_stat();
        for vm in &mut self.rts {
            vm.refresh_debugfs(&mut self.dbg_refusal_noted, &mut self.notes);
        }
        if let Some((number, start, len)) = self.schedule.take_interval(now, stop) {
            let span = Span {
                interval: Some(number),
                start,
                len,
                proc_stat: self.proc_stat_prev.as_deref().zip(proc_stat_now.as_deref()),
            };
            let report = build_report(
                &self.ctx,
                &mut self.rts,
                self.xen.as_mut(),
                source,
                &span,
                &self.notes,
                &self.cum_tp_counts,
            );
            on_interval(&report);
            self.proc_stat_prev = proc_stat_now.clone();
        }
        if !stop {
            return None;
        }
        let span = Span {
            interval: None,
            start: Duration::ZERO,
            len: now.duration_since(self.schedule.t0()),
            proc_stat: self
                .proc_stat_start
                .as_deref()
                .zip(proc_stat_now.as_deref()),
        };
        Some(build_report(
            &self.ctx,
            &mut self.rts,
            self.xen.as_mut(),
            source,
            &span,
            &self.notes,
            &self.cum_tp_counts,
        ))
    }

    /// Sleeps until the next tick (or sooner, for the end of the interval or of the run).
    fn sleep(&self) {
        let wake = self.schedule.wake(self.opts.duration);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
    }

    /// Per-CPU steal ticks from `<proc_root>/stat`, when readable.
    fn read_proc_stat(&self) -> Option<Vec<(u32, u64)>> {
        std::fs::read_to_string(self.opts.proc_root.join("stat"))
            .map(|t| steal::parse_proc_stat_steal(&t))
            .ok()
    }
}

/// `CLOCK_MONOTONIC` now, ns (the clock the tracepoints are opened with); 0 if unreadable.
fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64),
        Err(_) => 0,
    }
}
