//! Aggregation of attributed samples into a [`Profile`]: per VM → per vCPU (and other VMM
//! threads) → class → top symbols, with samples, percentages, lost and throttled counts.
//!
//! Stage: attribution → **report**. Input: [`Attributed`] samples and per-ring loss counts fed
//! to an [`Aggregator`]; output: a [`Profile`] rendered by [`text`], [`json`] or [`flame`].
//! The JSON schema is documented in `docs/formats.md`.

pub mod flame;
pub mod json;
pub mod text;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::attribute::{Attributed, Class, Symbol};
use crate::counters::Rate;

/// Version of the JSON report schema (`docs/formats.md`).
pub const SCHEMA_VERSION: u32 = 1;

/// What was measured and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Event name actually used (after any fallback), e.g. `cpu-clock`.
    pub event: String,
    /// Sampling rate.
    pub rate: Rate,
    /// Whether the event's period is in ns (cpu-clock, task-clock).
    pub period_is_ns: bool,
    /// Wall-clock duration of the collection in ns.
    pub duration_ns: u64,
    /// `threads` (per-thread counters, `-p`) or `system-wide` (per-CPU counters, `-a`).
    pub mode: String,
    /// Host name.
    pub host: String,
    /// Host kernel release (`uname -r`).
    pub kernel: String,
    /// Unix time of the start, in ns.
    pub start_unix_ns: u64,
}

/// How guest IPs were seen on this host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestIpStatus {
    /// Samples tagged `PERF_RECORD_MISC_GUEST_KERNEL`/`GUEST_USER` by the host kernel.
    pub tagged_samples: u64,
    /// vCPU-thread samples at a guest-interrupt landing symbol.
    pub landing_samples: u64,
    /// True when the host does not report guest IPs and landing samples count as guest time
    /// ([`Class::GuestHidden`]).
    pub hidden: bool,
    /// The reason, in a sentence, when `hidden`.
    pub reason: Option<String>,
}

/// One class's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    /// The class.
    pub class: Class,
    /// Samples.
    pub samples: u64,
    /// Sum of sample periods (events; ns for clock events).
    pub period: u64,
    /// Percent of the enclosing total's samples (0–100).
    pub percent: f64,
}

/// One symbol's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolRow {
    /// The class the symbol's samples belong to.
    pub class: Class,
    /// The symbol.
    pub symbol: Symbol,
    /// Samples.
    pub samples: u64,
    /// Percent of the enclosing total's samples (0–100).
    pub percent: f64,
}

/// One thread of a VM (a vCPU, or another VMM thread), or a host CPU in system-wide mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadReport {
    /// Thread id.
    pub tid: i32,
    /// vCPU index, when the thread runs a vCPU.
    pub vcpu: Option<u32>,
    /// Thread name.
    pub name: String,
    /// Samples.
    pub samples: u64,
    /// Sum of periods.
    pub period: u64,
    /// Time on CPU during the collection in ns (schedstat), when measured.
    pub on_cpu_ns: Option<u64>,
    /// Samples expected from the rate and `on_cpu_ns` (clock events at a frequency).
    pub expected_samples: Option<u64>,
    /// Records lost (PERF_RECORD_LOST) in this thread's ring buffer.
    pub lost: u64,
    /// Throttle events.
    pub throttled: u64,
    /// Class shares, classes with samples only, in [`Class::ALL`] order.
    pub classes: Vec<ClassRow>,
    /// Top symbols, most samples first.
    pub top_symbols: Vec<SymbolRow>,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmReport {
    /// VMM pid.
    pub pid: i32,
    /// VM name.
    pub name: String,
    /// Number of vCPUs found.
    pub vcpu_count: usize,
    /// Samples of all the VM's threads.
    pub samples: u64,
    /// Lost records of all its rings.
    pub lost: u64,
    /// Throttle events.
    pub throttled: u64,
    /// Class shares over the whole VM.
    pub classes: Vec<ClassRow>,
    /// Top symbols over the whole VM.
    pub top_symbols: Vec<SymbolRow>,
    /// vCPU threads, by index.
    pub vcpus: Vec<ThreadReport>,
    /// Other VMM threads (I/O threads, main loop) that had samples.
    pub other_threads: Vec<ThreadReport>,
    /// Active mode: the guest's own view from the in-guest helper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestView>,
}

