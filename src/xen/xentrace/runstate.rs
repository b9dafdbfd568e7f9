//! One pass over a trace: per (domain, vCPU) runstate times, the pCPU timeline, hypercalls
//! (PV, `TRC_PV_HYPERCALL_V2`) and HVM exits by reason with latency (`TRC_HVM_VMEXIT` to
//! the next `TRC_HVM_VMENTRY` on the same pCPU), each charged to the vCPU running there.
//!
//! xentrace writes per-pCPU windows, so records are first merged by TSC (Xen keeps the pCPUs'
//! TSCs in step; xenalyze merges the same way).
//!
//! Runstates are those of `xen/include/public/vcpu.h`: running (0), runnable (1; waiting for
//! a pCPU: steal), blocked (2), offline (3). A vCPU's time before its first change in the trace
//! counts in that change's old state from the trace's first cycle; its time after its last
//! change counts in the new state until the trace's last cycle.
//!
//! ```
//! use hvprof::xen::xentrace::{parse::TraceWriter, runstate::summarize};
//! let mut w = TraceWriter::new();
//! w.cpu_change(0, 0).runstate(100, 1, 0, 1, 0).runstate(400, 1, 0, 0, 2);
//! let s = summarize(&w.bytes);
//! assert_eq!(s.vcpus[&(1, 0)].cycles, [300, 0, 0, 0]);
//! ```

use std::collections::BTreeMap;

use super::parse::{
    ParseStats, Parser, TRC_64_FLAG, TRC_HVM_NESTEDFLAG, TRC_HVM_VMENTRY, TRC_HVM_VMEXIT,
    TRC_PV_HYPERCALL_V2, TRC_SCHED_RUNSTATE_CHANGE,
};
use super::timeline::{Segment, Timeline};

/// `DOMID_IDLE` (xen.h): the idle vCPUs' domain; its segments are not kept.
pub const DOMID_IDLE: u32 = 0x7fff;
/// Runstate names, by number (vcpu.h).
pub const RUNSTATE_NAMES: [&str; 4] = ["running", "runnable", "blocked", "offline"];
/// Distinct (domain, vCPU) pairs tracked at most.
const MAX_VCPUS_TRACKED: usize = 1 << 16;
/// Records merged at most (a trace of this many records is ~1.5 GiB; the rest is not read).
const MAX_RECORDS: usize = 1 << 26;
/// Distinct exit reasons / hypercall ops kept per domain at most.
const MAX_KEYS: usize = 4096;

/// One vCPU's runstates over the trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuRunstate {
    /// TSC cycles in running, runnable, blocked, offline.
    pub cycles: [u64; 4],
    /// Runstate changes seen.
    pub changes: u64,
    /// Times it was put on a pCPU (changes into running).
    pub scheduled: u64,
}

/// Exits of one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitStat {
    /// VM exits.
    pub count: u64,
    /// Exits followed by a VM entry on the same pCPU (those with a latency).
    pub timed: u64,
    /// Sum of their exit-to-entry cycles.
    pub cycles: u64,
}

/// What a trace says.
#[derive(Debug, Clone, Default)]
pub struct TraceSummary {
    /// Per (domid, vCPU).
    pub vcpus: BTreeMap<(u32, u32), VcpuRunstate>,
    /// Who ran where when.
    pub timeline: Timeline,
    /// HVM exits per domid and exit reason (VMX basic exit reason / SVM exit code).
    pub exits: BTreeMap<u32, BTreeMap<u32, ExitStat>>,
    /// PV hypercalls per domid and op (`__HYPERVISOR_*`, xen.h).
    pub hypercalls: BTreeMap<u32, BTreeMap<u32, u64>>,
    /// First and last cycle seen.
    pub span: Option<(u64, u64)>,
    /// HVM exits and hypercalls on a pCPU where no vCPU was known to run.
    pub unowned_events: u64,
    /// Parser counts (lost records, truncation).
    pub parse: ParseStats,
}

impl TraceSummary {
    /// Cycles between the first and last record.
    pub fn span_cycles(&self) -> u64 {
        self.span.map_or(0, |(a, b)| b.saturating_sub(a))
    }
}

