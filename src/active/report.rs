//! Per-VM guest process breakdown: each guest process (pid, comm) with its share of the VM's
//! guest samples, its class split and its top symbols.
//!
//! Stage: attributed guest samples → **report rows**. Input: `(Attributed, GuestContext)`
//! pairs of one VM; output: [`GuestProcessReport`]s, most samples first, to put in the
//! profile next to the VM.
//!
//! ```
//! use hvprof::active::report::guest_process_reports;
//! let rows = guest_process_reports(1234, &[], 10);
//! assert!(rows.is_empty());
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::model::GuestContext;
use crate::attribute::{Attributed, Class, Symbol};
use crate::report::{ClassRow, SymbolRow};

/// One guest process of one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestProcessReport {
    /// VMM pid (the VM).
    pub vm_pid: i32,
    /// Guest pid, None for samples whose guest thread is unknown.
    pub guest_pid: Option<u32>,
    /// Process name (the most frequent process `comm` among its samples).
    pub comm: String,
    /// Samples.
    pub samples: u64,
    /// Sum of periods (ns for cpu-clock).
    pub period: u64,
    /// Percent of the VM's guest samples (0–100).
    pub percent: f64,
    /// Threads: `(guest tid, comm, samples)`, most samples first.
    pub threads: Vec<(u32, String, u64)>,
    /// Class split (guest kernel / guest user), percent of this process's samples.
    pub classes: Vec<ClassRow>,
    /// Top symbols, percent of this process's samples.
    pub top_symbols: Vec<SymbolRow>,
}

#[derive(Default)]
struct Acc {
    samples: u64,
    period: u64,
    comms: HashMap<String, u64>,
    threads: HashMap<u32, (HashMap<String, u64>, u64)>,
    classes: BTreeMap<Class, (u64, u64)>,
    symbols: HashMap<(Class, Symbol), u64>,
}

fn most(m: &HashMap<String, u64>) -> String {
    m.iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|e| e.0.clone())
        .unwrap_or_else(|| "[unknown]".into())
}

fn pct(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 * 100.0 / total as f64
    }
}

/// Builds the per-process rows of VM `vm_pid` from its attributed guest samples (samples of
/// other VMs are skipped); `top` bounds each symbol list.
pub fn guest_process_reports(
    vm_pid: i32,
    items: &[(Attributed, GuestContext)],
    top: usize,
) -> Vec<GuestProcessReport> {
    let mut by_pid: HashMap<Option<u32>, Acc> = HashMap::new();
    let mut total = 0u64;
    for (a, c) in items {
        if a.sample.pid != vm_pid {
            continue;
        }
        total += 1;
        let acc = by_pid.entry(c.guest_pid).or_default();
        acc.samples += 1;
        acc.period = acc.period.saturating_add(a.sample.period);
        *acc.comms.entry(c.process.clone()).or_default() += 1;
        if let Some(t) = c.guest_tid {
            let e = acc.threads.entry(t).or_default();
            *e.0.entry(c.comm.clone()).or_default() += 1;
            e.1 += 1;
        }
        let e = acc.classes.entry(a.class).or_default();
        e.0 += 1;
        e.1 = e.1.saturating_add(a.sample.period);
        *acc.symbols.entry((a.class, a.symbol.clone())).or_default() += 1;
    }
    let mut out: Vec<GuestProcessReport> = by_pid
        .into_iter()
        .map(|(pid, acc)| {
            let mut threads: Vec<(u32, String, u64)> = acc
                .threads
                .iter()
                .map(|(t, (c, n))| (*t, most(c), *n))
                .collect();
            threads.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
            let mut symbols: Vec<SymbolRow> = acc
                .symbols
                .into_iter()
                .map(|((class, symbol), n)| SymbolRow {
                    class,
                    symbol,
                    samples: n,
                    percent: pct(n, acc.samples),
                })
                .collect();
            symbols.sort_by(|a, b| {
                b.samples
                    .cmp(&a.samples)
                    .then_with(|| a.symbol.cmp(&b.symbol))
            });
            symbols.truncate(top);
            GuestProcessReport {
                vm_pid,
                guest_pid: pid,
                comm: if pid.is_none() {
                    "[unknown]".into()
                } else {
                    most(&acc.comms)
                },
                samples: acc.samples,
                period: acc.period,
                percent: pct(acc.samples, total),
                threads,
                classes: acc
                    .classes
                    .iter()
                    .map(|(c, (n, p))| ClassRow {
                        class: *c,
                        samples: *n,
                        period: *p,
                        percent: pct(*n, acc.samples),
                    })
                    .collect(),
                top_symbols: symbols,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then(a.guest_pid.cmp(&b.guest_pid))
    });
    out
}

/// Renders the rows as text: one block per process with its top `top` symbols.
pub fn render_text(rows: &[GuestProcessReport], top: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CpuMode, Sample};

    fn item(
        vm: i32,
        pid: Option<u32>,
        comm: &str,
        sym: &str,
        class: Class,
    ) -> (Attributed, GuestContext) {
        (
            Attributed {
                sample: Sample {
                    ip: 1,
                    pid: vm,
                    tid: vm,
                    time_ns: 0,
                    cpu: 0,
                    period: 10,
                    cpumode: CpuMode::GuestUser,
                    exact_ip: false,
                },
                class,
                symbol: Symbol::named(sym, "w"),
                landing: false,
            },
            GuestContext {
                guest_pid: pid,
                guest_tid: pid,
                comm: comm.into(),
                process: comm.into(),
                guest_cpu: 0,
                guest_time_ns: None,
                ambiguous: false,
            },
        )
    }

    #[test]
    fn shares_and_top_symbols() {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(item(1, Some(10), "work", "hot_alpha", Class::GuestUser));
        }
        for _ in 0..3 {
            v.push(item(1, Some(10), "work", "hot_beta", Class::GuestUser));
        }
        v.push(item(1, Some(0), "swapper", "do_idle", Class::GuestKernel));
        v.push(item(2, Some(10), "other-vm", "x", Class::GuestUser));
        let r = guest_process_reports(1, &v, 1);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].comm, "work");
        assert_eq!(r[0].samples, 9);
        assert!((r[0].percent - 90.0).abs() < 1e-9);
        assert_eq!(r[0].top_symbols.len(), 1);
        assert_eq!(r[0].top_symbols[0].symbol.name, "hot_alpha");
        assert!((r[0].top_symbols[0].percent - 66.666).abs() < 0.01);
        assert_eq!(r[0].threads, vec![(10, "work".into(), 9)]);
        assert_eq!(r[1].comm, "swapper");
        let json = serde_json::to_string(&r).unwrap();
        let back: Vec<GuestProcessReport> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(render_text(&r, 5).contains("hot_alpha"));
    }
}
