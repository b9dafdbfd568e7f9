//! Snapshots for the unit tests of `hvprof top`'s frames: threads, VMs and profiles of
//! cpu-clock at 1 kHz, and one `hvprof stat` interval.

use std::collections::BTreeMap;

use crate::attribute::{Class, Symbol};
use crate::counters::Rate;
use crate::report::{ClassRow, GuestIpStatus, Meta, Profile, SymbolRow, ThreadReport, VmReport};
use crate::stat::exits::{CountHist, ExitCounts, Tp};
use crate::stat::names::KVM_ISA_VMX;
use crate::stat::{ExitStat, StatReport, VmStat};

use super::{TopFrame, TopState};

/// Each sample is 1 ms of cpu-clock (1 kHz).
const MS: u64 = 1_000_000;

/// A thread with `(class, symbol, samples)` rows.
pub(super) fn thread(tid: i32, vcpu: Option<u32>, rows: &[(Class, &str, u64)]) -> ThreadReport {
    let samples: u64 = rows.iter().map(|r| r.2).sum();
    let mut classes: Vec<ClassRow> = Vec::new();
    for &(class, _, n) in rows {
        match classes.iter_mut().find(|c| c.class == class) {
            Some(c) => {
                c.samples += n;
                c.period += n * MS;
            }
            None => classes.push(ClassRow {
                class,
                samples: n,
                period: n * MS,
                percent: 0.0,
            }),
        }
    }
    ThreadReport {
        tid,
        vcpu,
        name: format!("t{tid}"),
        samples,
        period: samples * MS,
        on_cpu_ns: None,
        expected_samples: None,
        lost: 0,
        throttled: 0,
        classes,
        top_symbols: rows
            .iter()
            .map(|&(class, name, n)| SymbolRow {
                class,
                symbol: Symbol::named(name, "[guest]"),
                samples: n,
                percent: 0.0,
                inclusive_samples: n,
                inclusive_percent: 0.0,
            })
            .collect(),
    }
}

/// A VM whose totals are its threads' sums.
pub(super) fn vm(pid: i32, vcpus: Vec<ThreadReport>) -> VmReport {
    let mut classes: Vec<ClassRow> = Vec::new();
    let mut syms: Vec<SymbolRow> = Vec::new();
    for t in &vcpus {
        for c in &t.classes {
            match classes.iter_mut().find(|x| x.class == c.class) {
                Some(x) => {
                    x.samples += c.samples;
                    x.period += c.period;
                }
                None => classes.push(c.clone()),
            }
        }
        for r in &t.top_symbols {
            match syms.iter_mut().find(|x| x.symbol == r.symbol) {
                Some(x) => x.samples += r.samples,
                None => syms.push(r.clone()),
            }
        }
    }
    VmReport {
        id: crate::model::VmId::Vmm(pid),
        pid,
        name: format!("vm{pid}"),
        vcpu_count: vcpus.len(),
        samples: vcpus.iter().map(|t| t.samples).sum(),
        lost: 0,
        throttled: 0,
        classes,
        top_symbols: syms,
        vcpus,
        other_threads: Vec::new(),
        guest: None,
        stacks: Vec::new(),
    }
}

/// A VM with one vCPU (tid `pid + 1`) that spent `samples` ms in `symbol` of `class`.
pub(super) fn one_vcpu_vm(pid: i32, class: Class, symbol: &str, samples: u64) -> VmReport {
    vm(
        pid,
        vec![thread(pid + 1, Some(0), &[(class, symbol, samples)])],
    )
}

/// A profile of `secs` seconds of cpu-clock at 1 kHz (threads mode) with `vms` and one note.
pub(super) fn profile(secs: u64, vms: Vec<VmReport>) -> Profile {
    Profile {
        schema: crate::report::SCHEMA_VERSION,
        meta: Meta {
            event: "cpu-clock".into(),
            rate: Rate::Frequency(1000),
            period_is_ns: true,
            duration_ns: secs * 1_000_000_000,
            mode: "threads".into(),
            host: "h".into(),
            kernel: "k".into(),
            start_unix_ns: 0,
        },
        guest_ips: GuestIpStatus::default(),
        notes: vec!["a note".into()],
        host_stacks: Vec::new(),
        callchains: false,
        total_samples: vms.iter().map(|v| v.samples).sum(),
        vms,
        host_other: None,
        total_lost: 0,
        total_throttled: 0,
    }
}