/// Active mode's view of one VM: what the in-guest helper told, per guest process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestView {
    /// About the guest and the session (kernel, CPUs, clock relation, channel).
    pub summary: crate::active::GuestSummary,
    /// Guest processes, most samples first, with their classes and top symbols.
    pub processes: Vec<crate::active::report::GuestProcessReport>,
    /// Guest samples behind `processes`.
    pub samples: u64,
    /// Whether those samples also count in the VM's class table (`true`: host-tagged samples
    /// re-attributed through the guest's maps) or are the helper's own sampling, shown beside
    /// the host's view (`false`: the host sees no guest IPs).
    pub in_class_table: bool,
}

/// A whole profile: what `hvprof report` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Collection parameters.
    pub meta: Meta,
    /// Guest IP visibility.
    pub guest_ips: GuestIpStatus,
    /// Notes for the reader (fallbacks, missing symbols, a VM that exited).
    pub notes: Vec<String>,
    /// VMs.
    pub vms: Vec<VmReport>,
    /// Samples of processes that are not VMs (system-wide mode).
    pub host_other: Option<ThreadReport>,
    /// Samples over everything.
    pub total_samples: u64,
    /// Lost records over everything.
    pub total_lost: u64,
    /// Throttle events over everything.
    pub total_throttled: u64,
}

/// Identity of a thread for the aggregator: which VM (by pid) and which thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMeta {
    /// VMM pid, or None for a non-VM process.
    pub vm: Option<i32>,
    /// vCPU index.
    pub vcpu: Option<u32>,
    /// Thread name.
    pub name: String,
}

/// A VM as known to the aggregator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmMeta {
    /// VMM pid.
    pub pid: i32,
    /// Name.
    pub name: String,
    /// vCPU index → tid (None when not found).
    pub vcpus: Vec<(u32, Option<i32>)>,
}

/// Samples and periods of one (class, landing) bucket, per symbol.
type SymbolCounts = HashMap<Symbol, (u64, u64)>;

#[derive(Debug, Default, Clone)]
struct Counts {
    samples: u64,
    period: u64,
    lost: u64,
    throttled: u64,
    /// (class, landing) → symbol → (samples, period). Two levels so that adding a sample
    /// whose symbol is already known allocates nothing.
    by_symbol: HashMap<(Class, bool), SymbolCounts>,
}

impl Counts {
    fn add(&mut self, a: &Attributed) {
        // Saturating: periods and counts may come from a recording, which is untrusted input.
        self.samples = self.samples.saturating_add(1);
        self.period = self.period.saturating_add(a.sample.period);
        let syms = self.by_symbol.entry((a.class, a.landing)).or_default();
        let e = match syms.get_mut(&a.symbol) {
            Some(e) => e,
            None => syms.entry(a.symbol.clone()).or_default(),
        };
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(a.sample.period);
    }

    fn merge(&mut self, o: &Counts) {
        self.samples = self.samples.saturating_add(o.samples);
        self.period = self.period.saturating_add(o.period);
        self.lost = self.lost.saturating_add(o.lost);
        self.throttled = self.throttled.saturating_add(o.throttled);
        for (k, syms) in &o.by_symbol {
            let mine = self.by_symbol.entry(*k).or_default();
            for (sym, (n, p)) in syms {
                let e = mine.entry(sym.clone()).or_default();
                e.0 = e.0.saturating_add(*n);
                e.1 = e.1.saturating_add(*p);
            }
        }
    }

    /// Every (effective class, symbol, samples, period) with the hidden-guest policy applied.
    fn rows(&self, hide: bool) -> impl Iterator<Item = (Class, &Symbol, u64, u64)> {
        self.by_symbol
            .iter()
            .flat_map(move |((class, landing), syms)| {
                let cl = effective(*class, *landing, hide);
                syms.iter().map(move |(sym, (n, p))| (cl, sym, *n, *p))
            })
    }
}

