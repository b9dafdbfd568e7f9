//! The difference between two snapshots: [`TopState`] turns successive cumulative
//! [`Profile`]s of one session into [`TopFrame`]s of the interval between them, and attaches the
//! latest `hvprof stat` interval (exits per VM, steal and exit rate per vCPU).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::attribute::{Class, Symbol};
use crate::report::{ClassRow, Profile, SymbolRow, ThreadReport, VmReport};
use crate::stat::{StatReport, VmStat};

use super::frame::{
    TopExits, TopFrame, TopReason, TopSteal, TopThread, TopVm, VmState, FRAME_REASONS,
    FRAME_SYMBOLS,
};

/// What a VM looked like when last seen, to show it as gone.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    vcpu_count: usize,
}

/// Turns successive cumulative snapshots into frames: keeps the previous snapshot and the VMs
/// seen so far.
#[derive(Debug, Default)]
pub struct TopState {
    prev: Option<Profile>,
    frames: u64,
    seen: BTreeMap<i32, Seen>,
    notes_seen: HashSet<String>,
}

impl TopState {
    /// The frame of the interval from the previous snapshot (or the start) to `cur`, with the
    /// latest `stat` interval attached. `alive(pid)` says whether a VM's process still exists;
    /// VMs seen before and missing from `cur` are shown as gone.
    pub fn frame(
        &mut self,
        cur: &Profile,
        stat: Option<&StatReport>,
        alive: &dyn Fn(i32) -> bool,
    ) -> TopFrame {
        self.frames += 1;
        let prev = self.prev.take();
        let prev_ns = prev.as_ref().map_or(0, |p| p.meta.duration_ns);
        let interval_ns = cur.meta.duration_ns.saturating_sub(prev_ns);
        let cpu_measured = cur.meta.period_is_ns;
        let samples = cur
            .total_samples
            .saturating_sub(prev.as_ref().map_or(0, |p| p.total_samples));
        let ctx = Ctx {
            interval_ns,
            cpu_measured,
            samples,
        };
        let mut vms: Vec<TopVm> = cur
            .vms
            .iter()
            .map(|vm| {
                let before = prev
                    .as_ref()
                    .and_then(|p| p.vms.iter().find(|v| v.id == vm.id));
                let mut t = ctx.vm(vm, before);
                if !alive(vm.pid) {
                    t.state = VmState::Gone;
                }
                if let Some(s) = stat.and_then(|s| s.vms.iter().find(|s| s.pid == vm.pid)) {
                    attach_stat(&mut t, s);
                }
                t
            })
            .collect();
        for vm in &cur.vms {
            self.seen.insert(
                vm.pid,
                Seen {
                    name: vm.name.clone(),
                    vcpu_count: vm.vcpu_count,
                },
            );
        }
        for (pid, s) in &self.seen {
            if !cur.vms.iter().any(|v| v.pid == *pid) {
                vms.push(gone_vm(*pid, s));
            }
        }
        sort_vms(&mut vms);
        let host_other = cur.host_other.as_ref().map(|h| {
            let before = prev.as_ref().and_then(|p| p.host_other.as_ref());
            ctx.thread(h, before)
        });
        let stat_notes = stat.map(|s| s.notes.as_slice()).unwrap_or_default();
        let notes: Vec<String> = cur
            .notes
            .iter()
            .chain(stat_notes)
            .filter(|n| self.notes_seen.insert((*n).clone()))
            .cloned()
            .collect();
        let lost = cur
            .total_lost
            .saturating_sub(prev.as_ref().map_or(0, |p| p.total_lost));
        let frame = TopFrame {
            frame: self.frames,
            time_s: cur.meta.duration_ns as f64 / 1e9,
            interval_s: interval_ns as f64 / 1e9,
            event: cur.meta.event.clone(),
            rate: cur.meta.rate,
            mode: cur.meta.mode.clone(),
            cpu_measured,
            samples,
            lost,
            vms,
            host_other,
            exit_source: stat.map(|s| s.exit_source.clone()),
            stat_interval: stat.and_then(|s| s.interval),
            notes,
        };
        self.prev = Some(cur.clone());
        frame
    }
}

/// VMs by CPU (else samples), then pid; gone VMs last.
fn sort_vms(vms: &mut [TopVm]) {
    vms.sort_by(|a, b| {
        (a.state == VmState::Gone)
            .cmp(&(b.state == VmState::Gone))
            .then(
                b.cpu_percent
                    .unwrap_or(b.share)
                    .total_cmp(&a.cpu_percent.unwrap_or(a.share)),
            )
            .then(a.pid.cmp(&b.pid))
    });
}

/// A VM no longer in the session's snapshots.
fn gone_vm(pid: i32, s: &Seen) -> TopVm {
    TopVm {
        pid,
        name: s.name.clone(),
        state: VmState::Gone,
        vcpu_count: s.vcpu_count,
        cpu_percent: None,
        share: 0.0,
        samples: 0,
        lost: 0,
        classes: Vec::new(),
        top_symbols: Vec::new(),
        vcpus: Vec::new(),
        other_threads: Vec::new(),
        exits: None,
    }
}

