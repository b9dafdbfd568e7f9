//! One span's exit figures ([`ExitStat`]) from decoded counts: by reason, latency, exits to the
//! VMM, port I/O, MMIO, hypercalls and per-tracepoint tallies, for the source chosen by
//! [`Source`]; or from KVM's debugfs counters. No IO.
//!
//! ```
//! use std::collections::BTreeMap;
//! use hvprof::stat::exit_stat_from_counts;
//! use hvprof::stat::exits::ExitCounts;
//! let e = exit_stat_from_counts(&ExitCounts::default(), &BTreeMap::new(), 1_000_000_000);
//! assert_eq!((e.total, e.source.as_str()), (0, "none"));
//! ```

use std::collections::BTreeMap;

use super::debugfs;
use super::exits::{covers_userspace_reason, ExitCounts, Tp};
use super::hist::Hist;
use super::names;
use super::report::RingHealth;
use super::report::{ExitStat, HypercallStat, MmioStat, PioStat, ReasonStat, TpCount};
use super::source::{Source, LAT_EXIT_PATH, LAT_KVM_EXIT};

/// One tracepoint's numbers for a vCPU over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Hits counted by the kernel (`read(2)` of the counter).
    pub(super) count: u64,
    /// Samples received.
    pub(super) samples: u64,
    /// Lost and corrupt records, corrupt ring heads.
    pub(super) ring: RingHealth,
}

impl Tally {
    /// Adds `o` (saturating).
    pub(super) fn add(&mut self, o: Tally) {
        self.count = self.count.saturating_add(o.count);
        self.samples = self.samples.saturating_add(o.samples);
        self.ring.add(o.ring);
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

/// The exit figures of one vCPU or VM over a span of `wall_ns` (ns of wall time), from
/// `source`: `counts` decoded from its samples, `tally` its per-tracepoint numbers.
pub(super) fn exit_stat(
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
                lost: t.ring.lost,
                corrupt: t.ring.corrupt,
                ring_errors: t.ring.ring_errors,
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
        undecodable: counts.undecodable,
        userspace_exits,
        pio,
        mmio,
        mmio_other: counts.mmio_other,
        hypercalls,
        tracepoints,
    }
}

/// Exit figures from KVM's debugfs counters (per VM only).
pub(super) fn debugfs_exit_stat(d: &debugfs::DebugfsStats, wall_ns: u64) -> ExitStat {
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
        undecodable: 0,
        userspace_exits: Vec::new(),
        pio: Vec::new(),
        mmio: Vec::new(),
        mmio_other: 0,
        hypercalls: Vec::new(),
        tracepoints: Vec::new(),
    }
}

/// Builds the exit figures of one span from already-decoded counts (no IO): what
/// [`run`](super::run()) reports for a vCPU, exposed for replaying recorded samples.
/// `tp_counts` are the exact tracepoint hit counts (`read(2)` of the counters); pass the
/// sample counts when replaying. `wall_ns`: the span's length, ns of wall time.
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
                    ring: RingHealth::default(),
                },
            )
        })
        .collect();
    let fired: BTreeMap<Tp, u64> = tally.iter().map(|(&tp, t)| (tp, t.count)).collect();
    exit_stat(Source::choose(&fired, false), counts, &tally, wall_ns)
}