/// One second of `hvprof stat` for VM `pid` with one vCPU: 300 exits, 12.5 ms/s steal.
pub(super) fn stat_fixture(pid: i32) -> StatReport {
    StatReport {
        interval: Some(1),
        start_s: 0.0,
        duration_s: 1.0,
        exit_source: "tracepoint kvm:kvm_exit".into(),
        vms: vec![VmStat {
            pid,
            name: "vm".into(),
            exited: false,
            exits: exits(),
            vcpus: vec![crate::stat::VcpuStat {
                index: 0,
                tid: Some(pid + 1),
                exited: false,
                exits: exits(),
                steal: Some(crate::stat::steal::VcpuSteal {
                    source: "schedstat".into(),
                    run_delay_ns: 12_500_000,
                    ms_per_s: 12.5,
                    percent: 1.25,
                    on_cpu_ns: 900_000_000,
                    on_cpu_percent: 90.0,
                    per_tick: None,
                    tick_ms: 20.0,
                }),
            }],
            debugfs: None,
        }],
        guest_steal: None,
        xen_hypercalls: crate::stat::XenHypercalls {
            source: "none".into(),
            available: false,
            detail: None,
            total: 0,
            by_op: Vec::new(),
            lost: 0,
            corrupt: 0,
            ring_errors: 0,
        },
        tracepoints: Vec::new(),
        notes: vec!["stat note".into()],
    }
}

/// Two seconds of a VM (pid 10) with two vCPUs: in the first vCPU 0 runs `hot_a` (900 ms) and
/// vCPU 1 `hot_b` (100 ms); in the second vCPU 1 takes over (900 ms more of `hot_b`) and vCPU 0
/// spends 50 ms in `hot_a` and 50 ms in the hypervisor.
fn two_seconds() -> (Profile, Profile) {
    let p1 = profile(
        1,
        vec![vm(
            10,
            vec![
                thread(11, Some(0), &[(Class::GuestUser, "hot_a", 900)]),
                thread(12, Some(1), &[(Class::GuestUser, "hot_b", 100)]),
            ],
        )],
    );
    let p2 = profile(
        2,
        vec![vm(
            10,
            vec![
                thread(
                    11,
                    Some(0),
                    &[
                        (Class::GuestUser, "hot_a", 950),
                        (Class::HypervisorKvm, "vmx_vcpu_run", 50),
                    ],
                ),
                thread(12, Some(1), &[(Class::GuestUser, "hot_b", 1000)]),
            ],
        )],
    );
    (p1, p2)
}

/// One second of exits as `hvprof stat` figures them from `kvm:kvm_exit` on VT-x: 200 `HLT`
/// and 100 `IO_INSTRUCTION`.
fn exits() -> ExitStat {
    let mut counts = ExitCounts::default();
    for (reason, count) in [(12, 200), (30, 100)] {
        counts.by_reason.insert(
            (KVM_ISA_VMX, reason),
            CountHist {
                count,
                ..CountHist::default()
            },
        );
    }
    let tp_counts = BTreeMap::from([(Tp::Exit, 300)]);
    crate::stat::exit_stat_from_counts(&counts, &tp_counts, 1_000_000_000)
}

/// The two frames of [`two_seconds`], from one [`TopState`].
pub(super) fn two_frames() -> (TopFrame, TopFrame) {
    let (p1, p2) = two_seconds();
    let mut st = TopState::default();
    let f1 = st.frame(&p1, None, &|_| true);
    (f1, st.frame(&p2, None, &|_| true))
}

/// The first frame of VM 40 (one vCPU, tid 41) with [`stat_fixture`]'s interval attached.
pub(super) fn stat_frame() -> TopFrame {
    let p = profile(1, vec![one_vcpu_vm(40, Class::GuestUser, "f", 5)]);
    TopState::default().frame(&p, Some(&stat_fixture(40)), &|_| true)
}
