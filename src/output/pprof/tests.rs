//! Unit tests of the pprof output: the gzipped bytes decoded back with prost and checked
//! against the profile they came from.

use std::io::Read;

use prost::Message;

use super::proto;
use super::*;
use crate::report::{
    ClassRow, Frame, GuestIpStatus, GuestProc, GuestView, Meta, Profile, StackOrigin, StackRow,
    SymbolRow, ThreadReport, VmReport,
};

/// 1 ms per sample: cpu-clock at 1 kHz.
const MS: u64 = 1_000_000;

fn f(class: Class, name: &str, dso: &str) -> Frame {
    Frame {
        class,
        symbol: Symbol::named(name, dso),
    }
}

fn stack(tid: i32, vcpu: Option<u32>, thread: &str, frames: Vec<Frame>, samples: u64) -> StackRow {
    StackRow {
        tid,
        vcpu,
        thread_name: thread.into(),
        guest: None,
        origin: StackOrigin::Host,
        leaf_only: frames.len() == 1,
        frames,
        samples,
        period: samples * MS,
    }
}

fn helper_stack(pid: u32, comm: &str, frames: Vec<Frame>, samples: u64) -> StackRow {
    StackRow {
        guest: Some(GuestProc {
            pid: Some(pid),
            comm: comm.into(),
        }),
        origin: StackOrigin::Helper,
        ..stack(-1, Some(0), "", frames, samples)
    }
}

/// A thread whose top symbols are the leaves of `stacks` (its own stacks), summed.
fn thread_of(tid: i32, vcpu: Option<u32>, name: &str, stacks: &[StackRow]) -> ThreadReport {
    let mine: Vec<&StackRow> = stacks.iter().filter(|s| s.tid == tid).collect();
    let samples: u64 = mine.iter().map(|s| s.samples).sum();
    let mut top: Vec<SymbolRow> = Vec::new();
    let mut classes: Vec<ClassRow> = Vec::new();
    for s in &mine {
        let leaf = s.leaf().expect("fixture stacks have frames");
        match top
            .iter_mut()
            .find(|r| r.symbol == leaf.symbol && r.class == leaf.class)
        {
            Some(r) => r.samples += s.samples,
            None => top.push(SymbolRow {
                class: leaf.class,
                symbol: leaf.symbol.clone(),
                samples: s.samples,
                percent: 0.0,
                inclusive_samples: s.samples,
                inclusive_percent: 0.0,
            }),
        }
        match classes.iter_mut().find(|c| c.class == leaf.class) {
            Some(c) => c.samples += s.samples,
            None => classes.push(ClassRow {
                class: leaf.class,
                samples: s.samples,
                period: 0,
                percent: 0.0,
            }),
        }
    }
    top.sort_by_key(|r| std::cmp::Reverse(r.samples));
    ThreadReport {
        tid,
        vcpu,
        name: name.into(),
        samples,
        period: mine.iter().map(|s| s.period).sum(),
        on_cpu_ns: None,
        expected_samples: None,
        lost: 0,
        throttled: 0,
        classes,
        top_symbols: top,
    }
}

