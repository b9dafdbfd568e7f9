//! `hvprof stat`'s tracepoint path against recorded payloads: raw tracepoint records built from
//! the real tracefs `format` files of this machine (tests/fixtures/stat/), wrapped in
//! `PERF_RECORD_SAMPLE`s exactly as the kernel lays them out for `TID|TIME|CPU|RAW`, decoded and
//! accounted as `hvprof stat` does live. Covers VMX and SVM exit reasons, exit → entry
//! latency histograms, and the exit-path fallback (pio, mmio, hypercall, userspace exits).

use std::collections::BTreeMap;
use std::path::PathBuf;

use hvprof::stat::decode::{encode_lost, encode_sample, records, TpRecord};
use hvprof::stat::exits::{ExitTracker, Layouts, Tp};
use hvprof::stat::names;
use hvprof::stat::tracefs::TraceFormat;
use hvprof::stat::{exit_stat_from_counts, ExitStat};

fn fixture(name: &str) -> TraceFormat {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stat")
        .join(format!("{name}.format"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    TraceFormat::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A raw tracepoint record laid out as `f` says, with `common_type` = the id.
fn payload(f: &TraceFormat, pid: i32, values: &[(&str, u64)]) -> Vec<u8> {
    let len = f.fields.iter().map(|x| x.offset + x.size).max().unwrap();
    let mut raw = vec![0u8; len];
    let mut put = |name: &str, v: u64| {
        let x = f
            .field(name)
            .unwrap_or_else(|| panic!("{} has no field {name}", f.name));
        raw[x.offset..x.offset + x.size].copy_from_slice(&v.to_ne_bytes()[..x.size]);
    };
    put("common_type", f.id);
    put("common_pid", pid as u32 as u64);
    for (n, v) in values {
        put(n, *v);
    }
    raw
}

struct Recorder {
    formats: BTreeMap<Tp, TraceFormat>,
    /// One byte stream per tracepoint, as drained from its ring.
    rings: BTreeMap<Tp, Vec<u8>>,
}

impl Recorder {
    fn new() -> Recorder {
        let formats = Tp::ALL.iter().map(|&tp| (tp, fixture(tp.name()))).collect();
        Recorder {
            formats,
            rings: BTreeMap::new(),
        }
    }

    fn hit(&mut self, tp: Tp, tid: i32, t: u64, values: &[(&str, u64)]) {
        let raw = payload(&self.formats[&tp], tid, values);
        let rec = encode_sample(1000, tid, t, 0, &raw);
        self.rings.entry(tp).or_default().extend(rec);
    }

    fn layouts(&self) -> Layouts {
        let mut l = Layouts::default();
        for (&tp, f) in &self.formats {
            l.add(tp, f).expect("fixture has the fields");
        }
        l
    }

    /// Decodes every ring (each one in order, rings one after another, as `hvprof stat` drains
    /// them) into a tracker; returns it with the per-tracepoint sample counts.
    fn replay(&self, watermarks: &[u64]) -> (ExitTracker, u64) {
        let mut tr = ExitTracker::new(self.layouts());
        let mut lost = 0;
        for (&tp, bytes) in &self.rings {
            for r in records(bytes) {
                match r {
                    TpRecord::Sample(s) => tr.push(tp, &s),
                    TpRecord::Lost(n) => lost += n,
                    r => panic!("unexpected record {r:?}"),
                }
            }
        }
        for &w in watermarks {
            tr.flush(w);
        }
        tr.flush(u64::MAX);
        (tr, lost)
    }
}

fn row<'a>(e: &'a ExitStat, name: &str) -> &'a hvprof::stat::ReasonStat {
    e.by_reason
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no reason {name} in {:?}", e.by_reason))
}

#[test]
fn stat_fixtures_match_the_kernel_layouts() {
    let exit = fixture("kvm_exit");
    assert_eq!(exit.name, "kvm_exit");
    let f = exit.field("exit_reason").unwrap();
    assert_eq!((f.offset, f.size), (8, 4));
    assert_eq!(exit.field("isa").unwrap().offset, 24);
    assert_eq!(fixture("kvm_pio").field("port").unwrap().offset, 12);
    assert!(fixture("kvm_userspace_exit").field("errno").unwrap().signed);
    assert_eq!(fixture("kvm_mmio").field("gpa").unwrap().size, 8);
    assert_eq!(fixture("kvm_hypercall").field("nr").unwrap().size, 8);
    assert_eq!(fixture("kvm_fpu").field("load").unwrap().offset, 8);
}

#[test]
fn stat_vmx_exits_counts_names_latency() {
    let mut r = Recorder::new();
    let vmx = u64::from(names::KVM_ISA_VMX);
    let tid = 4242;
    let exit = |reason: u64| [("exit_reason", reason), ("isa", vmx), ("vcpu_id", 0)];
    // IO_INSTRUCTION ×3 (2 µs, 8 µs, 3 µs), EPT_VIOLATION ×1 (500 ns), HLT twice in a row
    // (the first has no entry: unmatched), CPUID with a FAILED_VMENTRY bit.
    r.hit(Tp::Exit, tid, 1_000, &exit(30));
    r.hit(Tp::Entry, tid, 3_000, &[("vcpu_id", 0)]);
    r.hit(Tp::Exit, tid, 10_000, &exit(48));
    r.hit(Tp::Entry, tid, 10_500, &[("vcpu_id", 0)]);
    r.hit(Tp::Exit, tid, 20_000, &exit(30));
    r.hit(Tp::Entry, tid, 28_000, &[]);
    r.hit(Tp::Exit, tid, 30_000, &exit(12));
    r.hit(Tp::Exit, tid, 40_000, &exit(12));
    r.hit(Tp::Entry, tid, 41_000, &[]);
    r.hit(Tp::Exit, tid, 50_000, &exit(30));
    r.hit(Tp::Entry, tid, 53_000, &[]);
    r.hit(Tp::Exit, tid, 60_000, &exit(0x8000_000a));
    r.hit(Tp::Entry, tid, 60_100, &[]);
    // Flushing in two steps (watermark in the middle of an exit) must give the same result.
    let (mut tr, lost) = r.replay(&[25_000]);
    assert_eq!(lost, 0);
    let counts = tr.take(tid);
    assert_eq!(counts.samples[&Tp::Exit], 7);
    assert_eq!(counts.samples[&Tp::Entry], 6);
    let e = exit_stat_from_counts(&counts, &BTreeMap::new(), 1_000_000_000);
    assert_eq!(e.source, "tracepoint kvm:kvm_exit");
    assert_eq!(e.total, 7);
    assert_eq!(e.unmatched, 1);
    let io = row(&e, "IO_INSTRUCTION");
    assert_eq!(io.isa.as_deref(), Some("vmx"));
    assert_eq!(io.code, Some(30));
    assert_eq!(io.count, 3);
    let l = io.latency.as_ref().unwrap();
    assert_eq!(
        (l.count, l.min_ns, l.max_ns, l.avg_ns),
        (3, 2_000, 8_000, 4_333)
    );
    // Percentiles are exact to 1/16 of their power of two.
    assert!(l.p50_ns.abs_diff(3_000) <= 2048 / 16, "p50 {}", l.p50_ns);
    // log2 buckets: 2000 in [1024, 2048), 3000 in [2048, 4096), 8000 in [4096, 8192).
    let b: Vec<(u64, u64)> = l.buckets.iter().map(|b| (b.lo_ns, b.count)).collect();
    assert_eq!(b, vec![(1024, 1), (2048, 1), (4096, 1)]);
    assert_eq!(
        row(&e, "EPT_VIOLATION").latency.as_ref().unwrap().max_ns,
        500
    );
    let hlt = row(&e, "HLT");
    assert_eq!(hlt.count, 2);
    assert_eq!(hlt.latency.as_ref().unwrap().count, 1);
    assert_eq!(hlt.latency.as_ref().unwrap().min_ns, 1_000);
    assert_eq!(row(&e, "CPUID FAILED_VMENTRY").count, 1);
    assert_eq!(e.by_reason[0].name, "IO_INSTRUCTION");
    assert!((io.percent - 300.0 / 7.0).abs() < 1e-9);
    let all = e.latency.as_ref().unwrap();
    assert_eq!(all.count, 6);
    assert_eq!(all.min_ns, 100);
    assert_eq!(all.max_ns, 8_000);
}

#[test]
fn stat_svm_exits_counts_names_latency_and_lost() {
    let mut r = Recorder::new();
    let svm = u64::from(names::KVM_ISA_SVM);
    let tid = 77;
    let exit = |reason: u64| [("exit_reason", reason), ("isa", svm)];
    for i in 0..100u64 {
        let t = 1_000_000 + i * 10_000;
        let (reason, lat) = match i % 4 {
            0 | 1 => (0x7b, 5_000),  // io
            2 => (0x400, 1_500),     // npf
            _ => (0x8000_0001, 700), // vmgexit_mmio_read
        };
        r.hit(Tp::Exit, tid, t, &exit(reason));
        r.hit(Tp::Entry, tid, t + lat, &[]);
    }
    r.rings.get_mut(&Tp::Entry).unwrap().extend(encode_lost(3));
    let (mut tr, lost) = r.replay(&[]);
    assert_eq!(lost, 3);
    let counts = tr.take(tid);
    let e = exit_stat_from_counts(&counts, &BTreeMap::from([(Tp::Exit, 100)]), 2_000_000_000);
    assert_eq!(e.total, 100);
    assert!((e.per_s - 50.0).abs() < 1e-9);
    let io = row(&e, "io");
    assert_eq!(
        (io.count, io.isa.as_deref(), io.code),
        (50, Some("svm"), Some(0x7b))
    );
    assert_eq!(io.latency.as_ref().unwrap().p99_ns, 5_000);
    assert_eq!(row(&e, "npf").count, 25);
    assert_eq!(
        row(&e, "vmgexit_mmio_read")
            .latency
            .as_ref()
            .unwrap()
            .avg_ns,
        700
    );
    let all = e.latency.unwrap();
    assert_eq!(all.count, 100);
    // 25 × 700, 25 × 1500, 50 × 5000: the 50th value is 1500 (exact to 1/16 of 1024).
    assert!(all.p50_ns.abs_diff(1_500) <= 64, "p50 {}", all.p50_ns);
    assert!(
        all.p99_ns.abs_diff(5_000) <= 4096 / 16,
        "p99 {}",
        all.p99_ns
    );
    assert_eq!((all.min_ns, all.max_ns), (700, 5_000));
}

#[test]
fn stat_exit_path_fallback_counts_and_round_trip() {
    // What this PVM host delivers: no kvm_exit/kvm_entry, but pio, mmio, hypercall,
    // userspace_exit and fpu.
    let mut r = Recorder::new();
    let tid = 9;
    let mut t = 1_000_000u64;
    for _ in 0..10 {
        // out 0x80 → userspace → back into KVM_RUN 20 µs later.
        r.hit(
            Tp::Pio,
            tid,
            t,
            &[("rw", 1), ("port", 0x80), ("size", 1), ("count", 1)],
        );
        r.hit(Tp::Fpu, tid, t + 500, &[("load", 0)]);
        r.hit(
            Tp::UserspaceExit,
            tid,
            t + 1_000,
            &[("reason", 2), ("errno", 0)],
        );
        r.hit(Tp::Fpu, tid, t + 20_000, &[("load", 1)]);
        r.hit(Tp::EmulateInsn, tid, t - 100, &[]);
        t += 100_000;
    }
    // An MMIO read satisfied by userspace: unsatisfied read at the exit, read at completion.
    r.hit(
        Tp::Mmio,
        tid,
        t,
        &[("type", 0), ("len", 4), ("gpa", 0xfee0_0030)],
    );
    r.hit(
        Tp::UserspaceExit,
        tid,
        t + 1_000,
        &[("reason", 6), ("errno", 0)],
    );
    r.hit(Tp::Fpu, tid, t + 50_000, &[("load", 1)]);
    r.hit(
        Tp::Mmio,
        tid,
        t + 51_000,
        &[("type", 1), ("len", 4), ("gpa", 0xfee0_0030)],
    );
    // An MMIO write handled in the kernel, a KVM hypercall (kick), an in port read.
    r.hit(
        Tp::Mmio,
        tid,
        t + 60_000,
        &[("type", 2), ("len", 4), ("gpa", 0xfec0_0000)],
    );
    r.hit(Tp::Hypercall, tid, t + 70_000, &[("nr", 5)]);
    r.hit(
        Tp::Pio,
        tid,
        t + 80_000,
        &[("rw", 0), ("port", 0x3f8), ("size", 1)],
    );
    // A signal interrupts KVM_RUN: restart (errno = -EINTR).
    r.hit(
        Tp::UserspaceExit,
        tid,
        t + 90_000,
        &[("reason", 10), ("errno", (-4i64) as u64)],
    );
    r.hit(Tp::Fpu, tid, t + 95_000, &[("load", 1)]);
    let (mut tr, _) = r.replay(&[t]);
    let counts = tr.take(tid);
    let e = exit_stat_from_counts(&counts, &BTreeMap::new(), 1_000_000_000);
    assert_eq!(
        e.source,
        "tracepoints kvm:kvm_userspace_exit+kvm:kvm_pio+kvm:kvm_mmio+kvm:kvm_hypercall"
    );
    // 11 pio + 2 mmio (the completion is not an exit) + 1 hypercall + 1 restart.
    assert_eq!(e.total, 15);
    let pio = row(&e, "PIO");
    assert_eq!(pio.count, 11);
    let l = pio.latency.as_ref().unwrap();
    assert_eq!((l.count, l.min_ns, l.max_ns), (10, 20_000, 20_000));
    let mmio = row(&e, "MMIO");
    assert_eq!(mmio.count, 2);
    assert_eq!(mmio.latency.as_ref().unwrap().min_ns, 50_000);
    assert_eq!(row(&e, "HYPERCALL").count, 1);
    let restart = row(&e, "restart (EINTR)");
    assert_eq!(restart.count, 1);
    assert_eq!(restart.latency.as_ref().unwrap().min_ns, 5_000);
    assert_eq!(e.pio[0].port, 0x80);
    assert_eq!(e.pio[0].dir, "out");
    assert_eq!(e.pio[0].count, 10);
    assert_eq!(e.pio[1].port, 0x3f8);
    assert_eq!(e.pio[1].dir, "in");
    assert_eq!(e.mmio.len(), 2);
    assert!(e
        .mmio
        .iter()
        .any(|m| m.gpa == 0xfee0_0030 && m.dir == "read" && m.count == 1));
    assert_eq!(e.hypercalls[0].name, "KVM_HC_KICK_CPU");
    let us: Vec<(&str, u64)> = e
        .userspace_exits
        .iter()
        .map(|r| (r.name.as_str(), r.count))
        .collect();
    assert_eq!(
        us,
        vec![
            ("KVM_EXIT_IO", 10),
            ("KVM_EXIT_MMIO", 1),
            ("restart (EINTR)", 1)
        ]
    );
    let all = e.latency.as_ref().unwrap();
    assert_eq!(all.count, 12);
    let tps: BTreeMap<&str, u64> = e
        .tracepoints
        .iter()
        .map(|t| (t.name.as_str(), t.samples))
        .collect();
    assert_eq!(tps["kvm:kvm_exit"], 0);
    assert_eq!(tps["kvm:kvm_emulate_insn"], 10);
    assert_eq!(tps["kvm:kvm_fpu"], 22);
}

#[test]
fn stat_xen_multicall_op_from_synthesized_format() {
    let f = fixture("xen_mc_entry");
    let op = f.field("op").unwrap();
    let raw = payload(&f, 1, &[("op", 29), ("nargs", 2)]);
    let rec = encode_sample(1, 1, 5, 0, &raw);
    let s = match records(&rec).next() {
        Some(TpRecord::Sample(s)) => s,
        r => panic!("{r:?}"),
    };
    let n = op.read_u32(s.raw).unwrap();
    assert_eq!(names::xen_hypercall_name(n), "sched_op");
    assert_eq!(f.field("args").unwrap().size, 48);
}

#[test]
fn stat_truncated_payloads_are_counted_not_fatal() {
    let r = Recorder::new();
    let mut tr = ExitTracker::new(r.layouts());
    let rec = encode_sample(1, 5, 10, 0, &[0u8; 8]); // kvm_exit payload cut after the header
    for rec in records(&rec) {
        if let TpRecord::Sample(s) = rec {
            tr.push(Tp::Exit, &s);
        }
    }
    tr.flush(u64::MAX);
    let c = tr.take(5);
    assert_eq!(c.undecodable, 1);
    assert_eq!(c.kvm_exits(), 0);
    // ... and reported, not dropped.
    let e = exit_stat_from_counts(&c, &BTreeMap::new(), 1_000_000_000);
    assert_eq!(e.undecodable, 1);
    assert_eq!(e.tracepoints.iter().map(|t| t.samples).sum::<u64>(), 1);
}
