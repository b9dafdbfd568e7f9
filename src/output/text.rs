//! The text report, for people: per VM → per vCPU → class → top symbols.

use std::fmt::Write;

use crate::counters::Rate;
use crate::report::guest::GuestProcessReport;
use crate::report::{ClassRow, GuestView, Profile, StackRow, SymbolRow, ThreadReport};

/// Renders the profile as text. `top` limits symbols shown per thread.
pub fn render(p: &Profile, top: usize) -> String {
    let mut o = String::new();
    let m = &p.meta;
    let rate = match m.rate {
        Rate::Frequency(hz) => format!("{hz} Hz"),
        Rate::Period(n) => format!("period {n}"),
    };
    let _ = writeln!(
        o,
        "hvprof: event {}, {}, {:.2} s, {} mode, host {} (Linux {})",
        m.event,
        rate,
        m.duration_ns as f64 / 1e9,
        m.mode,
        m.host,
        m.kernel
    );
    let _ = writeln!(
        o,
        "samples {}, lost {}, throttled {}",
        p.total_samples, p.total_lost, p.total_throttled
    );
    let g = &p.guest_ips;
    if g.hidden {
        let _ = writeln!(
            o,
            "\nNOTE: guest IPs are not reported by this host. {} vCPU samples taken while the guest ran landed in the hypervisor's guest-interrupt path; they are counted as guest time (class \"guest (ip not reported by host)\"), with no guest symbol.",
            g.landing_samples
        );
        if let Some(r) = &g.reason {
            let _ = writeln!(o, "      reason: {r}");
        }
    } else if g.tagged_samples > 0 {
        let _ = writeln!(o, "guest-tagged samples: {}", g.tagged_samples);
    }
    for n in &p.notes {
        let _ = writeln!(o, "note: {n}");
    }
    for vm in &p.vms {
        let _ = writeln!(
            o,
            "\n== VM {} (pid {}): {} vCPUs, {} samples, lost {}, throttled {}",
            vm.name, vm.pid, vm.vcpu_count, vm.samples, vm.lost, vm.throttled
        );
        classes(&mut o, "   ", &vm.classes);
        symbols(&mut o, "   ", &vm.top_symbols, top, p.callchains);
        stacks(&mut o, "   ", &vm.stacks, top.min(5));
        for t in vm.vcpus.iter().chain(&vm.other_threads) {
            thread(&mut o, t, top, p.callchains);
        }
        if let Some(g) = &vm.guest {
            guest_view(&mut o, g, top);
        }
    }
    if let Some(h) = &p.host_other {
        let _ = writeln!(o, "\n== host processes that are not VMs");
        thread(&mut o, h, top, p.callchains);
    }
    o
}

fn guest_view(o: &mut String, g: &GuestView, top: usize) {
    let s = &g.summary;
    let _ = writeln!(
        o,
        "\n  guest view (active mode, hvprof-guest {} in the guest): Linux {} on {} CPUs, {} samples from {}{}",
        s.helper_version,
        s.kernel_release,
        s.cpus,
        g.samples,
        s.samples_from,
        if g.in_class_table { ", included in the classes above" } else { ", shown beside the host's classes" }
    );
    let _ = writeln!(
        o,
        "  guest clock: {}{}; {} guest kernel symbols, {} symbol tables, {} processes",
        s.clock,
        s.clock_error_ns
            .map(|e| format!(" (± {:.1} µs)", e as f64 / 1e3))
            .unwrap_or_default(),
        s.kallsyms_symbols,
        s.symbol_tables,
        s.processes
    );
    let shown = g.processes.len().min(top);
    o.push_str(&guest_processes(&g.processes[..shown], top));
    if g.processes.len() > shown {
        let _ = writeln!(
            o,
            "  ... {} more guest processes (--top N shows more; --format json lists all)",
            g.processes.len() - shown
        );
    }
}

