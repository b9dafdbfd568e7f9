//! Text output of `hvprof stat`: the whole-run report and `perf stat -I`-style interval lines.

use std::fmt::Write as _;

use super::hist::LatencySummary;
use super::report::RingHealth;
use super::source::{SRC_EXIT_PATH, SRC_KVM_EXIT};
use super::{ExitStat, ReasonStat, StatReport};

/// Formats a duration in ns with a unit: `812ns`, `65.2us`, `1.20ms`, `2.50s`.
pub fn format_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}us", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

fn lat_cols(l: Option<&LatencySummary>) -> String {
    match l {
        Some(l) => format!(
            "{:>9} {:>9} {:>9} {:>9} {:>9}",
            format_ns(l.min_ns),
            format_ns(l.avg_ns),
            format_ns(l.p50_ns),
            format_ns(l.p99_ns),
            format_ns(l.max_ns)
        ),
        None => format!("{:>9} {:>9} {:>9} {:>9} {:>9}", "-", "-", "-", "-", "-"),
    }
}

fn reason_table(out: &mut String, indent: &str, rows: &[ReasonStat]) {
    let _ = writeln!(
        out,
        "{indent}{:<28} {:>10} {:>6} {:>10}  {:>9} {:>9} {:>9} {:>9} {:>9}",
        "reason", "count", "%", "/s", "min", "avg", "p50", "p99", "max"
    );
    for r in rows {
        let name = match &r.isa {
            Some(isa) => format!("{} ({isa})", r.name),
            None => r.name.clone(),
        };
        let _ = writeln!(
            out,
            "{indent}{:<28} {:>10} {:>6.1} {:>10.1}  {}",
            name,
            r.count,
            r.percent,
            r.per_s,
            lat_cols(r.latency.as_ref())
        );
    }
}

fn histogram(out: &mut String, indent: &str, l: &LatencySummary) {
    let max = l.buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1);
    for b in &l.buckets {
        let bar = "@".repeat(((b.count * 40).div_ceil(max)) as usize);
        let _ = writeln!(
            out,
            "{indent}[{:>8}, {:>8}) {:>10} |{:<40}|",
            format_ns(b.lo_ns),
            format_ns(b.hi_ns),
            b.count,
            bar
        );
    }
}

fn exit_block(out: &mut String, e: &ExitStat, detailed: bool) {
    let _ = writeln!(
        out,
        "  VM exits: {} ({:.1}/s)   [source: {}]",
        e.total, e.per_s, e.source
    );
    if !e.by_reason.is_empty() {
        reason_table(out, "    ", &e.by_reason);
    }
    if e.unmatched > 0 {
        let _ = writeln!(
            out,
            "    ({} exits without a matching entry: no latency)",
            e.unmatched
        );
    }
    if e.undecodable > 0 {
        let _ = writeln!(
            out,
            "    ({} samples too short for their tracepoint format: not decoded)",
            e.undecodable
        );
    }
    if let (Some(src), Some(l)) = (&e.latency_source, &e.latency) {
        let _ = writeln!(
            out,
            "  exit latency, {} values: min {} avg {} p50 {} p99 {} max {}",
            l.count,
            format_ns(l.min_ns),
            format_ns(l.avg_ns),
            format_ns(l.p50_ns),
            format_ns(l.p99_ns),
            format_ns(l.max_ns)
        );
        let _ = writeln!(out, "    [{src}]");
        if detailed {
            histogram(out, "    ", l);
        }
    }
    if !e.userspace_exits.is_empty() {
        let list: Vec<String> = e
            .userspace_exits
            .iter()
            .map(|r| format!("{} {} ({:.1}/s)", r.name, r.count, r.per_s))
            .collect();
        let _ = writeln!(
            out,
            "  exits to the VMM [tracepoint kvm:kvm_userspace_exit]: {}",
            list.join(", ")
        );
    }
    if !e.pio.is_empty() {
        let _ = writeln!(out, "  port I/O [tracepoint kvm:kvm_pio]:");
        for p in e.pio.iter().take(10) {
            let _ = writeln!(
                out,
                "    port {:#06x} {:<3} size {}: {:>10} ({:.1}/s)",
                p.port, p.dir, p.size, p.count, p.per_s
            );
        }
    }
    if !e.mmio.is_empty() {
        let _ = writeln!(out, "  MMIO [tracepoint kvm:kvm_mmio]:");
        for m in e.mmio.iter().take(10) {
            let _ = writeln!(
                out,
                "    gpa {:#014x} {:<5}: {:>10} ({:.1}/s)",
                m.gpa, m.dir, m.count, m.per_s
            );
        }
        if e.mmio_other > 0 {
            let _ = writeln!(out, "    other addresses: {}", e.mmio_other);
        }
    }
    if !e.hypercalls.is_empty() {
        let _ = writeln!(out, "  hypercalls [tracepoint kvm:kvm_hypercall]:");
        for h in e.hypercalls.iter().take(10) {
            let _ = writeln!(
                out,
                "    {:<24} (nr {}): {:>10} ({:.1}/s)",
                h.name, h.nr, h.count, h.per_s
            );
        }
    }
    if !e.tracepoints.is_empty() {
        let list: Vec<String> = e
            .tracepoints
            .iter()
            .map(|t| {
                let h = RingHealth {
                    lost: t.lost,
                    corrupt: t.corrupt,
                    ring_errors: t.ring_errors,
                };
                match health_cols(&h) {
                    Some(h) => format!("{} {} ({h})", t.name, t.count),
                    None => format!("{} {}", t.name, t.count),
                }
            })
            .collect();
        let _ = writeln!(out, "  tracepoint hits: {}", list.join(", "));
    }
}