/// Accumulates attributed samples and losses; builds the [`Profile`].
#[derive(Debug, Default)]
pub struct Aggregator {
    vms: Vec<VmMeta>,
    threads: HashMap<i32, (ThreadMeta, Counts)>,
    on_cpu: HashMap<i32, u64>,
    tagged: u64,
    landing: u64,
    notes: Vec<String>,
    hint: Option<String>,
    guest_views: HashMap<i32, GuestView>,
    /// Losses and throttles of per-CPU rings, which belong to no thread.
    cpu_rings: Counts,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    /// Declares a VM so it appears in the report even with no samples.
    pub fn add_vm(&mut self, vm: VmMeta) {
        self.vms.retain(|v| v.pid != vm.pid);
        self.vms.push(vm);
    }

    /// Declares a thread (name, VM, vCPU) before its samples arrive.
    pub fn add_thread(&mut self, tid: i32, meta: ThreadMeta) {
        self.threads
            .entry(tid)
            .or_insert_with(|| (meta.clone(), Counts::default()))
            .0 = meta.clone();
    }

    /// Adds a note for the report.
    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        if !self.notes.contains(&s) {
            self.notes.push(s);
        }
    }

    /// Adds one attributed sample.
    pub fn add(&mut self, a: &Attributed) {
        if a.sample.cpumode.is_guest() {
            self.tagged = self.tagged.saturating_add(1);
        }
        if a.landing {
            self.landing = self.landing.saturating_add(1);
        }
        let vm = self
            .vms
            .iter()
            .find(|v| v.pid == a.sample.pid)
            .map(|v| v.pid);
        let e = self.threads.entry(a.sample.tid).or_insert_with(|| {
            (
                ThreadMeta {
                    vm,
                    vcpu: None,
                    name: format!("tid {}", a.sample.tid),
                },
                Counts::default(),
            )
        });
        e.1.add(a);
    }

    /// Adds `n` lost records to the ring of thread `tid`; `tid < 0` is a per-CPU ring
    /// (system-wide mode), whose losses belong to no particular thread.
    pub fn add_lost(&mut self, tid: i32, n: u64) {
        let c = self.ring_counts(tid);
        c.lost = c.lost.saturating_add(n);
    }

    /// Adds one throttle event to the ring of thread `tid` (`tid < 0`: a per-CPU ring).
    pub fn add_throttle(&mut self, tid: i32) {
        let c = self.ring_counts(tid);
        c.throttled = c.throttled.saturating_add(1);
    }

    /// The counts a ring's losses and throttles go to.
    fn ring_counts(&mut self, tid: i32) -> &mut Counts {
        if tid < 0 {
            &mut self.cpu_rings
        } else {
            &mut self
                .threads
                .entry(tid)
                .or_insert_with(|| unknown_thread(tid))
                .1
        }
    }

    /// What host detection says about guest IP visibility; appended to the reason when the
    /// samples show hidden guest IPs.
    pub fn set_guest_ip_hint(&mut self, hint: String) {
        self.hint = Some(hint);
    }

    /// Attaches active mode's guest view to the VM `vm_pid`.
    pub fn set_guest_view(&mut self, vm_pid: i32, view: GuestView) {
        self.guest_views.insert(vm_pid, view);
    }

    /// Records thread `tid`'s time on CPU during the collection, in ns.
    pub fn set_on_cpu(&mut self, tid: i32, ns: u64) {
        self.on_cpu.insert(tid, ns);
    }

    /// Samples of all threads so far.
    pub fn total_samples(&self) -> u64 {
        self.threads.values().map(|t| t.1.samples).sum()
    }

    /// Builds the profile. `hidden` says whether the host hides guest IPs (from detection);
    /// None lets the data decide: hidden when no sample was guest-tagged and some vCPU samples
    /// landed at a guest-interrupt symbol. `top` limits the symbol lists.
    pub fn build(&self, meta: Meta, hidden: Option<(bool, String)>, top: usize) -> Profile {
        let inferred = self.tagged == 0 && self.landing > 0;
        let (hide, reason) = match hidden {
            Some((h, r)) => (h, if h { Some(r) } else { None }),
            None if inferred => (
                true,
                Some(format!(
                    "no sample was tagged as guest mode, while {} vCPU samples landed in the host's guest-interrupt path: this host does not report guest IPs{}",
                    self.landing,
                    self.hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
                )),
            ),
            None => (false, None),
        };
        let hz = match meta.rate {
            Rate::Frequency(hz) if meta.period_is_ns => Some(hz),
            // The kernel's hrtimer for cpu-clock/task-clock never fires faster than every
            // 10 µs (kernel/events/core.c, perf_swevent_start_hrtimer), whatever period was asked.
            Rate::Period(p) if meta.period_is_ns && p > 0 => Some(1_000_000_000 / p.max(10_000)),
            _ => None,
        };
        let thread_report = |tid: i32, m: &ThreadMeta, c: &Counts| {
            let on_cpu_ns = self.on_cpu.get(&tid).copied();
            ThreadReport {
                tid,
                vcpu: m.vcpu,
                name: m.name.clone(),
                samples: c.samples,
                period: c.period,
                on_cpu_ns,
                expected_samples: hz
                    .zip(on_cpu_ns)
                    .map(|(hz, ns)| (ns as u128 * hz as u128 / 1_000_000_000) as u64),
                lost: c.lost,
                throttled: c.throttled,
                classes: class_rows(c, hide),
                top_symbols: symbol_rows(c, hide, top),
            }
        };
        let mut vms = Vec::new();
        let mut all = Counts::default();
        for vm in &self.vms {
            let mut total = Counts::default();
            let mut vcpus = Vec::new();
            let mut others = Vec::new();
            let mut tids: Vec<&i32> = self.threads.keys().collect();
            tids.sort();
            for tid in tids {
                let (m, c) = &self.threads[tid];
                if m.vm != Some(vm.pid) {
                    continue;
                }
                total.merge(c);
                if m.vcpu.is_some() {
                    vcpus.push(thread_report(*tid, m, c));
                } else if c.samples > 0 || c.lost > 0 {
                    others.push(thread_report(*tid, m, c));
                }
            }
            vcpus.sort_by_key(|t| t.vcpu);
            all.merge(&total);
            vms.push(VmReport {
                pid: vm.pid,
                name: vm.name.clone(),
                vcpu_count: vm.vcpus.len(),
                samples: total.samples,
                lost: total.lost,
                throttled: total.throttled,
                classes: class_rows(&total, hide),
                top_symbols: symbol_rows(&total, hide, top),
                vcpus,
                other_threads: others,
                guest: self.guest_views.get(&vm.pid).cloned(),
            });
        }
        let mut other = Counts::default();
        for (m, c) in self.threads.values() {
            if m.vm.is_none() {
                other.merge(c);
            }
        }
        all.merge(&other);
        all.merge(&self.cpu_rings);
        let mut notes = self.notes.clone();
        if self.cpu_rings.lost > 0 || self.cpu_rings.throttled > 0 {
            notes.push(format!(
                "per-CPU ring buffers lost {} records and were throttled {} times; which threads' samples they were is unknown",
                self.cpu_rings.lost, self.cpu_rings.throttled
            ));
        }
        let host_other = (other.samples > 0 || other.lost > 0).then(|| {
            thread_report(
                -1,
                &ThreadMeta {
                    vm: None,
                    vcpu: None,
                    name: "host (not a VM)".into(),
                },
                &other,
            )
        });
        Profile {
            schema: SCHEMA_VERSION,
            meta,
            guest_ips: GuestIpStatus {
                tagged_samples: self.tagged,
                landing_samples: self.landing,
                hidden: hide,
                reason,
            },
            notes,
            vms,
            host_other,
            total_samples: all.samples,
            total_lost: all.lost,
            total_throttled: all.throttled,
        }
    }
}

