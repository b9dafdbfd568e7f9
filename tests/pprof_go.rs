//! `--format pprof` read by Go's own pprof (`go tool pprof`, Debian's golang-go): `-top` shows
//! the same functions and flat shares as hvprof's text report, and `-traces` the same stacks,
//! root → leaf, with hvprof's labels. Profiles come from a [`Profile`] built in-process (stacks
//! of several classes, a helper's guest stack beside the host's view) and from a perf.data
//! recording synthesized byte for byte and replayed through hvprof's report path.
//!
//! Needs `go` on PATH; without it each test prints why and passes, except under `CI=true`
//! (CI installs golang-go through guest-image/ci-deps.sh), where it fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hvprof::attribute::{Class, Symbol};
use hvprof::counters::Rate;
use hvprof::model::VmId;
use hvprof::output::{pprof, text};
use hvprof::report::{
    ClassRow, Frame, GuestIpStatus, GuestProc, GuestView, Meta, Profile, StackOrigin, StackRow,
    SymbolRow, ThreadReport, VmReport, SCHEMA_VERSION,
};

const MS: u64 = 1_000_000;

/// True when `go` runs; otherwise says why the test is skipped (a failure under `CI=true`).
fn have_go() -> bool {
    let ok = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and `go` is not installed: guest-image/ci-deps.sh installs golang-go"
        );
        eprintln!(
            "skipping: `go` is not installed (apt-get install golang-go) to read pprof files"
        );
    }
    ok
}

