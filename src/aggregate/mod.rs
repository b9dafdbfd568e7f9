//! The one aggregator: attributed samples and ring losses in, a [`Profile`] tree out — per VM
//! → per vCPU (and other VMM threads) → class → symbols, with samples, percentages, lost and
//! throttled counts.
//!
//! Stage: attribution → **aggregation** → output. Input: [`Attributed`] samples fed to
//! [`Aggregator::add`], keyed by the [`Machines`] (a hash lookup per sample, never a scan);
//! output: [`Aggregator::snapshot`], which does not consume the aggregator, so a live view
//! (`hvprof top`) can take one every refresh while samples keep coming.

mod counts;
mod stacks;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) use counts::Counts;
use counts::ThreadTable;
pub use counts::{SymId, SymbolTable};
pub use stacks::{StackKey, StackTable, MAX_FRAMES};

use crate::attribute::{Attributed, Class, Symbol};
use crate::counters::Rate;
use crate::model::{Machines, VmId};
use crate::report::{
    ClassRow, GuestIpStatus, GuestView, Meta, Profile, SymbolRow, ThreadReport, VmReport,
    SCHEMA_VERSION,
};

/// Counts of nothing, for lookups of a thread with no counts.
static NO_COUNTS: std::sync::LazyLock<Counts> = std::sync::LazyLock::new(Counts::default);

/// Accumulates attributed samples and losses per thread; builds [`Profile`] snapshots.
#[derive(Debug, Default)]
pub struct Aggregator {
    machines: Arc<Machines>,
    id: u64,
    symbols: SymbolTable,
    threads: ThreadTable,
    on_cpu: HashMap<i32, u64>,
    tagged: u64,
    landing: u64,
    notes: Vec<String>,
    hint: Option<String>,
    guest_views: HashMap<VmId, GuestView>,
    cpu_rings: Counts,
    stacks: StackTable,
}

impl Aggregator {
    /// An empty aggregator over `machines` (the VMs and threads samples are grouped by).
    pub fn new(machines: Arc<Machines>) -> Aggregator {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Aggregator {
            machines,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            ..Aggregator::default()
        }
    }

    /// Replaces the machines (VMs that started or exited during a live run); counts already
    /// taken stay with their threads.
    pub fn set_machines(&mut self, machines: Arc<Machines>) {
        self.machines = machines;
    }

    /// The machines samples are grouped by.
    pub fn machines(&self) -> &Arc<Machines> {
        &self.machines
    }