fn unknown_thread(tid: i32) -> (ThreadMeta, Counts) {
    (
        ThreadMeta {
            vm: None,
            vcpu: None,
            name: format!("tid {tid}"),
        },
        Counts::default(),
    )
}

/// The class a symbol entry falls in once the hidden-guest policy is applied.
fn effective(class: Class, landing: bool, hide: bool) -> Class {
    if landing && hide {
        Class::GuestHidden
    } else {
        class
    }
}

fn pct(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 * 100.0 / total as f64
    }
}

fn class_rows(c: &Counts, hide: bool) -> Vec<ClassRow> {
    let mut by: BTreeMap<Class, (u64, u64)> = BTreeMap::new();
    for (class, _, n, p) in c.rows(hide) {
        let e = by.entry(class).or_default();
        e.0 = e.0.saturating_add(n);
        e.1 = e.1.saturating_add(p);
    }
    Class::ALL
        .iter()
        .filter_map(|cl| {
            let (n, p) = by.get(cl).copied()?;
            (n > 0).then(|| ClassRow {
                class: *cl,
                samples: n,
                period: p,
                percent: pct(n, c.samples),
            })
        })
        .collect()
}

fn symbol_rows(c: &Counts, hide: bool, top: usize) -> Vec<SymbolRow> {
    let mut merged: HashMap<(Class, &Symbol), u64> = HashMap::new();
    for (class, sym, n, _) in c.rows(hide) {
        let e = merged.entry((class, sym)).or_default();
        *e = e.saturating_add(n);
    }
    let mut rows: Vec<SymbolRow> = merged
        .into_iter()
        .map(|((class, sym), n)| SymbolRow {
            class,
            symbol: sym.clone(),
            samples: n,
            percent: pct(n, c.samples),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.symbol.cmp(&b.symbol))
    });
    rows.truncate(top);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CpuMode, Sample};

    fn att(tid: i32, class: Class, name: &str, landing: bool, period: u64) -> Attributed {
        Attributed {
            sample: Sample {
                ip: 1,
                pid: 10,
                tid,
                time_ns: 0,
                cpu: 0,
                period,
                cpumode: CpuMode::Kernel,
                exact_ip: false,
            },
            class,
            symbol: Symbol::named(name, "[kernel.kallsyms]"),
            landing,
        }
    }

    fn meta() -> Meta {
        Meta {
            event: "cpu-clock".into(),
            rate: Rate::Frequency(1000),
            period_is_ns: true,
            duration_ns: 1_000_000_000,
            mode: "threads".into(),
            host: "h".into(),
            kernel: "k".into(),
            start_unix_ns: 0,
        }
    }

    fn agg() -> Aggregator {
        let mut a = Aggregator::new();
        a.add_vm(VmMeta {
            pid: 10,
            name: "vm".into(),
            vcpus: vec![(0, Some(11))],
        });
        a.add_thread(
            11,
            ThreadMeta {
                vm: Some(10),
                vcpu: Some(0),
                name: "vcpu0".into(),
            },
        );
        a.add_thread(
            12,
            ThreadMeta {
                vm: Some(10),
                vcpu: None,
                name: "io".into(),
            },
        );
        for _ in 0..90 {
            a.add(&att(
                11,
                Class::HypervisorKvm,
                "pvm_do_event_irqoff",
                true,
                1_000_000,
            ));
        }
        for _ in 0..10 {
            a.add(&att(
                11,
                Class::HypervisorKernel,
                "schedule",
                false,
                2_000_000,
            ));
        }
        a.add(&att(12, Class::Vmm, "main_loop", false, 1_000_000));
        a.add_lost(11, 3);
        a.set_on_cpu(11, 500_000_000);
        a
    }

    #[test]
    fn landing_samples_become_guest_time_only_when_hidden() {
        // The data decides: nothing tagged, 90 landing samples → hidden.
        let p = agg().build(meta(), None, 10);
        assert!(p.guest_ips.hidden);
        let v = &p.vms[0];
        let t = &v.vcpus[0];
        assert_eq!(t.classes[0].class, Class::GuestHidden);
        assert_eq!(
            (t.classes[0].samples, t.classes[0].period),
            (90, 90_000_000)
        );
        assert_eq!(t.top_symbols[0].class, Class::GuestHidden);
        assert_eq!(t.lost, 3);
        assert_eq!(t.expected_samples, Some(500));
        let sum: f64 = v.classes.iter().map(|c| c.percent).sum();
        assert!((sum - 100.0).abs() < 1e-9);
        assert_eq!(v.samples, 101);
        assert_eq!(v.other_threads.len(), 1);
        // Told not hidden: the same samples stay hypervisor time.
        let p = agg().build(meta(), Some((false, String::new())), 10);
        let t = &p.vms[0].vcpus[0];
        assert_eq!(t.classes[0].class, Class::HypervisorKvm);
        assert_eq!(
            t.classes
                .iter()
                .find(|c| c.class == Class::HypervisorKernel)
                .unwrap()
                .period,
            20_000_000
        );
    }
}