/// `go tool pprof ARGS FILE`'s stdout; panics with its stderr when it fails.
fn go_pprof(args: &[&str], file: &Path) -> String {
    let tmp = file.parent().expect("file in a directory");
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .env("PPROF_TMPDIR", tmp)
        .env("HOME", tmp)
        .env("GOCACHE", tmp.join("gocache"))
        .output()
        .expect("run go tool pprof");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The numbers of hvprof's text report: the total samples and, per function, the samples
/// whose leaf it is (the VMs' symbol rows and the non-VM host thread's).
#[derive(Debug, Default)]
struct TextNumbers {
    total: u64,
    by_function: BTreeMap<String, u64>,
}

/// Parses [`text::render`]'s output: the `samples N, ...` line, then each `top symbols:` block
/// at VM level (3 spaces) and of the `host processes that are not VMs` thread.
fn parse_text(report: &str) -> TextNumbers {
    let mut n = TextNumbers::default();
    let mut in_host = false;
    let mut collecting = false;
    for line in report.lines() {
        if let Some(rest) = line.strip_prefix("samples ") {
            n.total = rest.split(',').next().unwrap().trim().parse().unwrap();
            continue;
        }
        if line.starts_with("== ") {
            in_host = line.starts_with("== host processes");
            collecting = false;
            continue;
        }
        // `   top symbols:` or `   top symbols (children = with callees, self):`
        let header = if in_host {
            "     top symbols"
        } else {
            "   top symbols"
        };
        if line.starts_with(header) && line.ends_with(':') {
            collecting = true;
            continue;
        }
        if !collecting {
            continue;
        }
        // `{self:>6.2}% {samples:>8}  {class:<22} {name} {dso}`, with `{children:>6.2}% ` first
        // when callchains were recorded; `samples` is self (leaf) samples.
        let t: Vec<&str> = line.split_whitespace().collect();
        let pcts = t.iter().take_while(|x| x.ends_with('%')).count();
        if pcts == 0 || t.len() < pcts + 4 {
            collecting = false;
            continue;
        }
        let samples: u64 = t[pcts].parse().unwrap();
        let name = t[pcts + 2..t.len() - 1].join(" ");
        *n.by_function.entry(name).or_default() += samples;
    }
    n
}

/// `go tool pprof -top`: the total (`... of N total`) and each function's flat percent.
fn parse_top(out: &str) -> (u64, BTreeMap<String, f64>) {
    let total = out
        .lines()
        .find_map(|l| {
            let l = l.trim().strip_suffix(" total")?;
            l.rsplit(" of ").next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no total in:\n{out}"));
    let mut rows = BTreeMap::new();
    let mut table = false;
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.first() == Some(&"flat") {
            table = true;
            continue;
        }
        if !table || t.len() < 6 {
            continue;
        }
        let pct: f64 = t[1].trim_end_matches('%').parse().unwrap();
        rows.insert(t[5..].join(" "), pct);
    }
    (total, rows)
}

/// One sample of `go tool pprof -traces`.
#[derive(Debug)]
struct Trace {
    labels: BTreeMap<String, String>,
    value: String,
    /// Frames as pprof prints them: leaf first.
    frames: Vec<String>,
}

/// Parses `-traces`: blocks between `-----------+---...` separators, label lines
/// `{key:>10}:  {values}`, then frames `{value:>10}   {name}` (value on the leaf only).
fn parse_traces(out: &str) -> Vec<Trace> {
    let mut traces = Vec::new();
    for block in out
        .split("-----------+-------------------------------------------------------")
        .skip(1)
    {
        let mut t = Trace {
            labels: BTreeMap::new(),
            value: String::new(),
            frames: Vec::new(),
        };
        for line in block.lines().filter(|l| l.len() > 13) {
            match line.get(10..13) {
                Some(":  ") => {
                    t.labels
                        .insert(line[..10].trim().into(), line[13..].trim().into());
                }
                Some("   ") => {
                    if t.frames.is_empty() {
                        t.value = line[..10].trim().into();
                    }
                    t.frames.push(line[13..].trim().into());
                }
                _ => {}
            }
        }
        if !t.frames.is_empty() {
            traces.push(t);
        }
    }
    traces
}

/// Renders `p` to `dir/name` and checks `go tool pprof -top` against hvprof's text report
/// (host view: helper samples ignored), within 0.1 points per function.
fn check_top_matches_text(p: &Profile, dir: &Path, name: &str) -> std::path::PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, pprof::render(p).expect("pprof renders")).unwrap();
    let report = text::render(p, usize::MAX);
    let want = parse_text(&report);
    assert!(want.total > 0 && !want.by_function.is_empty(), "{report}");
    let top = go_pprof(
        &[
            "-top",
            "-nodecount=100",
            "-nodefraction=0",
            "-edgefraction=0",
            "-tagignore=origin=helper",
            "-relative_percentages",
        ],
        &file,
    );
    let (total, rows) = parse_top(&top);
    assert_eq!(
        total, want.total,
        "pprof's total is the report's\n{top}\n{report}"
    );
    // pprof also lists callers with no self samples (flat 0); the report's rows may too.
    let with_flat: Vec<&String> = rows.iter().filter(|r| *r.1 > 0.0).map(|r| r.0).collect();
    let want_flat: Vec<&String> = want
        .by_function
        .iter()
        .filter(|r| *r.1 > 0)
        .map(|r| r.0)
        .collect();
    assert_eq!(with_flat, want_flat, "same functions\n{top}\n{report}");
    for f in rows.keys().chain(want.by_function.keys()) {
        let n = want.by_function.get(f).copied().unwrap_or(0);
        let share = 100.0 * n as f64 / want.total as f64;
        let got = rows.get(f).copied().unwrap_or(0.0);
        assert!(
            (got - share).abs() <= 0.1,
            "{f}: pprof flat {got}%, hvprof {share:.2}% ({n} of {})\n{top}\n{report}",
            want.total
        );
    }
    file
}

fn frame(class: Class, name: &str, dso: &str) -> Frame {
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

/// Symbol rows (leaf, samples) of `stacks`, most samples first, percent of `of`.
fn leaf_rows<'a>(stacks: impl Iterator<Item = &'a StackRow>, of: u64) -> Vec<SymbolRow> {
    let mut rows: Vec<SymbolRow> = Vec::new();
    for s in stacks {
        let leaf = s.leaf().unwrap();
        match rows
            .iter_mut()
            .find(|r| r.symbol == leaf.symbol && r.class == leaf.class)
        {
            Some(r) => r.samples += s.samples,
            None => rows.push(SymbolRow {
                class: leaf.class,
                symbol: leaf.symbol.clone(),
                samples: s.samples,
                percent: 0.0,
                inclusive_samples: 0,
                inclusive_percent: 0.0,
            }),
        }
    }
    for r in &mut rows {
        r.percent = 100.0 * r.samples as f64 / of as f64;
        r.inclusive_samples = r.samples;
        r.inclusive_percent = r.percent;
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.samples));
    rows
}