    /// Adds a note for the report (deduplicated).
    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        if !self.notes.contains(&s) {
            self.notes.push(s);
        }
    }

    /// Adds one attributed sample to its thread.
    pub fn add(&mut self, a: &Attributed) {
        let sym = self.symbols.intern(&a.symbol);
        self.add_interned(&a.sample, a.class, a.landing, sym);
    }

    /// Adds one sample whose symbol is already interned in this aggregator
    /// ([`Aggregator::intern`]): the per-sample fast path, no string hashed or allocated.
    pub fn add_interned(
        &mut self,
        s: &hvprof_perf::Sample,
        class: Class,
        landing: bool,
        sym: SymId,
    ) {
        if s.cpumode.is_guest() {
            self.tagged = self.tagged.saturating_add(1);
        }
        if landing {
            self.landing = self.landing.saturating_add(1);
        }
        let c = self.threads.get_mut(s.tid);
        c.pid.get_or_insert(s.pid);
        c.add(class, landing, sym, s.period);
    }

    /// Adds one sample with its call stack: the leaf as [`Aggregator::add_interned`] does,
    /// and the path `leaf` ← `callers[0]` ← … (nearest caller first, symbols interned in this
    /// aggregator). `leaf_only`: the sample came without a callchain (guest samples, whose
    /// callchain the host kernel does not give) — its stack is the leaf alone, and says so.
    pub fn add_stack(
        &mut self,
        s: &hvprof_perf::Sample,
        leaf: (Class, bool, SymId),
        callers: &[(Class, SymId)],
        leaf_only: bool,
    ) {
        let (class, landing, sym) = leaf;
        self.add_interned(s, class, landing, sym);
        let node = self.stacks.intern((class, sym), callers);
        let key = StackKey {
            leaf: node,
            landing,
            leaf_only,
        };
        self.threads.get_mut(s.tid).add_stack(key, s.period);
    }

    /// Whether any sample came with a stack ([`Aggregator::add_stack`]).
    pub fn has_stacks(&self) -> bool {
        !self.stacks.is_empty()
    }

    /// The id of `sym` in this aggregator's symbol table.
    pub fn intern(&mut self, sym: &Symbol) -> SymId {
        self.symbols.intern(sym)
    }

    /// A number that identifies this aggregator (its [`SymId`]s mean nothing to another).
    pub fn identity(&self) -> u64 {
        self.id
    }

    /// Adds `n` records lost by thread `tid`'s ring (`tid < 0`: a per-CPU ring, whose losses
    /// belong to no thread).
    pub fn add_lost(&mut self, tid: i32, n: u64) {
        let c = self.ring_counts(tid);
        c.lost = c.lost.saturating_add(n);
    }

    /// Adds a throttle event of thread `tid`'s ring.
    pub fn add_throttle(&mut self, tid: i32) {
        let c = self.ring_counts(tid);
        c.throttled = c.throttled.saturating_add(1);
    }

    fn ring_counts(&mut self, tid: i32) -> &mut Counts {
        if tid < 0 {
            &mut self.cpu_rings
        } else {
            self.threads.get_mut(tid)
        }
    }

    /// A hint appended to the inferred hidden-guest reason (from `hvprof detect`).
    pub fn set_guest_ip_hint(&mut self, hint: String) {
        self.hint = Some(hint);
    }

    /// Active mode: the guest's own view of VM `vm`.
    pub fn set_guest_view(&mut self, vm: VmId, view: GuestView) {
        self.guest_views.insert(vm, view);
    }

    /// Thread `tid` ran `ns` ns on a CPU during collection.
    pub fn set_on_cpu(&mut self, tid: i32, ns: u64) {
        self.on_cpu.insert(tid, ns);
    }

    /// Samples added so far.
    pub fn total_samples(&self) -> u64 {
        self.threads.iter().map(|(_, t)| t.samples).sum()
    }

    /// An emulated VM's vCPUs whose threads discovery could not name, matched with the threads
    /// that ran translated guest code (class emulation), both in order: `(tid, vCPU index)`.
    fn vcpus_by_translated_code(
        &self,
        vm: &crate::model::GuestMachine,
        tids: &[i32],
    ) -> Vec<(i32, u32)> {
        if !vm.emulated {
            return Vec::new();
        }
        let unnamed = vm.vcpus.iter().filter(|v| v.tid.is_none()).map(|v| v.index);
        let runners = tids.iter().copied().filter(|tid| {
            vm.threads.get(tid).and_then(|t| t.vcpu).is_none()
                && self
                    .threads
                    .get(*tid)
                    .is_some_and(|c| c.has_class(Class::Emulation))
        });
        runners.zip(unnamed).collect()
    }

    /// The VM a thread's samples belong to: by the machines' thread index, else by the process
    /// of its samples (a VMM thread started after discovery).
    fn owner(&self, tid: i32, c: &Counts) -> Option<VmId> {
        self.machines
            .thread(tid)
            .map(|(g, _)| g.id)
            .or_else(|| Some(self.machines.vm_of_vmm_pid(c.pid?)?.id))
    }

    /// Builds the profile. `hidden` says whether the host hides guest IPs (from detection);
    /// None lets the data decide: hidden when no sample was guest-tagged and some vCPU samples
    /// landed at a guest-interrupt symbol. `top` limits the symbol lists.
    pub fn snapshot(&self, meta: Meta, hidden: Option<(bool, String)>, top: usize) -> Profile {
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
        let with_stacks = self.has_stacks();
        let thread_report = |tid: i32, vcpu: Option<u32>, name: String, c: &Counts| {
            let on_cpu_ns = self.on_cpu.get(&tid).copied();
            let stacks = with_stacks.then_some(&self.stacks);
            ThreadReport {
                tid,
                vcpu,
                name,
                samples: c.samples,
                period: c.period,
                on_cpu_ns,
                expected_samples: hz
                    .zip(on_cpu_ns)
                    .map(|(hz, ns)| (ns as u128 * hz as u128 / 1_000_000_000) as u64),
                lost: c.lost,
                throttled: c.throttled,
                classes: class_rows(c, hide),
                top_symbols: symbol_rows_with_stacks(c, &self.symbols, stacks, hide, top),
            }
        };
        let stacks_of = |c: &Counts, tid: i32, vcpu: Option<u32>, name: &str, out: &mut Vec<_>| {
            if with_stacks {
                let owner = stacks::StackOwner { tid, vcpu, name };
                stacks::stack_rows(c, &self.stacks, &self.symbols, hide, &owner, out);
            }
        };
        // Group threads by VM once (sorted by tid for stable output).
        let mut tids: Vec<i32> = self.threads.iter().map(|(t, _)| *t).collect();
        tids.sort_unstable();
        let mut by_vm: HashMap<VmId, Vec<i32>> = HashMap::new();
        let mut other = Counts::default();
        for tid in tids {
            let c = self.threads.get(tid).unwrap_or(&NO_COUNTS);
            match self.owner(tid, c) {
                Some(id) => by_vm.entry(id).or_default().push(tid),
                None => other.merge(c),
            }
        }
        let mut vms = Vec::new();
        let mut all = Counts::default();
        let mut notes = self.notes.clone();
        for vm in self.machines.guests() {
            let mut total = Counts::default();
            let mut vcpus = Vec::new();
            let mut others = Vec::new();
            let mut vm_stacks = Vec::new();
            let tids = by_vm.get(&vm.id).map(Vec::as_slice).unwrap_or_default();
            let by_code = self.vcpus_by_translated_code(vm, tids);
            if !by_code.is_empty() {
                let list = |f: fn(&(i32, u32)) -> String| {
                    by_code.iter().map(f).collect::<Vec<_>>().join(", ")
                };
                let (s, verb) = if by_code.len() == 1 {
                    ("", "it is")
                } else {
                    ("s", "they are")
                };
                notes.push(format!(
                    "VM {} ({}): QEMU named no vCPU thread (no -name ...,debug-threads=on); thread{s} {} ran its translated code, so {verb} shown as vCPU{s} {} (numbered in thread-creation order, as QEMU creates them)",
                    vm.name,
                    vm.id,
                    list(|(t, _)| t.to_string()),
                    list(|(_, i)| i.to_string()),
                ));
            }
            for &tid in tids {
                let c = self.threads.get(tid).unwrap_or(&NO_COUNTS);
                total.merge(c);
                let t = vm.threads.get(&tid);
                let name = t.map_or_else(|| format!("tid {tid}"), |t| t.name.clone());
                let found = by_code.iter().find(|(t, _)| *t == tid).map(|(_, i)| *i);
                let vcpu = t.and_then(|t| t.vcpu).or(found);
                stacks_of(c, tid, vcpu, &name, &mut vm_stacks);
                match vcpu {
                    Some(i) => vcpus.push(thread_report(tid, Some(i), name, c)),
                    None if c.samples > 0 || c.lost > 0 => {
                        others.push(thread_report(tid, None, name, c))
                    }
                    None => {}
                }
            }
            vcpus.sort_by_key(|t| t.vcpu);
            stacks::sort_rows(&mut vm_stacks);
            all.merge(&total);
            vms.push(VmReport {
                id: vm.id,
                pid: vm.id.vmm_pid().unwrap_or(-1),
                name: vm.name.clone(),
                vcpu_count: vm.vcpus.len(),
                samples: total.samples,
                lost: total.lost,
                throttled: total.throttled,
                classes: class_rows(&total, hide),
                top_symbols: symbol_rows_with_stacks(
                    &total,
                    &self.symbols,
                    with_stacks.then_some(&self.stacks),
                    hide,
                    top,
                ),
                vcpus,
                other_threads: others,
                guest: self.guest_views.get(&vm.id).cloned(),
                stacks: vm_stacks,
            });
        }
        all.merge(&other);
        all.merge(&self.cpu_rings);
        if self.cpu_rings.lost > 0 || self.cpu_rings.throttled > 0 {
            notes.push(format!(
                "per-CPU ring buffers lost {} records and were throttled {} times; which threads' samples they were is unknown",
                self.cpu_rings.lost, self.cpu_rings.throttled
            ));
        }
        let host_other = (other.samples > 0 || other.lost > 0)
            .then(|| thread_report(-1, None, "host (not a VM)".into(), &other));
        let mut host_stacks = Vec::new();
        if host_other.is_some() {
            // Per thread, so each stack keeps its thread's id and name.
            for (tid, c) in self.threads.iter() {
                let vm = self.owner(*tid, c);
                if vm.is_none() {
                    stacks_of(c, *tid, None, "host", &mut host_stacks);
                }
            }
            stacks::sort_rows(&mut host_stacks);
        }
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
            host_stacks,
            callchains: with_stacks,
            total_samples: all.samples,
            total_lost: all.lost,
            total_throttled: all.throttled,
        }
    }
}