/// VM 10: vCPU 0 (tid 11) with a 3-frame hypervisor stack (30) and guest-user `hot_b` (50),
/// vCPU 1 (tid 12) in guest-kernel `do_syscall` (20), an I/O thread (tid 13) in an unknown
/// VMM address (10); the helper saw guest process 100 `work` in `main → hot_b` (45), beside
/// the host's view. Host processes that are not VMs: `schedule` (5), without stacks.
fn fixture() -> Profile {
    let stacks = vec![
        stack(
            11,
            Some(0),
            "CPU 0/KVM",
            vec![f(Class::GuestUser, "hot_b", "[guest.user]")],
            50,
        ),
        stack(
            11,
            Some(0),
            "CPU 0/KVM",
            vec![
                f(Class::Vmm, "main", "qemu-system-x86_64"),
                f(Class::HypervisorKvm, "kvm_vcpu_ioctl", "[kvm]"),
                f(Class::HypervisorKvm, "vmx_vcpu_run", "[kvm]"),
            ],
            30,
        ),
        stack(
            12,
            Some(1),
            "CPU 1/KVM",
            vec![f(Class::GuestKernel, "do_syscall", "[guest.kernel]")],
            20,
        ),
        stack(
            13,
            None,
            "IO thread",
            vec![
                f(Class::Vmm, "main", "qemu-system-x86_64"),
                Frame {
                    class: Class::Vmm,
                    symbol: Symbol::unknown(0x1234, "qemu-system-x86_64", "no symbols"),
                },
            ],
            10,
        ),
    ];
    let vcpus = vec![
        thread_of(11, Some(0), "CPU 0/KVM", &stacks),
        thread_of(12, Some(1), "CPU 1/KVM", &stacks),
    ];
    let other = vec![thread_of(13, None, "IO thread", &stacks)];
    let helper = vec![helper_stack(
        100,
        "work",
        vec![
            f(Class::GuestUser, "main", "work"),
            f(Class::GuestUser, "hot_b", "work"),
        ],
        45,
    )];
    let host = stack(
        -1,
        None,
        "",
        vec![f(Class::HypervisorKernel, "schedule", "[kernel.kallsyms]")],
        5,
    );
    let host_other = ThreadReport {
        name: "host".into(),
        ..thread_of(-1, None, "host", &[host])
    };
    let vm = VmReport {
        id: crate::model::VmId::Vmm(10),
        pid: 10,
        name: "vm10".into(),
        vcpu_count: 2,
        samples: 110,
        lost: 0,
        throttled: 0,
        classes: Vec::new(),
        top_symbols: Vec::new(),
        vcpus,
        other_threads: other,
        guest: Some(GuestView {
            summary: Default::default(),
            processes: Vec::new(),
            samples: 45,
            in_class_table: false,
            stacks: helper,
        }),
        stacks,
    };
    Profile {
        schema: crate::report::SCHEMA_VERSION,
        meta: Meta {
            event: "cpu-clock".into(),
            rate: Rate::Frequency(1000),
            period_is_ns: true,
            duration_ns: 2_000_000_000,
            mode: "threads".into(),
            host: "h".into(),
            kernel: "6.18".into(),
            start_unix_ns: 1_700_000_000_000_000_000,
        },
        guest_ips: GuestIpStatus::default(),
        notes: vec!["a note".into()],
        vms: vec![vm],
        host_other: Some(host_other),
        host_stacks: Vec::new(),
        callchains: true,
        total_samples: 115,
        total_lost: 0,
        total_throttled: 0,
    }
}

/// Gunzips and decodes `render(p)`.
fn decode(p: &Profile) -> proto::Profile {
    let gz = render(p).expect("renders");
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .expect("gunzips");
    proto::Profile::decode(&raw[..]).expect("decodes as profile.proto")
}

fn s(p: &proto::Profile, i: i64) -> &str {
    &p.string_table[usize::try_from(i).expect("index >= 0")]
}

/// The string label `key` of `sample`, if any.
fn label<'a>(p: &'a proto::Profile, sample: &proto::Sample, key: &str) -> Option<&'a str> {
    sample
        .label
        .iter()
        .find(|l| s(p, l.key) == key && l.str != 0)
        .map(|l| s(p, l.str))
}

/// Function names of `sample`'s locations, in the file's order (leaf first).
fn names(p: &proto::Profile, sample: &proto::Sample) -> Vec<String> {
    sample
        .location_id
        .iter()
        .map(|&id| {
            let loc = &p.location[usize::try_from(id - 1).unwrap()];
            assert_eq!(loc.id, id);
            assert_eq!(loc.line.len(), 1);
            let func = &p.function[usize::try_from(loc.line[0].function_id - 1).unwrap()];
            s(p, func.name).to_string()
        })
        .collect()
}

fn total(p: &proto::Profile, origin: &str, slot: usize) -> i64 {
    p.sample
        .iter()
        .filter(|x| label(p, x, "origin") == Some(origin))
        .map(|x| x.value[slot])
        .sum()
}

