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

use std::collections::HashMap;

use super::model::GuestContext;
use crate::aggregate::{class_rows, pct, symbol_rows, Counts, SymbolTable};
use crate::attribute::Attributed;
use crate::report::guest::GuestProcessReport;

/// One guest process's counts: the shared [`Counts`] plus its names and threads.
#[derive(Default)]
struct Acc {
    counts: Counts,
    comms: HashMap<String, u64>,
    threads: HashMap<u32, (HashMap<String, u64>, u64)>,
}

fn most(m: &HashMap<String, u64>) -> String {
    m.iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|e| e.0.clone())
        .unwrap_or_else(|| "[unknown]".into())
}

/// Builds the per-process rows of VM `vm_pid` from its attributed guest samples (samples of
/// other VMs are skipped); `top` bounds each symbol list.
pub fn guest_process_reports(
    vm_pid: i32,
    items: &[(Attributed, GuestContext)],
    top: usize,
) -> Vec<GuestProcessReport> {
    let mut by_pid: HashMap<Option<u32>, Acc> = HashMap::new();
    let mut symbols = SymbolTable::default();
    let mut total = 0u64;
    for (a, c) in items {
        if a.sample.pid != vm_pid {
            continue;
        }
        total += 1;
        let acc = by_pid.entry(c.guest_pid).or_default();
        let sym = symbols.intern(&a.symbol);
        acc.counts.add(a.class, a.landing, sym, a.sample.period);
        *acc.comms.entry(c.process.clone()).or_default() += 1;
        if let Some(t) = c.guest_tid {
            let e = acc.threads.entry(t).or_default();
            *e.0.entry(c.comm.clone()).or_default() += 1;
            e.1 += 1;
        }
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
            GuestProcessReport {
                vm_pid,
                guest_pid: pid,
                comm: if pid.is_none() {
                    "[unknown]".into()
                } else {
                    most(&acc.comms)
                },
                samples: acc.counts.samples,
                period: acc.counts.period,
                percent: pct(acc.counts.samples, total),
                threads,
                classes: class_rows(&acc.counts, false),
                top_symbols: symbol_rows(&acc.counts, &symbols, false, top),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::{Class, Symbol};
    use hvprof_perf::{CpuMode, Sample};

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
        assert!(crate::output::text::guest_processes(&r, 5).contains("hot_alpha"));
    }
}