/// `n` as a percentage of `total` (0 when `total` is 0).
pub(crate) fn pct(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        n as f64 * 100.0 / total as f64
    }
}

/// The class rows of `c`, in [`Class::ALL`] order, percentages of `c`'s samples.
pub(crate) fn class_rows(c: &Counts, hide: bool) -> Vec<ClassRow> {
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

/// The `top` symbol rows of `c`, most samples first.
pub(crate) fn symbol_rows(
    c: &Counts,
    table: &SymbolTable,
    hide: bool,
    top: usize,
) -> Vec<SymbolRow> {
    symbol_rows_with_stacks(c, table, None, hide, top)
}

/// The `top` symbol rows of `c`, most samples first — or, when `stacks` is given and `c`'s
/// samples carried stacks, most inclusive ("children") samples first, callers with no sample
/// of their own included, as `perf report --children` lists them.
pub(crate) fn symbol_rows_with_stacks(
    c: &Counts,
    table: &SymbolTable,
    stacks: Option<&StackTable>,
    hide: bool,
    top: usize,
) -> Vec<SymbolRow> {
    let mut merged: HashMap<(Class, SymId), (u64, u64)> = HashMap::new();
    for (class, sym, n, _) in c.rows(hide) {
        let e = merged.entry((class, sym)).or_default();
        e.0 = e.0.saturating_add(n);
    }
    let children = stacks.filter(|_| !c.stacks.is_empty());
    if let Some(t) = children {
        for (k, n) in stacks::inclusive(c, t, hide) {
            merged.entry(k).or_default().1 = n;
        }
    } else {
        for v in merged.values_mut() {
            v.1 = v.0;
        }
    }
    let mut rows: Vec<SymbolRow> = merged
        .into_iter()
        .map(|((class, sym), (n, incl))| SymbolRow {
            class,
            symbol: table.get(sym).clone(),
            samples: n,
            percent: pct(n, c.samples),
            inclusive_samples: incl,
            inclusive_percent: pct(incl, c.samples),
        })
        .collect();
    rows.sort_by(|a, b| {
        let key = |r: &SymbolRow| {
            if children.is_some() {
                (r.inclusive_samples, r.samples)
            } else {
                (r.samples, 0)
            }
        };
        key(b).cmp(&key(a)).then_with(|| a.symbol.cmp(&b.symbol))
    });
    rows.truncate(top);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Rate;
    use crate::model::{GuestMachine, Thread, Vcpu, VmId};
    use crate::report::Meta;
    use hvprof_perf::{CpuMode, Sample};

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
        let mut vm = GuestMachine::new(VmId::Vmm(10), "vm");
        vm.vcpus.push(Vcpu {
            index: 0,
            tid: Some(11),
        });
        for (tid, vcpu, name) in [(11, Some(0), "vcpu0"), (12, None, "io")] {
            vm.threads.insert(
                tid,
                Thread {
                    tid,
                    name: name.into(),
                    vcpu,
                    tcg: false,
                },
            );
        }
        let mut m = Machines::new();
        m.add(vm);
        let mut a = Aggregator::new(Arc::new(m));
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
    fn unnamed_tcg_vcpu_threads_are_found_by_translated_code() {
        let mut vm = GuestMachine::new(VmId::Vmm(20), "tcg");
        vm.emulated = true;
        vm.vcpus = (0..2).map(|index| Vcpu { index, tid: None }).collect();
        for tid in [20, 21, 22, 23] {
            let name = "qemu-system-x86".to_string();
            vm.threads.insert(
                tid,
                Thread {
                    tid,
                    name,
                    vcpu: None,
                    tcg: false,
                },
            );
        }
        let mut m = Machines::new();
        m.add(vm);
        let mut a = Aggregator::new(Arc::new(m));
        let mut s = |tid: i32, class: Class, n: usize| {
            for _ in 0..n {
                let mut x = att(tid, class, "[tcg translated code]", false, 1_000_000);
                x.sample.pid = 20;
                a.add(&x);
            }
        };
        s(20, Class::Vmm, 5); // the main loop: never a vCPU
        s(22, Class::Emulation, 30);
        s(22, Class::Vmm, 10);
        s(23, Class::Emulation, 7);
        let p = a.snapshot(meta(), None, 10);
        let v = &p.vms[0];
        let found: Vec<_> = v.vcpus.iter().map(|t| (t.tid, t.vcpu)).collect();
        assert_eq!(found, vec![(22, Some(0)), (23, Some(1))]);
        assert_eq!(
            v.other_threads.iter().map(|t| t.tid).collect::<Vec<_>>(),
            vec![20]
        );
        assert!(
            p.notes.iter().any(|n| n.contains(
                "threads 22, 23 ran its translated code, so they are shown as vCPUs 0, 1"
            )),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn landing_samples_become_guest_time_only_when_hidden() {
        // The data decides: nothing tagged, 90 landing samples → hidden.
        let p = agg().snapshot(meta(), None, 10);
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
        let p = agg().snapshot(meta(), Some((false, String::new())), 10);
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