/// Renders a report as text: per VM, exits by reason with latency columns and a log2
/// latency histogram, exits to the VMM, port I/O / MMIO / hypercalls, KVM debugfs counters,
/// a per-vCPU table with steal; then this kernel's own steal, Xen hypercalls, tracepoint status
/// and notes. Every section names its source.
pub fn render_text(r: &StatReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hvprof stat: {:.2} s, {} VM(s); exit source: {}",
        r.duration_s,
        r.vms.len(),
        r.exit_source
    );
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for vm in &r.vms {
        let _ = writeln!(
            out,
            "\nVM {} (pid {}), {} vCPU(s){}",
            vm.name,
            vm.pid,
            vm.vcpus.len(),
            if vm.exited {
                ", exited during the run"
            } else {
                ""
            }
        );
        exit_block(&mut out, &vm.exits, true);
        if let Some(d) = &vm.debugfs {
            match &d.refused {
                Some(why) if d.counters.is_empty() => {
                    let _ = writeln!(out, "  debugfs {}: refused ({why})", d.dir);
                }
                _ => {
                    let list: Vec<String> = d
                        .counters
                        .iter()
                        .take(12)
                        .map(|c| format!("{} {} ({:.1}/s)", c.name, c.delta, c.per_s))
                        .collect();
                    let _ = writeln!(out, "  debugfs {}: {}", d.dir, list.join(", "));
                }
            }
        }
        let _ = writeln!(
            out,
            "  {:<5} {:>8} {:>10} {:>10} {:>9} {:>9}  {:>11} {:>7} {:>8}   [steal source: schedstat run_delay]",
            "vCPU", "tid", "exits", "exits/s", "lat avg", "lat p99", "steal ms/s", "steal%", "on-cpu%"
        );
        for c in &vm.vcpus {
            let tid = c.tid.map_or("-".to_string(), |t| t.to_string());
            let (avg, p99) = match &c.exits.latency {
                Some(l) => (format_ns(l.avg_ns), format_ns(l.p99_ns)),
                None => ("-".into(), "-".into()),
            };
            let (ms, pct, on) = match &c.steal {
                Some(s) => (
                    format!("{:.1}", s.ms_per_s),
                    format!("{:.1}", s.percent),
                    format!("{:.1}", s.on_cpu_percent),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "  {:<5} {:>8} {:>10} {:>10.1} {:>9} {:>9}  {:>11} {:>7} {:>8}{}",
                c.index,
                tid,
                c.exits.total,
                c.exits.per_s,
                avg,
                p99,
                ms,
                pct,
                on,
                if c.exited { "  (exited)" } else { "" }
            );
        }
        for c in &vm.vcpus {
            if let Some(h) = c.steal.as_ref().and_then(|s| s.per_tick.as_ref()) {
                if h.max_ns > 0 {
                    let _ = writeln!(
                        out,
                        "  vCPU {} run delay per {:.0} ms tick: avg {} p50 {} p99 {} max {}",
                        c.index,
                        c.steal.as_ref().map_or(0.0, |s| s.tick_ms),
                        format_ns(h.avg_ns),
                        format_ns(h.p50_ns),
                        format_ns(h.p99_ns),
                        format_ns(h.max_ns)
                    );
                }
            }
        }
    }
    if let Some(g) = &r.guest_steal {
        let list: Vec<String> = g
            .cpus
            .iter()
            .map(|c| format!("cpu{} {:.1} ms/s ({:.1}%)", c.cpu, c.ms_per_s, c.percent))
            .collect();
        let _ = writeln!(
            out,
            "\nsteal of this kernel's CPUs as a guest [{}]: {}",
            g.source,
            list.join(", ")
        );
    }
    let x = &r.xen_hypercalls;
    if x.available {
        let h = RingHealth {
            lost: x.lost,
            corrupt: x.corrupt,
            ring_errors: x.ring_errors,
        };
        let h = health_cols(&h).map_or(String::new(), |h| format!(" ({h})"));
        let _ = writeln!(out, "Xen hypercalls [{}]: {}{h}", x.source, x.total);
        for h in x.by_op.iter().take(15) {
            let _ = writeln!(
                out,
                "  {:<24} ({:>2}): {:>10} ({:.1}/s)",
                h.name, h.nr, h.count, h.per_s
            );
        }
    } else {
        let _ = writeln!(
            out,
            "Xen hypercalls: none ({})",
            x.detail.as_deref().unwrap_or("not available")
        );
    }
    let _ = writeln!(out, "tracepoints:");
    for t in &r.tracepoints {
        let h = RingHealth {
            lost: t.lost,
            corrupt: t.corrupt,
            ring_errors: t.ring_errors,
        };
        let h = health_cols(&h).map_or(String::new(), |h| format!(" ({h})"));
        let _ = writeln!(
            out,
            "  {:<24} {:<8} {:>10}  {}{h}",
            t.name, t.state, t.count, t.detail
        );
    }
    out
}