/// Summarizes a trace file's bytes.
pub fn summarize(bytes: &[u8]) -> TraceSummary {
    let mut out = TraceSummary::default();
    // Per vCPU: (state, since cycle); per pCPU: the vCPU running now and since when.
    let mut state: BTreeMap<(u32, u32), (u32, u64)> = BTreeMap::new();
    let mut running: BTreeMap<u32, (u32, u32, u64)> = BTreeMap::new();
    let mut pending_exit: BTreeMap<u32, (u64, u32, Option<u32>)> = BTreeMap::new();
    let mut first: Option<u64> = None;
    let mut last: u64 = 0;
    // xentrace writes each pCPU's buffer as a window of its own: records come in time order
    // per pCPU only. Merge them by TSC first (stable, so equal TSCs keep file order).
    let mut p = Parser::new(bytes);
    let mut recs: Vec<_> = p
        .by_ref()
        .filter(|r| r.tsc.is_some())
        .take(MAX_RECORDS)
        .collect();
    recs.sort_by_key(|r| r.tsc);
    for r in recs {
        let Some(tsc) = r.tsc else { continue };
        let first_tsc = *first.get_or_insert(tsc);
        last = last.max(tsc);
        let ev = r.event;
        if ev & !0x330 == TRC_SCHED_RUNSTATE_CHANGE {
            let old = (ev >> 8) & 3;
            let new = (ev >> 4) & 3;
            let Some(w) = r.word(0) else { continue };
            let (vcpu, domid) = (w & 0xffff, w >> 16);
            if domid == DOMID_IDLE {
                continue;
            }
            let key = (domid, vcpu);
            if !out.vcpus.contains_key(&key) && out.vcpus.len() >= MAX_VCPUS_TRACKED {
                continue;
            }
            let rs = out.vcpus.entry(key).or_default();
            let since = state.get(&key).map_or(first_tsc, |&(_, t)| t);
            rs.cycles[old as usize] =
                rs.cycles[old as usize].saturating_add(tsc.saturating_sub(since));
            rs.changes += 1;
            state.insert(key, (new, tsc));
            let Some(cpu) = r.cpu else { continue };
            // A vCPU's run on `cpu` from `start` ends at `tsc`: one timeline segment.
            let segment = |(domid, vcpu, start): (u32, u32, u64)| Segment {
                start,
                end: tsc,
                domid,
                vcpu,
            };
            if old == 0 {
                if let Some(&run) = running.get(&cpu) {
                    if (run.0, run.1) == key {
                        running.remove(&cpu);
                        out.timeline.push(cpu, segment(run));
                    }
                }
            }
            if new == 0 {
                rs.scheduled += 1;
                if let Some(run) = running.insert(cpu, (domid, vcpu, tsc)) {
                    out.timeline.push(cpu, segment(run));
                }
            }
            continue;
        }
        let base = ev & !(TRC_64_FLAG | TRC_HVM_NESTEDFLAG);
        let owner = r.cpu.and_then(|c| running.get(&c)).map(|&(d, _, _)| d);
        if base == TRC_HVM_VMEXIT {
            let Some(cpu) = r.cpu else { continue };
            let reason = r.word(0).unwrap_or(u32::MAX);
            if let Some((_, rsn, who)) = pending_exit.insert(cpu, (tsc, reason, owner)) {
                // An exit with no entry seen before the next exit: counted without latency.
                count_exit(&mut out, who, rsn, None);
            }
        } else if base == TRC_HVM_VMENTRY {
            let Some(cpu) = r.cpu else { continue };
            if let Some((t0, rsn, who)) = pending_exit.remove(&cpu) {
                count_exit(&mut out, who, rsn, Some(tsc.saturating_sub(t0)));
            }
        } else if ev == TRC_PV_HYPERCALL_V2 {
            let op = r.word(0).unwrap_or(0) & 0x000f_ffff;
            match owner {
                Some(d) => {
                    let m = out.hypercalls.entry(d).or_default();
                    if m.contains_key(&op) || m.len() < MAX_KEYS {
                        *m.entry(op).or_default() += 1;
                    }
                }
                None => out.unowned_events += 1,
            }
        }
    }
    for (_, (_, rsn, who)) in std::mem::take(&mut pending_exit) {
        count_exit(&mut out, who, rsn, None);
    }
    if let Some(f) = first {
        for (key, (st, since)) in &state {
            if let Some(rs) = out.vcpus.get_mut(key) {
                let i = *st as usize & 3;
                rs.cycles[i] = rs.cycles[i].saturating_add(last.saturating_sub(*since));
            }
        }
        for (cpu, (d, v, start)) in running {
            out.timeline.push(
                cpu,
                Segment {
                    start,
                    end: last.saturating_add(1),
                    domid: d,
                    vcpu: v,
                },
            );
        }
        out.span = Some((f, last));
    }
    out.parse = p.stats();
    out
}