fn class_rows(symbols: &[SymbolRow], of: u64) -> Vec<ClassRow> {
    Class::ALL
        .iter()
        .filter_map(|&c| {
            let n: u64 = symbols
                .iter()
                .filter(|s| s.class == c)
                .map(|s| s.samples)
                .sum();
            (n > 0).then(|| ClassRow {
                class: c,
                samples: n,
                period: n * MS,
                percent: 100.0 * n as f64 / of as f64,
            })
        })
        .collect()
}

fn thread(tid: i32, vcpu: Option<u32>, name: &str, stacks: &[StackRow]) -> ThreadReport {
    let mine: Vec<&StackRow> = stacks.iter().filter(|s| s.tid == tid).collect();
    let samples = mine.iter().map(|s| s.samples).sum();
    let top_symbols = leaf_rows(mine.into_iter(), samples);
    ThreadReport {
        tid,
        vcpu,
        name: name.into(),
        samples,
        period: samples * MS,
        on_cpu_ns: None,
        expected_samples: None,
        lost: 0,
        throttled: 0,
        classes: class_rows(&top_symbols, samples),
        top_symbols,
    }
}

/// VM 10 (`vm10`): vCPU 0 in `main → kvm_vcpu_ioctl → vmx_vcpu_run` (30) and guest-user
/// `hot_b` (50), vCPU 1 in guest-kernel `do_syscall` (20), the I/O thread in an unknown VMM
/// address under `main` (10); the helper's guest stack `main → hot_b` of guest pid 100 (45),
/// beside the host's view; and a non-VM host thread in `schedule` (5), without stacks.
fn fixture() -> Profile {
    let stacks = vec![
        stack(
            11,
            Some(0),
            "CPU 0/KVM",
            vec![frame(Class::GuestUser, "hot_b", "[guest.user]")],
            50,
        ),
        stack(
            11,
            Some(0),
            "CPU 0/KVM",
            vec![
                frame(Class::Vmm, "main", "qemu-system-x86_64"),
                frame(Class::HypervisorKvm, "kvm_vcpu_ioctl", "[kvm]"),
                frame(Class::HypervisorKvm, "vmx_vcpu_run", "[kvm]"),
            ],
            30,
        ),
        stack(
            12,
            Some(1),
            "CPU 1/KVM",
            vec![frame(Class::GuestKernel, "do_syscall", "[guest.kernel]")],
            20,
        ),
        stack(
            13,
            None,
            "IO thread",
            vec![
                frame(Class::Vmm, "main", "qemu-system-x86_64"),
                Frame {
                    class: Class::Vmm,
                    symbol: Symbol::unknown(0x1234, "qemu-system-x86_64", "no symbols"),
                },
            ],
            10,
        ),
    ];
    let helper = vec![StackRow {
        guest: Some(GuestProc {
            pid: Some(100),
            comm: "work".into(),
        }),
        origin: StackOrigin::Helper,
        ..stack(
            -1,
            Some(0),
            "",
            vec![
                frame(Class::GuestUser, "main", "work"),
                frame(Class::GuestUser, "hot_b", "work"),
            ],
            45,
        )
    }];
    let host_stacks = [stack(
        -1,
        None,
        "host",
        vec![frame(
            Class::HypervisorKernel,
            "schedule",
            "[kernel.kallsyms]",
        )],
        5,
    )];
    let vm_samples = 110;
    let top_symbols = leaf_rows(stacks.iter(), vm_samples);
    let vm = VmReport {
        id: VmId::Vmm(10),
        pid: 10,
        name: "vm10".into(),
        vcpu_count: 2,
        samples: vm_samples,
        lost: 0,
        throttled: 0,
        classes: class_rows(&top_symbols, vm_samples),
        top_symbols,
        vcpus: vec![
            thread(11, Some(0), "CPU 0/KVM", &stacks),
            thread(12, Some(1), "CPU 1/KVM", &stacks),
        ],
        other_threads: vec![thread(13, None, "IO thread", &stacks)],
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
        schema: SCHEMA_VERSION,
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
        notes: Vec::new(),
        vms: vec![vm],
        host_other: Some(thread(-1, None, "host", &host_stacks)),
        host_stacks: Vec::new(),
        callchains: true,
        total_samples: 115,
        total_lost: 0,
        total_throttled: 0,
    }
}