/// What every row of one frame is measured against.
struct Ctx {
    interval_ns: u64,
    cpu_measured: bool,
    samples: u64,
}

impl Ctx {
    fn cpu(&self, period: u64) -> Option<f64> {
        (self.cpu_measured && self.interval_ns > 0)
            .then(|| period as f64 * 100.0 / self.interval_ns as f64)
    }

    fn share(&self, samples: u64) -> f64 {
        pct(samples, self.samples)
    }

    fn vm(&self, cur: &VmReport, prev: Option<&VmReport>) -> TopVm {
        let classes = sub_classes(&cur.classes, prev.map(|p| p.classes.as_slice()));
        let period: u64 = classes.iter().map(|c| c.period).sum();
        let samples = cur.samples.saturating_sub(prev.map_or(0, |p| p.samples));
        let threads = |cur: &[ThreadReport], prev: Option<&[ThreadReport]>| {
            cur.iter()
                .map(|t| {
                    let before = prev.and_then(|p| p.iter().find(|b| b.tid == t.tid));
                    self.thread(t, before)
                })
                .collect::<Vec<_>>()
        };
        let mut other_threads = threads(&cur.other_threads, prev.map(|p| &p.other_threads[..]));
        other_threads.retain(|t| t.samples > 0);
        TopVm {
            pid: cur.pid,
            name: cur.name.clone(),
            state: VmState::Running,
            vcpu_count: cur.vcpu_count,
            cpu_percent: self.cpu(period),
            share: self.share(samples),
            samples,
            lost: cur.lost.saturating_sub(prev.map_or(0, |p| p.lost)),
            classes: with_percent(classes, samples),
            top_symbols: sub_symbols(
                &cur.top_symbols,
                prev.map(|p| p.top_symbols.as_slice()),
                samples,
            ),
            vcpus: threads(&cur.vcpus, prev.map(|p| &p.vcpus[..])),
            other_threads,
            exits: None,
        }
    }

    fn thread(&self, cur: &ThreadReport, prev: Option<&ThreadReport>) -> TopThread {
        let samples = cur.samples.saturating_sub(prev.map_or(0, |p| p.samples));
        let period = cur.period.saturating_sub(prev.map_or(0, |p| p.period));
        let classes = sub_classes(&cur.classes, prev.map(|p| p.classes.as_slice()));
        TopThread {
            tid: cur.tid,
            vcpu: cur.vcpu,
            name: cur.name.clone(),
            cpu_percent: self.cpu(period),
            share: self.share(samples),
            samples,
            classes: with_percent(classes, samples),
            top_symbols: sub_symbols(
                &cur.top_symbols,
                prev.map(|p| p.top_symbols.as_slice()),
                samples,
            ),
            steal: None,
            exits_per_s: None,
        }
    }
}

/// `part` as a percentage of `whole` (0 for an empty whole).
fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Class rows of the interval: `cur − prev` per class, empty classes dropped.
fn sub_classes(cur: &[ClassRow], prev: Option<&[ClassRow]>) -> Vec<ClassRow> {
    cur.iter()
        .filter_map(|c| {
            let before = prev.and_then(|p| p.iter().find(|b| b.class == c.class));
            let samples = c.samples.saturating_sub(before.map_or(0, |b| b.samples));
            let period = c.period.saturating_sub(before.map_or(0, |b| b.period));
            (samples > 0).then_some(ClassRow {
                class: c.class,
                samples,
                period,
                percent: 0.0,
            })
        })
        .collect()
}

/// Sets each row's percent of `total`.
fn with_percent(mut rows: Vec<ClassRow>, total: u64) -> Vec<ClassRow> {
    for r in &mut rows {
        r.percent = pct(r.samples, total);
    }
    rows
}