/// `3 lost, 1 corrupt, 2 ring errors` (the non-zero parts), or `None` when nothing was lost.
fn health_cols(h: &RingHealth) -> Option<String> {
    let mut parts = Vec::new();
    if h.lost > 0 {
        parts.push(format!("{} lost", h.lost));
    }
    if h.corrupt > 0 {
        parts.push(format!("{} corrupt", h.corrupt));
    }
    if h.ring_errors > 0 {
        let s = if h.ring_errors == 1 { "" } else { "s" };
        parts.push(format!("{} ring error{s}", h.ring_errors));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn short_source(s: &str) -> &str {
    if s == SRC_KVM_EXIT {
        "kvm_exit"
    } else if s == SRC_EXIT_PATH {
        "exit-path tps"
    } else {
        s
    }
}

/// Renders one interval as `perf stat -I`-style lines: one line per VM (time since start in
/// seconds, exits and rate with the source, latency avg/p99, mean steal of its vCPUs, and the
/// samples lost or corrupt in its tracepoints' rings when there are any), or one
/// line with this kernel's steal when there is no VM.
pub fn render_interval_line(r: &StatReport) -> String {
    let t = r.start_s + r.duration_s;
    let mut lines = Vec::new();
    for vm in &r.vms {
        let lat = match &vm.exits.latency {
            Some(l) => format!(
                "lat avg {:>8} p99 {:>8}",
                format_ns(l.avg_ns),
                format_ns(l.p99_ns)
            ),
            None => format!("lat avg {:>8} p99 {:>8}", "-", "-"),
        };
        let steals: Vec<u64> = vm
            .vcpus
            .iter()
            .filter_map(|c| c.steal.as_ref())
            .map(|s| s.run_delay_ns)
            .collect();
        // Mean over the vCPUs, so 100 % means every vCPU waited all the time.
        let steal_ns = steals.iter().sum::<u64>() / (steals.len().max(1) as u64);
        let secs = r.duration_s.max(1e-9);
        let mut h = RingHealth::default();
        for tp in &vm.exits.tracepoints {
            h.add(RingHealth {
                lost: tp.lost,
                corrupt: tp.corrupt,
                ring_errors: tp.ring_errors,
            });
        }
        let h = health_cols(&h).map_or(String::new(), |h| format!("  ({h})"));
        lines.push(format!(
            "{t:>12.3}  vm {:<7} exits {:>9} {:>10.1}/s [{}]  {lat}  steal/vCPU {:>7.1} ms/s ({:>5.1}%){}{h}",
            vm.pid,
            vm.exits.total,
            vm.exits.per_s,
            short_source(&vm.exits.source),
            steal_ns as f64 / secs / 1e6,
            steal_ns as f64 / secs / 1e7,
            if vm.exited { "  exited" } else { "" }
        ));
    }
    if lines.is_empty() {
        let g = r.guest_steal.as_ref().map_or(0, |g| g.total_ns);
        let secs = r.duration_s.max(1e-9);
        lines.push(format!(
            "{t:>12.3}  no VM  guest steal {:>7.1} ms/s ({:>5.1}%) [/proc/stat]",
            g as f64 / secs / 1e6,
            g as f64 / secs / 1e7
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(format_ns(812), "812ns");
        assert_eq!(format_ns(65_200), "65.2us");
        assert_eq!(format_ns(1_204_000), "1.20ms");
        assert_eq!(format_ns(2_500_000_000), "2.50s");
    }
}