#[test]
fn go_pprof_top_matches_the_text_report() {
    if !have_go() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = fixture();
    let file = check_top_matches_text(&p, dir.path(), "fixture.pb.gz");
    // Unfiltered, the helper's 45 guest samples come on top of the host's 115.
    let (all, _) = parse_top(go_pprof(&["-top", "-nodecount=100"], &file).as_str());
    assert_eq!(all, 115 + 45);
    // -tagfocus on the helper alone: its guest process's stack, `hot_b` under `main`.
    let helper = go_pprof(
        &["-top", "-tagfocus=origin=helper", "-relative_percentages"],
        &file,
    );
    let (n, rows) = parse_top(&helper);
    assert_eq!(n, 45, "{helper}");
    let shares: Vec<(&str, f64)> = rows.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(shares, [("hot_b", 100.0), ("main", 0.0)], "{helper}");
    // The default sample type is `samples`; cpu time is the second one.
    let cpu = go_pprof(
        &[
            "-top",
            "-sample_index=cpu",
            "-tagignore=origin=helper",
            "-relative_percentages",
        ],
        &file,
    );
    assert!(cpu.contains("Type: cpu"), "{cpu}");
    assert!(cpu.contains("of 115ms total"), "1 ms per sample\n{cpu}");
}

#[test]
fn go_pprof_traces_show_the_stacks_root_to_leaf_with_labels() {
    if !have_go() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = fixture();
    let file = dir.path().join("fixture.pb.gz");
    std::fs::write(&file, pprof::render(&p).unwrap()).unwrap();
    let out = go_pprof(&["-traces"], &file);
    if std::env::var_os("HVPROF_TEST_DUMP").is_some() {
        eprintln!("{out}");
    }
    let traces = parse_traces(&out);
    let vm = &p.vms[0];
    let all = vm.stacks.iter().chain(&vm.guest.as_ref().unwrap().stacks);
    let mut seen = 0;
    for s in all {
        let root_to_leaf: Vec<String> = s.frames.iter().map(|f| f.symbol.display_name()).collect();
        let origin = if s.origin == StackOrigin::Helper {
            "helper"
        } else {
            "host"
        };
        let t = traces
            .iter()
            .find(|t| {
                let mut fr = t.frames.clone();
                fr.reverse();
                fr == root_to_leaf && t.labels.get("origin").map(String::as_str) == Some(origin)
            })
            .unwrap_or_else(|| panic!("no trace {root_to_leaf:?} ({origin}) in\n{out}"));
        assert_eq!(t.value, s.samples.to_string(), "{out}");
        assert_eq!(t.labels["vm"], "vm10");
        assert_eq!(t.labels["vm_id"], "10");
        assert_eq!(t.labels["class"], s.leaf().unwrap().class.key());
        if let Some(v) = s.vcpu {
            assert_eq!(t.labels["vcpu"], v.to_string(), "{out}");
        }
        if !s.thread_name.is_empty() {
            assert_eq!(t.labels["thread"], s.thread_name);
        }
        if let Some(g) = &s.guest {
            assert_eq!(t.labels["comm"], g.comm);
            assert_eq!(t.labels["guest_pid"], g.pid.unwrap().to_string());
        }
        seen += 1;
    }
    assert_eq!(seen, 5);
    assert_eq!(
        traces.len(),
        6,
        "5 VM stacks and the host thread's symbol\n{out}"
    );
}

