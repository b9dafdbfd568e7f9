//! Spans of `hvprof stat`: when an interval (`-I`) is due, and the report of one span (an
//! interval or the whole run) built from the run-time state.
//!
//! Input: the VMs' accumulators (`vm.rs`), the Xen counts (`xen.rs`), `/proc/stat` steal
//! readings and the run's notes; output: a [`StatReport`]. Lost and corrupt records and ring
//! errors of the span are added up per tracepoint and, when there are any, explained in a
//! note.
//!
//! ```ignore
//! // (private module)
//! if let Some((n, start, len)) = schedule.take_interval(now, stop) { /* build_report */ }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::exits::Tp;
use super::figures::Tally;
use super::report::RingHealth;
use super::report::{StatReport, TracepointStatus, XenHypercalls};
use super::source::{fallback_note, Source};
use super::steal;
use super::vm::VmRt;
use super::xen::XenRt;

/// How often the rings are drained and steal is read.
pub(super) const TICK: Duration = Duration::from_millis(20);

/// When intervals end.
#[derive(Debug)]
pub(super) struct Schedule {
    /// When the counters were enabled.
    t0: Instant,
    /// `-I`.
    every: Option<Duration>,
    /// Start of the current interval.
    start: Instant,
    /// End of the current interval.
    next: Option<Instant>,
    /// Intervals reported so far.
    number: u64,
}

impl Schedule {
    /// Intervals of `every` (none when `None`) from `t0`.
    pub(super) fn new(t0: Instant, every: Option<Duration>) -> Schedule {
        Schedule {
            t0,
            every,
            start: t0,
            next: every.map(|i| t0 + i),
            number: 0,
        }
    }

    /// When the counters were enabled.
    pub(super) fn t0(&self) -> Instant {
        self.t0
    }

    /// Whether the current interval has ended at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|n| now >= n)
    }

    /// The interval to report at `now`, if any: the current one when it is due, or, when the
    /// run stops (`stop`), the last partial one (as `perf stat -I` does) if it lasted at
    /// least 1 ms. Returns its number (1-based), start (since `t0`) and length, and starts the
    /// next one.
    pub(super) fn take_interval(
        &mut self,
        now: Instant,
        stop: bool,
    ) -> Option<(u64, Duration, Duration)> {
        let every = self.every?;
        let len = now.duration_since(self.start);
        let last_partial = stop && len >= Duration::from_millis(1);
        if !((self.due(now) && !stop) || last_partial) {
            return None;
        }
        self.number += 1;
        let start = self.start.duration_since(self.t0);
        self.start = now;
        let mut n = self.next.unwrap_or(now) + every;
        while n <= now {
            n += every;
        }
        self.next = Some(n);
        Some((self.number, start, len))
    }

    /// When to wake up next: the next tick, or sooner for the end of the interval or of the
    /// run (`duration`).
    pub(super) fn wake(&self, duration: Option<Duration>) -> Instant {
        let mut wake = Instant::now() + TICK;
        if let Some(n) = self.next {
            wake = wake.min(n);
        }
        if let Some(d) = duration {
            wake = wake.min(self.t0 + d);
        }
        wake
    }
}

/// Per-CPU `/proc/stat` steal readings (CPU, USER_HZ ticks) at the start and end of a span.
pub(super) type StealSpan<'a> = (&'a [(u32, u64)], &'a [(u32, u64)]);

/// What every report of a run shares.
pub(super) struct BuildCtx {
    /// The status of every tracepoint (counts filled in per span).
    pub(super) tp_status: Vec<TracepointStatus>,
    /// The Xen hypercall status (counts filled in per span).
    pub(super) xen_status: XenHypercalls,
    /// USER_HZ, for `/proc/stat` ticks.
    pub(super) hz: u64,
}

/// One span to report.
pub(super) struct Span<'a> {
    /// Its interval number; `None` for the whole run.
    pub(super) interval: Option<u64>,
    /// Its start, since the counters were enabled.
    pub(super) start: Duration,
    /// Its length.
    pub(super) len: Duration,
    /// `/proc/stat` steal at its start and end, when readable.
    pub(super) proc_stat: Option<StealSpan<'a>>,
}