#[test]
fn header_string_table_and_types() {
    let p = decode(&fixture());
    assert_eq!(p.string_table[0], "");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(&p, t.r#type), s(&p, t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let pt = p.period_type.as_ref().expect("period type");
    assert_eq!((s(&p, pt.r#type), s(&p, pt.unit)), ("cpu", "nanoseconds"));
    assert_eq!(p.period, 1_000_000, "1 kHz cpu-clock: 1 ms");
    assert_eq!(s(&p, p.default_sample_type), "samples");
    assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);
    assert_eq!(p.duration_nanos, 2_000_000_000);
    let comments: Vec<&str> = p.comment.iter().map(|&c| s(&p, c)).collect();
    assert!(
        comments[0].contains("cpu-clock") && comments[0].contains("1000 Hz"),
        "{comments:?}"
    );
    assert!(comments.contains(&"note: a note"), "{comments:?}");
    // Each string once.
    let mut sorted = p.string_table.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), p.string_table.len());
}

#[test]
fn ids_are_dense_and_every_reference_resolves() {
    let p = decode(&fixture());
    for (i, m) in p.mapping.iter().enumerate() {
        assert_eq!(m.id, i as u64 + 1);
        assert!(m.has_functions);
    }
    for (i, fun) in p.function.iter().enumerate() {
        assert_eq!(fun.id, i as u64 + 1);
    }
    for (i, loc) in p.location.iter().enumerate() {
        assert_eq!(loc.id, i as u64 + 1);
        assert!((1..=p.mapping.len() as u64).contains(&loc.mapping_id));
        let fid = loc.line[0].function_id;
        assert!((1..=p.function.len() as u64).contains(&fid));
        let fun = &p.function[fid as usize - 1];
        let map = &p.mapping[loc.mapping_id as usize - 1];
        assert_eq!(
            fun.filename, map.filename,
            "function file is the location's dso"
        );
    }
    for x in &p.sample {
        assert_eq!(x.value.len(), p.sample_type.len());
        for &id in &x.location_id {
            assert!((1..=p.location.len() as u64).contains(&id));
        }
    }
    let dsos: Vec<&str> = p.mapping.iter().map(|m| s(&p, m.filename)).collect();
    for d in [
        "[guest.user]",
        "qemu-system-x86_64",
        "[kvm]",
        "[guest.kernel]",
        "work",
        "[kernel.kallsyms]",
    ] {
        assert_eq!(
            dsos.iter().filter(|&&x| x == d).count(),
            1,
            "one mapping for {d}: {dsos:?}"
        );
    }
}

#[test]
fn locations_are_leaf_first_and_shared() {
    let p = decode(&fixture());
    let all: Vec<Vec<String>> = p.sample.iter().map(|x| names(&p, x)).collect();
    assert!(
        all.contains(&vec![
            "vmx_vcpu_run".into(),
            "kvm_vcpu_ioctl".into(),
            "main".into()
        ]),
        "{all:?}"
    );
    assert!(
        all.contains(&vec!["[unknown] 0x1234".into(), "main".into()]),
        "{all:?}"
    );
    // `main` of qemu is one location in both stacks; the helper's `main` (dso `work`) another.
    let qemu_main: Vec<u64> = p
        .sample
        .iter()
        .filter(|x| x.location_id.len() > 1 && label(&p, x, "origin") == Some("host"))
        .map(|x| *x.location_id.last().unwrap())
        .collect();
    assert_eq!(qemu_main.len(), 2);
    assert_eq!(qemu_main[0], qemu_main[1]);
    let unknown = p
        .location
        .iter()
        .find(|l| l.address == 0x1234)
        .expect("unknown keeps its address");
    let fun = &p.function[unknown.line[0].function_id as usize - 1];
    assert_eq!(s(&p, fun.system_name), "[unknown]");
    // hot_b: guest-user in [guest.user] (host) and in `work` (helper): two locations.
    let hot_b = p
        .function
        .iter()
        .filter(|x| s(&p, x.name) == "hot_b")
        .count();
    assert_eq!(hot_b, 2);
}

#[test]
fn one_location_per_symbol_dso_and_class() {
    let mut prof = fixture();
    // The same symbol as guest-hidden (landing) and as hypervisor-kvm.
    let landing = stack(
        11,
        Some(0),
        "CPU 0/KVM",
        vec![f(Class::GuestHidden, "vmx_vcpu_run", "[kvm]")],
        7,
    );
    prof.vms[0].stacks.push(landing);
    let p = decode(&prof);
    let funcs = p
        .function
        .iter()
        .filter(|x| s(&p, x.name) == "vmx_vcpu_run")
        .count();
    assert_eq!(funcs, 1, "one function");
    let fid = p
        .function
        .iter()
        .find(|x| s(&p, x.name) == "vmx_vcpu_run")
        .unwrap()
        .id;
    let locs = p
        .location
        .iter()
        .filter(|l| l.line[0].function_id == fid)
        .count();
    assert_eq!(locs, 2, "one location per class");
}

#[test]
fn labels_name_vm_vcpu_class_thread_guest_and_origin() {
    let p = decode(&fixture());
    let hyp = p
        .sample
        .iter()
        .find(|x| names(&p, x).len() == 3)
        .expect("the hypervisor stack");
    assert_eq!(label(&p, hyp, "vm"), Some("vm10"));
    assert_eq!(label(&p, hyp, "vm_id"), Some("10"));
    assert_eq!(label(&p, hyp, "vcpu"), Some("0"));
    assert_eq!(label(&p, hyp, "class"), Some("hypervisor-kvm"));
    assert_eq!(label(&p, hyp, "thread"), Some("CPU 0/KVM"));
    assert_eq!(label(&p, hyp, "origin"), Some("host"));
    assert_eq!(hyp.value, [30, 30 * MS as i64]);
    assert_eq!(label(&p, hyp, "guest_pid"), None);

    let io = p
        .sample
        .iter()
        .find(|x| label(&p, x, "thread") == Some("IO thread"))
        .unwrap();
    assert_eq!(label(&p, io, "vcpu"), None, "not a vCPU");
    assert_eq!(label(&p, io, "class"), Some("vmm"));

    let helper = p
        .sample
        .iter()
        .find(|x| label(&p, x, "origin") == Some("helper"))
        .unwrap();
    assert_eq!(label(&p, helper, "guest_pid"), Some("100"));
    assert_eq!(label(&p, helper, "comm"), Some("work"));
    assert_eq!(label(&p, helper, "class"), Some("guest-user"));
    assert_eq!(label(&p, helper, "vm"), Some("vm10"));
    assert_eq!(names(&p, helper), ["hot_b", "main"]);

    let host = p
        .sample
        .iter()
        .find(|x| label(&p, x, "thread") == Some("host"))
        .unwrap();
    assert_eq!(label(&p, host, "vm"), None, "not a VM");
    assert_eq!(names(&p, host), ["schedule"]);
}

#[test]
fn host_totals_equal_the_profile_and_helper_samples_stand_apart() {
    let prof = fixture();
    let p = decode(&prof);
    assert_eq!(total(&p, "host", 0), prof.total_samples as i64);
    assert_eq!(total(&p, "host", 1), (prof.total_samples * MS) as i64);
    assert_eq!(total(&p, "helper", 0), 45);
    assert_eq!(
        p.sample.len(),
        4 + 1 + 1,
        "4 VM stacks, 1 helper stack, 1 host symbol"
    );
}

#[test]
fn helper_stacks_in_the_class_table_replace_host_guest_samples() {
    let mut prof = fixture();
    prof.vms[0].guest.as_mut().unwrap().in_class_table = true;
    let p = decode(&prof);
    let host_guest: i64 = p
        .sample
        .iter()
        .filter(|x| label(&p, x, "origin") == Some("host"))
        .filter(|x| matches!(label(&p, x, "class"), Some("guest-user" | "guest-kernel")))
        .map(|x| x.value[0])
        .sum();
    assert_eq!(
        host_guest, 0,
        "host guest-class stacks of the VM are left out"
    );
    assert_eq!(total(&p, "host", 0), 30 + 10 + 5);
    assert_eq!(total(&p, "helper", 0), 45);
}

#[test]
fn without_stacks_each_thread_symbol_is_a_one_frame_sample() {
    let mut prof = fixture();
    prof.vms[0].stacks.clear();
    prof.vms[0].guest = None;
    // An odd period, so the shares must round: 50 and 30 samples of 80 in 1001 ns.
    prof.vms[0].vcpus[0].period = 1001;
    // A caller with no sample of its own (`--children` rows): not a sample.
    prof.vms[0].vcpus[0].top_symbols.push(SymbolRow {
        class: Class::HypervisorKvm,
        symbol: Symbol::named("kvm_vcpu_ioctl", "[kvm]"),
        samples: 0,
        percent: 0.0,
        inclusive_samples: 30,
        inclusive_percent: 37.5,
    });
    let p = decode(&prof);
    assert!(p.sample.iter().all(|x| x.value[0] > 0));
    assert_eq!(total(&p, "host", 0), prof.total_samples as i64);
    assert!(p.sample.iter().all(|x| x.location_id.len() == 1));
    let cpu0: Vec<&proto::Sample> = p
        .sample
        .iter()
        .filter(|x| label(&p, x, "vcpu") == Some("0"))
        .collect();
    assert_eq!(cpu0.len(), 2);
    assert_eq!(cpu0.iter().map(|x| x.value[1]).sum::<i64>(), 1001);
    let hot_b = cpu0.iter().find(|x| names(&p, x) == ["hot_b"]).unwrap();
    assert_eq!(hot_b.value, [50, 625], "50/80 of 1001 ns, rounded down");
    assert_eq!(label(&p, hot_b, "class"), Some("guest-user"));
    assert_eq!(label(&p, hot_b, "thread"), Some("CPU 0/KVM"));
}

#[test]
fn guest_processes_stand_in_for_missing_helper_stacks() {
    let mut prof = fixture();
    let g = prof.vms[0].guest.as_mut().unwrap();
    g.stacks.clear();
    g.processes = vec![crate::report::guest::GuestProcessReport {
        vm_pid: 10,
        guest_pid: Some(100),
        comm: "work".into(),
        samples: 45,
        period: 45 * MS,
        percent: 100.0,
        threads: Vec::new(),
        classes: Vec::new(),
        top_symbols: vec![SymbolRow {
            class: Class::GuestUser,
            symbol: Symbol::named("hot_b", "work"),
            samples: 45,
            percent: 100.0,
            inclusive_samples: 45,
            inclusive_percent: 100.0,
        }],
    }];
    let p = decode(&prof);
    let helper: Vec<&proto::Sample> = p
        .sample
        .iter()
        .filter(|x| label(&p, x, "origin") == Some("helper"))
        .collect();
    assert_eq!(helper.len(), 1);
    assert_eq!(helper[0].value, [45, (45 * MS) as i64]);
    assert_eq!(label(&p, helper[0], "guest_pid"), Some("100"));
    assert_eq!(total(&p, "host", 0), prof.total_samples as i64);
    // In the class table, the processes are already in the host's counts.
    prof.vms[0].guest.as_mut().unwrap().in_class_table = true;
    let p = decode(&prof);
    assert_eq!(total(&p, "helper", 0), 0);
}

#[test]
fn events_without_ns_periods_are_counted_in_events() {
    let mut prof = fixture();
    prof.meta.event = "cycles".into();
    prof.meta.period_is_ns = false;
    prof.meta.rate = Rate::Period(100_000);
    let p = decode(&prof);
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(&p, t.r#type), s(&p, t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cycles", "count")]);
    let pt = p.period_type.as_ref().unwrap();
    assert_eq!((s(&p, pt.r#type), s(&p, pt.unit)), ("cycles", "count"));
    assert_eq!(p.period, 100_000);
    prof.meta.rate = Rate::Frequency(4000);
    assert_eq!(decode(&prof).period, 0, "adjusted by the kernel: unknown");
}

#[test]
fn period_shares_sum_to_the_total() {
    assert_eq!(shares(10, 3, [1, 1, 1].into_iter()), [3, 3, 4]);
    assert_eq!(shares(1001, 80, [50, 30].into_iter()), [625, 376]);
    assert_eq!(shares(5, 0, [0, 0].into_iter()), [0, 0]);
    // Rows with more samples than `of` (inconsistent input) never exceed the total.
    assert_eq!(shares(10, 1, [2, 2].into_iter()), [10, 0]);
    assert_eq!(
        shares(u64::MAX, u64::MAX, [u64::MAX].into_iter()),
        [u64::MAX]
    );
}