/// A perf.data file as `perf record -e cpu-clock:HG -p 10` writes it (VMM pid 10, vCPU
/// threads 11 and 12, the main thread 10), replayed through hvprof's report path with a guest
/// symbol map: guest-user `hot_a` (30) and `hot_b` (12), guest-kernel `do_idle` (6), and VMM
/// user code hvprof has no maps for (2).
#[test]
fn go_pprof_reads_a_replayed_recording_like_the_text_report() {
    use hvprof::perf::abi::{self, AttrBuilder};
    use hvprof::perf::perf_data::{Feature, FeatureWriter, PerfDataWriter};
    use hvprof::perf::record::encode;
    use hvprof::perf::CpuMode;

    if !have_go() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("guest.map");
    std::fs::write(
        &map,
        "0000000000400000 T hot_a\n0000000000400100 T hot_b\n0000000000400200 T end\n\
         ffffffff81000000 T do_idle\nffffffff81000100 T _etext\n",
    )
    .unwrap();
    let mut b = Vec::new();
    encode::comm(&mut b, 10, 10, "qemu-system-x86", false, 0, 0);
    encode::comm(&mut b, 10, 11, "CPU 0/KVM", false, 0, 0);
    encode::comm(&mut b, 10, 12, "CPU 1/KVM", false, 0, 0);
    let mut t = 0;
    let mut add = |b: &mut Vec<u8>, mode, ip, tid, n| {
        for _ in 0..n {
            t += 1;
            encode::sample(b, mode, ip, 10, tid, t, 0, MS);
        }
    };
    add(&mut b, CpuMode::GuestUser, 0x400010, 11, 30);
    add(&mut b, CpuMode::GuestUser, 0x400110, 12, 12);
    add(&mut b, CpuMode::GuestKernel, 0xffff_ffff_8100_0010, 12, 6);
    add(&mut b, CpuMode::User, 0x5000, 10, 2);
    let attr = AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
        .sample_type(abi::HVPROF_SAMPLE_TYPE)
        .frequency(1000)
        .sample_id_all(true)
        .task(true)
        .build();
    let f = dir.path().join("perf.data");
    let mut w = PerfDataWriter::create(&f, &[(attr, vec![1], "cpu-clock:HG".into())]).unwrap();
    w.write_records(&b).unwrap();
    w.finish(vec![(
        Feature::HOSTNAME,
        FeatureWriter::new().string("h").finish(),
    )])
    .unwrap();
    let k = hvprof_symbols::Kallsyms::load(&map).unwrap();
    let r = hvprof::recording::replay(&f, vec![(None, k)]).expect("replays");
    let p = r.agg.snapshot(r.meta.clone(), r.hidden.clone(), usize::MAX);
    assert_eq!(p.total_samples, 50, "{p:?}");
    if std::env::var_os("HVPROF_TEST_DUMP").is_some() {
        eprintln!("{}", text::render(&p, usize::MAX));
    }
    let file = check_top_matches_text(&p, dir.path(), "replay.pb.gz");
    let traces = parse_traces(&go_pprof(&["-traces"], &file));
    let hot_a = traces
        .iter()
        .find(|t| t.frames.last().map(String::as_str) == Some("hot_a"))
        .expect("hot_a's samples");
    assert_eq!(hot_a.labels["class"], "guest-user");
    assert_eq!(hot_a.labels["vcpu"], "0");
    assert_eq!(hot_a.labels["thread"], "CPU 0/KVM");
    assert_eq!(hot_a.labels["vm_id"], "10");
}