fn thread(o: &mut String, t: &ThreadReport, top: usize, children: bool) {
    let who = match t.vcpu {
        Some(i) => format!("vCPU {i} (tid {}, {})", t.tid, t.name),
        None if t.tid >= 0 => format!("thread {} ({})", t.tid, t.name),
        None => t.name.clone(),
    };
    let expect = match (t.expected_samples, t.on_cpu_ns) {
        (Some(e), Some(ns)) => format!(", expected ~{e} for {:.2} s on CPU", ns as f64 / 1e9),
        _ => String::new(),
    };
    let _ = writeln!(
        o,
        "\n  {who}: {} samples{expect}, lost {}, throttled {}",
        t.samples, t.lost, t.throttled
    );
    classes(o, "     ", &t.classes);
    symbols(o, "     ", &t.top_symbols, top, children);
}

fn classes(o: &mut String, ind: &str, rows: &[ClassRow]) {
    for r in rows {
        let _ = writeln!(
            o,
            "{ind}{:>6.2}% {:>9}  {}",
            r.percent,
            r.samples,
            r.class.label()
        );
    }
}

/// The hottest stacks, leaf first (`leaf ← caller ← …`), at most 8 frames each.
fn stacks(o: &mut String, ind: &str, rows: &[StackRow], top: usize) {
    let with_callers: Vec<&StackRow> = rows.iter().filter(|r| !r.leaf_only).take(top).collect();
    if with_callers.is_empty() {
        return;
    }
    let _ = writeln!(o, "{ind}top stacks (leaf ← callers):");
    for r in with_callers {
        let who = match r.vcpu {
            Some(i) => format!("vCPU {i}"),
            None => r.thread_name.clone(),
        };
        let names: Vec<String> = r
            .frames
            .iter()
            .rev()
            .take(8)
            .map(|f| f.symbol.display_name())
            .collect();
        let more = if r.frames.len() > 8 { " ← …" } else { "" };
        let _ = writeln!(
            o,
            "{ind}  {:>8}  {who}: {}{more}",
            r.samples,
            names.join(" ← ")
        );
    }
}

fn symbols(o: &mut String, ind: &str, rows: &[SymbolRow], top: usize, children: bool) {
    if rows.is_empty() {
        return;
    }
    if children {
        // perf report --children's columns: inclusive, then self.
        let _ = writeln!(o, "{ind}top symbols (children = with callees, self):");
        for r in rows.iter().take(top) {
            let _ = writeln!(
                o,
                "{ind}  {:>6.2}% {:>6.2}% {:>8}  {:<22} {} {}",
                r.inclusive_percent,
                r.percent,
                r.samples,
                r.class.key(),
                r.symbol.display_name(),
                r.symbol.dso
            );
        }
        return;
    }
    let _ = writeln!(o, "{ind}top symbols:");
    for r in rows.iter().take(top) {
        let _ = writeln!(
            o,
            "{ind}  {:>6.2}% {:>8}  {:<22} {} {}",
            r.percent,
            r.samples,
            r.class.key(),
            r.symbol.display_name(),
            r.symbol.dso
        );
    }
}

/// Renders active mode's guest process rows as text: one block per process with its top `top` symbols.
pub fn guest_processes(rows: &[GuestProcessReport], top: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for r in rows {
        let pid = r.guest_pid.map_or("?".to_string(), |p| p.to_string());
        let _ = writeln!(
            s,
            "  guest pid {pid:>6} {:<20} {:>6.2}%  ({} samples)",
            r.comm, r.percent, r.samples
        );
        for sym in r.top_symbols.iter().take(top) {
            let dso = if sym.symbol.dso.starts_with('[') {
                sym.symbol.dso.clone()
            } else {
                format!("[{}]", sym.symbol.dso)
            };
            let _ = writeln!(
                s,
                "      {:>6.2}%  {:<13} {} {dso}",
                sym.percent,
                sym.class.key(),
                sym.symbol.display_name(),
            );
        }
    }
    s
}