fn count_exit(out: &mut TraceSummary, who: Option<u32>, reason: u32, lat: Option<u64>) {
    let Some(d) = who else {
        out.unowned_events += 1;
        return;
    };
    let m = out.exits.entry(d).or_default();
    if !m.contains_key(&reason) && m.len() >= MAX_KEYS {
        return;
    }
    let e = m.entry(reason).or_default();
    e.count += 1;
    if let Some(c) = lat {
        e.timed += 1;
        e.cycles = e.cycles.saturating_add(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::xentrace::parse::TraceWriter;

    /// Two pCPUs, domain 1 with two vCPUs, the idle domain, an HVM exit and a hypercall.
    fn trace() -> Vec<u8> {
        let mut w = TraceWriter::new();
        w.cpu_change(0, 0)
            // d1v0: runnable 0..100 (since the trace's first cycle, 0), running 100..400.
            .runstate(0, DOMID_IDLE as u16, 0, 1, 0)
            .runstate(100, DOMID_IDLE as u16, 0, 0, 1)
            .runstate(100, 1, 0, 1, 0)
            .record(TRC_HVM_VMEXIT, Some(150), &[30, 0xdead])
            .record(TRC_HVM_VMENTRY, Some(170), &[])
            .record(TRC_HVM_VMEXIT | TRC_64_FLAG, Some(200), &[12, 0, 0])
            .record(TRC_PV_HYPERCALL_V2, Some(250), &[0x0010_0018, 1])
            .runstate(400, 1, 0, 0, 2);
        w.cpu_change(1, 0)
            // d1v1: blocked → runnable at 50, running 60..300, then offline until the end.
            .runstate(50, 1, 1, 2, 1)
            .runstate(60, 1, 1, 1, 0)
            .runstate(300, 1, 1, 0, 3)
            .record(TRC_PV_HYPERCALL_V2, Some(350), &[24]);
        w.bytes
    }

    #[test]
    fn runstate_times_per_vcpu() {
        let s = summarize(&trace());
        assert_eq!(s.span, Some((0, 400)));
        // d1v0: runnable 0..100, running 100..400, blocked 400..400.
        assert_eq!(s.vcpus[&(1, 0)].cycles, [300, 100, 0, 0]);
        // d1v1: blocked 0..50, runnable 50..60, running 60..300, offline 300..400.
        assert_eq!(s.vcpus[&(1, 1)].cycles, [240, 10, 50, 100]);
        assert_eq!(s.vcpus[&(1, 1)].scheduled, 1);
        assert!(!s.vcpus.contains_key(&(DOMID_IDLE, 0)));
        let total: u64 = s.vcpus[&(1, 1)].cycles.iter().sum();
        assert_eq!(total, s.span_cycles());
    }

    #[test]
    fn timeline_exits_and_hypercalls_charged_to_the_running_vcpu() {
        let s = summarize(&trace());
        let at = |cpu, t| s.timeline.at(cpu, t).map(|g| (g.domid, g.vcpu));
        assert_eq!(at(0, 50), None, "idle domain not kept");
        assert_eq!(at(0, 100), Some((1, 0)));
        assert_eq!(at(0, 399), Some((1, 0)));
        assert_eq!(at(0, 400), None);
        assert_eq!(at(1, 60), Some((1, 1)));
        assert_eq!(at(1, 300), None);
        let e = &s.exits[&1];
        assert_eq!(
            e[&30],
            ExitStat {
                count: 1,
                timed: 1,
                cycles: 20
            }
        );
        assert_eq!(
            e[&12],
            ExitStat {
                count: 1,
                timed: 0,
                cycles: 0
            }
        );
        assert_eq!(s.hypercalls[&1][&0x18], 1);
        // The second hypercall came on pCPU 1 after d1v1 went offline: no owner.
        assert_eq!(s.unowned_events, 1);
    }

    #[test]
    fn windows_are_merged_by_time() {
        // pCPU 1's window (later in the file) holds the earlier changes of a vCPU that moved.
        let mut w = TraceWriter::new();
        w.cpu_change(0, 0)
            .runstate(500, 1, 0, 1, 0)
            .runstate(900, 1, 0, 0, 2);
        w.cpu_change(1, 0)
            .runstate(100, 1, 0, 2, 1)
            .runstate(200, 1, 0, 1, 0)
            .runstate(300, 1, 0, 0, 1);
        let s = summarize(&w.bytes);
        // blocked 100..100, runnable 100..200 and 300..500, running 200..300 and 500..900.
        assert_eq!(s.vcpus[&(1, 0)].cycles, [500, 300, 0, 0]);
        assert_eq!(s.span, Some((100, 900)));
        assert_eq!(s.timeline.at(1, 250).map(|g| g.domid), Some(1));
        assert_eq!(s.timeline.at(0, 600).map(|g| g.domid), Some(1));
        assert_eq!(s.timeline.at(1, 600), None);
    }

    #[test]
    fn records_without_cpu_or_tsc_are_safe() {
        let mut w = TraceWriter::new();
        w.runstate(10, 1, 0, 1, 0)
            .record(TRC_HVM_VMEXIT, None, &[1])
            .runstate(20, 1, 0, 0, 1);
        let s = summarize(&w.bytes);
        assert_eq!(s.vcpus[&(1, 0)].cycles, [10, 0, 0, 0]);
        assert!(s.timeline.is_empty());
    }
}