/// Host callchains through the whole report path: a perf.data file with `PERF_SAMPLE_CALLCHAIN`
/// and the kernel symbols it hit (hvprof's `HVPROF_KSYMS` section), vCPU 0 in
/// `kvm_vcpu_ioctl → kvm_arch_vcpu_ioctl_run → vmx_vcpu_run` (20), vCPU 1 in
/// `kvm_vcpu_ioctl → schedule` (10) and guest-user `hot_a` without a callchain (30): pprof's
/// `-top` matches the text report and `-traces` shows each stack root → leaf.
#[test]
fn go_pprof_shows_replayed_callchains_root_to_leaf() {
    use hvprof::perf::abi::{self, AttrBuilder};
    use hvprof::perf::perf_data::{Feature, FeatureWriter, PerfDataWriter};
    use hvprof::perf::record::encode::{self, Encoder, SampleParts};
    use hvprof::perf::CpuMode;

    if !have_go() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("guest.map");
    std::fs::write(&map, "0000000000400000 T hot_a\n0000000000400100 T end\n").unwrap();
    let ksyms = "ffffffff81000000 T vmx_vcpu_run\t[kvm_intel]\n\
                 ffffffff81000100 T kvm_arch_vcpu_ioctl_run\t[kvm]\n\
                 ffffffff81000200 T kvm_vcpu_ioctl\t[kvm]\n\
                 ffffffff81000300 T schedule\n\
                 ffffffff81000400 T _etext\n";
    let sample_type = abi::HVPROF_SAMPLE_TYPE | abi::SAMPLE_CALLCHAIN;
    let enc = Encoder::new(sample_type);
    let mut b = Vec::new();
    encode::comm(&mut b, 10, 10, "qemu-system-x86", false, 0, 0);
    encode::comm(&mut b, 10, 11, "CPU 0/KVM", false, 0, 0);
    encode::comm(&mut b, 10, 12, "CPU 1/KVM", false, 0, 0);
    let run = [
        abi::CONTEXT_KERNEL,
        0xffff_ffff_8100_0010, // vmx_vcpu_run (the IP)
        0xffff_ffff_8100_0120, // returns into kvm_arch_vcpu_ioctl_run
        0xffff_ffff_8100_0210, // returns into kvm_vcpu_ioctl
    ];
    let sched = [
        abi::CONTEXT_KERNEL,
        0xffff_ffff_8100_0310,
        0xffff_ffff_8100_0230,
    ];
    let mut time = 0;
    let mut add = |b: &mut Vec<u8>, cpumode, tid, chain: &[u64], n| {
        for _ in 0..n {
            time += 1;
            let ip = chain.get(1).copied().unwrap_or(0x400010);
            let parts = SampleParts {
                cpumode: Some(cpumode),
                ip,
                pid: 10,
                tid,
                time,
                period: MS,
                callchain: chain,
                ..SampleParts::default()
            };
            enc.sample(b, &parts);
        }
    };
    add(&mut b, CpuMode::Kernel, 11, &run, 20);
    add(&mut b, CpuMode::Kernel, 12, &sched, 10);
    add(&mut b, CpuMode::GuestUser, 11, &[], 30);
    let attr = AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
        .sample_type(sample_type)
        .frequency(1000)
        .sample_id_all(true)
        .task(true)
        .build();
    let f = dir.path().join("perf.data");
    let mut w = PerfDataWriter::create(&f, &[(attr, vec![1], "cpu-clock".into())]).unwrap();
    w.write_records(&b).unwrap();
    w.finish(vec![
        (Feature::HOSTNAME, FeatureWriter::new().string("h").finish()),
        (Feature::HVPROF_KSYMS, ksyms.as_bytes().to_vec()),
    ])
    .unwrap();
    let k = hvprof_symbols::Kallsyms::load(&map).unwrap();
    let r = hvprof::recording::replay(&f, vec![(None, k)]).expect("replays");
    let p = r.agg.snapshot(r.meta.clone(), r.hidden.clone(), usize::MAX);
    assert_eq!(p.total_samples, 60, "{p:?}");
    let vm = &p.vms[0];
    assert!(
        vm.stacks.iter().any(|s| s.frames.len() == 3),
        "the report path keeps callchains: {:?}",
        vm.stacks
    );
    if std::env::var_os("HVPROF_TEST_DUMP").is_some() {
        eprintln!("{}", text::render(&p, usize::MAX));
    }
    let file = check_top_matches_text(&p, dir.path(), "callchains.pb.gz");
    let out = go_pprof(&["-traces"], &file);
    let traces = parse_traces(&out);
    let root_to_leaf = |t: &Trace| t.frames.iter().rev().cloned().collect::<Vec<_>>();
    for s in &vm.stacks {
        let want: Vec<String> = s.frames.iter().map(|f| f.symbol.display_name()).collect();
        let t = traces
            .iter()
            .find(|t| root_to_leaf(t) == want && t.labels.get("thread") == Some(&s.thread_name))
            .unwrap_or_else(|| panic!("no trace {want:?} of {} in\n{out}", s.thread_name));
        assert_eq!(t.value, s.samples.to_string(), "{out}");
    }
    let names = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let run_trace = traces
        .iter()
        .find(|t| t.labels.get("vcpu").map(String::as_str) == Some("0") && t.frames.len() == 3)
        .unwrap_or_else(|| panic!("vCPU 0's kernel stack in\n{out}"));
    assert_eq!(
        root_to_leaf(run_trace),
        names(&["kvm_vcpu_ioctl", "kvm_arch_vcpu_ioctl_run", "vmx_vcpu_run"]),
        "{out}"
    );
    assert_eq!(run_trace.labels["class"], "hypervisor-kvm");
    assert_eq!(run_trace.value, "20");
    let sched_trace = traces
        .iter()
        .find(|t| t.labels.get("vcpu").map(String::as_str) == Some("1"))
        .unwrap_or_else(|| panic!("vCPU 1's stack in\n{out}"));
    assert_eq!(
        root_to_leaf(sched_trace),
        names(&["kvm_vcpu_ioctl", "schedule"])
    );
    assert_eq!(sched_trace.labels["class"], "hypervisor-kernel");
}