/// Symbol rows of the interval: `cur − prev` per (class, symbol), most samples first, at most
/// [`FRAME_SYMBOLS`], percent of `total`.
fn sub_symbols(cur: &[SymbolRow], prev: Option<&[SymbolRow]>, total: u64) -> Vec<SymbolRow> {
    let before: HashMap<(Class, &Symbol), u64> = prev
        .unwrap_or_default()
        .iter()
        .map(|r| ((r.class, &r.symbol), r.samples))
        .collect();
    let mut rows: Vec<SymbolRow> = cur
        .iter()
        .filter_map(|r| {
            let b = before.get(&(r.class, &r.symbol)).copied().unwrap_or(0);
            let samples = r.samples.saturating_sub(b);
            (samples > 0).then(|| SymbolRow {
                class: r.class,
                symbol: r.symbol.clone(),
                samples,
                percent: pct(samples, total),
                inclusive_samples: samples,
                inclusive_percent: pct(samples, total),
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.symbol.name.cmp(&b.symbol.name))
    });
    rows.truncate(FRAME_SYMBOLS);
    rows
}

/// Attaches a stat interval's exits (per VM), steal and exit rate (per vCPU).
fn attach_stat(vm: &mut TopVm, s: &VmStat) {
    if s.exited {
        vm.state = VmState::Gone;
    }
    let mut by_reason: Vec<TopReason> = s
        .exits
        .by_reason
        .iter()
        .map(|r| TopReason {
            name: r.name.clone(),
            count: r.count,
            per_s: r.per_s,
            percent: r.percent,
        })
        .collect();
    by_reason.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    by_reason.truncate(FRAME_REASONS);
    vm.exits = Some(TopExits {
        source: s.exits.source.clone(),
        total: s.exits.total,
        per_s: s.exits.per_s,
        by_reason,
    });
    for t in &mut vm.vcpus {
        let Some(v) = s.vcpus.iter().find(|v| Some(v.index) == t.vcpu) else {
            continue;
        };
        t.exits_per_s = Some(v.exits.per_s);
        t.steal = v.steal.as_ref().map(|st| TopSteal {
            source: st.source.clone(),
            ms_per_s: st.ms_per_s,
            percent: st.percent,
            on_cpu_percent: st.on_cpu_percent,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::top::fixtures::{one_vcpu_vm, profile, stat_frame, two_frames};

    #[test]
    fn a_frame_is_the_difference_of_two_snapshots() {
        let (f1, f2) = two_frames();
        assert_eq!(f1.frame, 1);
        assert_eq!(f1.samples, 1000);
        assert_eq!(f1.notes, vec!["a note".to_string()]);
        let v = &f1.vms[0];
        assert!((v.cpu_percent.unwrap() - 100.0).abs() < 1e-9, "{v:?}");
        assert_eq!(v.top_symbols[0].symbol.name, "hot_a");

        // Second second: vCPU 1 takes over, vCPU 0 spends time in the hypervisor.
        assert_eq!(f2.frame, 2);
        assert!(f2.notes.is_empty(), "notes are shown once: {:?}", f2.notes);
        assert!((f2.interval_s - 1.0).abs() < 1e-9);
        assert_eq!(f2.samples, 1000);
        let v = &f2.vms[0];
        assert_eq!(v.samples, 1000);
        assert_eq!(v.state, VmState::Running);
        assert!((v.cpu_percent.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(v.top_symbols[0].symbol.name, "hot_b");
        assert_eq!(v.top_symbols[0].samples, 900);
        assert!((v.top_symbols[0].percent - 90.0).abs() < 1e-9);
        let v0 = &v.vcpus[0];
        assert_eq!(v0.samples, 100);
        assert!((v0.cpu_percent.unwrap() - 10.0).abs() < 1e-9);
        let classes: Vec<(Class, u64, f64)> = v0
            .classes
            .iter()
            .map(|c| (c.class, c.samples, c.percent))
            .collect();
        assert_eq!(
            classes,
            [
                (Class::GuestUser, 50, 50.0),
                (Class::HypervisorKvm, 50, 50.0)
            ]
        );
    }

    #[test]
    fn vms_sort_by_cpu_and_gone_vms_stay_marked() {
        let mut st = TopState::default();
        let small = |s| one_vcpu_vm(20, Class::GuestKernel, "idle", s);
        let big = |s| one_vcpu_vm(30, Class::GuestUser, "spin", s);
        let f = st.frame(&profile(1, vec![small(10), big(900)]), None, &|_| true);
        let pids: Vec<i32> = f.vms.iter().map(|v| v.pid).collect();
        assert_eq!(pids, [30, 20]);
        // VM 30 leaves the machines (system-wide rediscovery); VM 20's process is gone too.
        let f = st.frame(&profile(2, vec![small(20)]), None, &|pid| pid != 20);
        let states: Vec<(i32, VmState)> = f.vms.iter().map(|v| (v.pid, v.state)).collect();
        assert_eq!(states, [(20, VmState::Gone), (30, VmState::Gone)]);
        assert_eq!(f.vms[1].name, "vm30");
    }

    #[test]
    fn a_stat_interval_is_attached_to_its_vm_and_vcpus() {
        let f = stat_frame();
        assert_eq!(f.exit_source.as_deref(), Some("tracepoint kvm:kvm_exit"));
        assert_eq!(f.stat_interval, Some(1));
        assert_eq!(f.notes, ["a note", "stat note"]);
        let v = &f.vms[0];
        let e = v.exits.as_ref().expect("the VM's exits");
        assert_eq!(
            (e.source.as_str(), e.total),
            ("tracepoint kvm:kvm_exit", 300)
        );
        let reasons: Vec<(&str, u64)> = e
            .by_reason
            .iter()
            .map(|r| (r.name.as_str(), r.count))
            .collect();
        assert_eq!(reasons, [("HLT", 200), ("IO_INSTRUCTION", 100)]);
        assert_eq!(v.vcpus[0].exits_per_s, Some(300.0));
        let steal = v.vcpus[0].steal.as_ref().expect("vCPU 0's steal");
        assert_eq!((steal.source.as_str(), steal.ms_per_s), ("schedstat", 12.5));
    }
}