/// Builds the report of `span` from the accumulators (those of the interval are reset when it
/// is an interval). `source`: the exit source; `notes`: the run's notes so far; `cum_tp_counts`:
/// the exact hits per opened tracepoint since the start.
pub(super) fn build_report(
    ctx: &BuildCtx,
    rts: &mut [VmRt],
    xen: Option<&mut XenRt>,
    source: Source,
    span: &Span<'_>,
    notes: &[String],
    cum_tp_counts: &BTreeMap<Tp, u64>,
) -> StatReport {
    let is_interval = span.interval.is_some();
    let wall_ns = span.len.as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
    let tick_ms = TICK.as_secs_f64() * 1000.0;
    let mut tp_totals: BTreeMap<Tp, Tally> = BTreeMap::new();
    let vms = rts
        .iter_mut()
        .map(|vm| vm.span_stat(source, wall_ns, tick_ms, is_interval, &mut tp_totals))
        .collect();
    let mut tracepoints = ctx.tp_status.clone();
    for s in &mut tracepoints {
        if let Some(tp) = Tp::ALL.iter().find(|t| t.full_name() == s.name) {
            let t = tp_totals.get(tp).copied().unwrap_or_default();
            s.count = t.count;
            s.lost = t.ring.lost;
            s.corrupt = t.ring.corrupt;
            s.ring_errors = t.ring.ring_errors;
        }
    }
    let mut notes = notes.to_vec();
    if !is_interval {
        let has_dbg_dir = rts.iter().any(|v| v.dbg_dir.is_some());
        if let Some(n) = fallback_note(source, cum_tp_counts, has_dbg_dir) {
            notes.insert(0, n);
        }
    }
    let xen_hypercalls = match xen {
        Some(x) => x.span_stat(&ctx.xen_status, is_interval, wall_ns),
        None => ctx.xen_status.clone(),
    };
    if let Some(n) = ring_note(&tp_totals, &xen_hypercalls) {
        notes.push(n);
    }
    StatReport {
        interval: span.interval,
        start_s: span.start.as_secs_f64(),
        duration_s: span.len.as_secs_f64(),
        exit_source: source.name().to_string(),
        vms,
        guest_steal: span
            .proc_stat
            .map(|(a, b)| steal::guest_steal(a, b, wall_ns, ctx.hz)),
        xen_hypercalls,
        tracepoints,
        notes,
    }
}

/// `3 lost, 1 corrupt record, 2 ring errors` (the non-zero parts), or `None` when clean.
pub(super) fn health_text(h: &RingHealth) -> Option<String> {
    if h.is_clean() {
        return None;
    }
    let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if h.lost > 0 {
        parts.push(format!("{} lost", h.lost));
    }
    if h.corrupt > 0 {
        parts.push(plural(h.corrupt, "corrupt record"));
    }
    if h.ring_errors > 0 {
        parts.push(plural(h.ring_errors, "ring error"));
    }
    Some(parts.join(", "))
}

/// The note about the span's incomplete ring data, per tracepoint and for Xen, if any.
fn ring_note(tp_totals: &BTreeMap<Tp, Tally>, xen: &XenHypercalls) -> Option<String> {
    let mut parts: Vec<String> = tp_totals
        .iter()
        .filter_map(|(tp, t)| Some(format!("{} {}", tp.full_name(), health_text(&t.ring)?)))
        .collect();
    let x = RingHealth {
        lost: xen.lost,
        corrupt: xen.corrupt,
        ring_errors: xen.ring_errors,
    };
    if let Some(h) = health_text(&x) {
        parts.push(format!("xen:xen_mc_entry {h}"));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "ring data incomplete: {}; figures decoded from samples (reasons, latency, ports, \
             hypercalls) undercount, tracepoint hit counts are exact",
            parts.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_the_last_partial_one() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Schedule::new(t0, Some(ms(100)));
        assert!(!s.due(t0 + ms(50)));
        assert_eq!(s.take_interval(t0 + ms(50), false), None);
        assert!(s.due(t0 + ms(100)));
        assert_eq!(
            s.take_interval(t0 + ms(130), false),
            Some((1, ms(0), ms(130)))
        );
        // Late by more than an interval: the next end is still on the grid, after now.
        assert_eq!(
            s.take_interval(t0 + ms(350), false),
            Some((2, ms(130), ms(220)))
        );
        assert!(!s.due(t0 + ms(399)));
        assert!(s.due(t0 + ms(400)));
        assert_eq!(
            s.take_interval(t0 + ms(360), true),
            Some((3, ms(350), ms(10)))
        );
        let mut none = Schedule::new(t0, None);
        assert_eq!(none.take_interval(t0 + ms(500), true), None);
    }

    #[test]
    fn health_in_words() {
        assert_eq!(health_text(&RingHealth::default()), None);
        let h = RingHealth {
            lost: 3,
            corrupt: 1,
            ring_errors: 2,
        };
        assert_eq!(
            health_text(&h).as_deref(),
            Some("3 lost, 1 corrupt record, 2 ring errors")
        );
    }
}
