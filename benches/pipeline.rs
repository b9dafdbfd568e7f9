//! `cargo bench --bench pipeline`: hvprof's hot paths, with perf side by side where the work
//! is comparable. Prints figures; asserts nothing (perf may be faster on some machine: the
//! table says so, the run does not fail).
//!
//! 1. decode + attribute + aggregate of 1,000,000 synthetic PERF_RECORD_SAMPLEs (half guest-user
//!    IPs resolved through a guest map, a quarter host-kernel IPs through the real
//!    /proc/kallsyms, a quarter VMM IPs in this benchmark's own ELF through its /proc/PID/maps);
//! 2. recording the built-in test VM (2 busy vCPUs) for 4 s at 10 kHz per vCPU with
//!    `perf record` and with `hvprof record -o`: samples, lost, the recorder's CPU time (total
//!    and per sample), its peak RSS (wait4's `ru_maxrss`) and the file's bytes per sample
//!    (needs root, /dev/kvm and perf);
//! 3. reporting the same synthesized perf.data — a VMM with `CPU n/KVM` threads, written as
//!    hvprof records — of 100,000 and 1,000,000 samples with `perf report --stdio --sort
//!    comm,sym` and with `hvprof report`: wall and CPU time of each (needs perf).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hvprof::aggregate::Aggregator;
use hvprof::attribute::{Attributor, HostSymbols};
use hvprof::model::{GuestMachine, Machines, Thread, Vcpu, VmId};
use hvprof::perf::abi;
use hvprof::perf::abi::AttrBuilder;
use hvprof::perf::perf_data::PerfData;
use hvprof::perf::record::encode::{Encoder, SampleParts};
use hvprof::perf::record::{encode, CpuMode, Record, RecordDecoder};
use hvprof::recording::{HvprofSection, Recorder, SECTION_VERSION};
use hvprof::report::Meta;
use hvprof_symbols::ProcMaps;

const HVPROF: &str = env!("CARGO_BIN_EXE_hvprof");

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == MEASURE) {
        measure_child(&args[2..]);
        return;
    }
    // HVPROF_BENCH_RECORD_ONLY=1: only the recordings side by side with perf.
    let record_only = std::env::var_os("HVPROF_BENCH_RECORD_ONLY").is_some();
    if !record_only {
        pipeline();
    }
    // HVPROF_BENCH_PIPELINE_ONLY=1: the in-process figure alone (for profiling it).
    if std::env::var_os("HVPROF_BENCH_PIPELINE_ONLY").is_some() {
        return;
    }
    if !have_perf() {
        println!("(skipping the comparisons with perf: perf does not run here)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // HVPROF_BENCH_KEEP=1 keeps the recordings and synthesized files to look at.
    let dir = if std::env::var_os("HVPROF_BENCH_KEEP").is_some() {
        let d = tmp.keep();
        println!("(files kept in {})", d.display());
        d
    } else {
        tmp.path().to_path_buf()
    };
    let dir = dir.as_path();
    if Path::new("/dev/kvm").exists() && nix::unistd::geteuid().is_root() {
        record_vs_perf(dir, &[]);
        record_vs_perf(dir, &["-g"]);
        record_vs_perf(dir, &["--call-graph", "dwarf,8192"]);
    } else {
        println!("(skipping the recording comparison: needs root and /dev/kvm)");
    }
    if !record_only {
        reports(dir);
    }
}

fn pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("g.kallsyms");
    hvprof_testvm::write_kallsyms(&map).unwrap();
    let host = HostSymbols::load(Path::new("/"));
    let kern: Vec<u64> = host
        .kallsyms
        .as_ref()
        .map(|k| k.iter().step_by(997).map(|s| s.addr + 1).collect())
        .unwrap_or_default();
    let mut vm = GuestMachine::new(VmId::Vmm(100), "bench");
    vm.vcpus.push(Vcpu {
        index: 0,
        tid: Some(101),
    });
    vm.threads.insert(
        101,
        Thread {
            tid: 101,
            name: "vcpu0".into(),
            vcpu: Some(0),
            tcg: false,
        },
    );
    let mut machines = Machines::new();
    machines.add(vm);
    machines.set_guest_kernel_symbols(
        Some(VmId::Vmm(100)),
        Arc::new(hvprof_symbols::Kallsyms::load(&map).unwrap()),
    );
    let machines = Arc::new(machines);
    let mut attr = Attributor::new(host, Path::new("/proc"), Arc::clone(&machines));
    let mut bytes = Vec::with_capacity(48 << 20);
    let n = 1_000_000u64;
    let me = std::process::id();
    let user_ip = pipeline as fn() as usize as u64;
    for i in 0..n {
        if i % 4 == 1 {
            encode::sample(
                &mut bytes,
                CpuMode::User,
                user_ip + (i % 64),
                me,
                me,
                i,
                0,
                250_000,
            );
        } else if i % 4 == 0 && !kern.is_empty() {
            encode::sample(
                &mut bytes,
                CpuMode::Kernel,
                kern[(i as usize / 4) % kern.len()],
                100,
                101,
                i,
                0,
                250_000,
            );
        } else {
            encode::sample(
                &mut bytes,
                CpuMode::GuestUser,
                0x400200 + (i % 0x300),
                100,
                101,
                i,
                0,
                250_000,
            );
        }
    }
    let mut agg = Aggregator::new(machines);
    // Two passes over the same records into the same aggregator: the first finds every
    // symbol (cold caches), the second is the steady state (warm symbol caches).
    let mut pass = || {
        let t0 = Instant::now();
        let mut decoded = 0u64;
        RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).decode(&bytes, |r| {
            if let Record::Sample(s) = r {
                decoded += 1;
                attr.attribute_into(&s.sample, &mut agg);
            }
        });
        (decoded, t0.elapsed())
    };
    let (_, cold) = pass();
    let (decoded, dt) = pass();
    let t1 = Instant::now();
    let meta = Meta {
        event: "cpu-clock".into(),
        rate: hvprof::counters::Rate::Frequency(4000),
        period_is_ns: true,
        duration_ns: 0,
        mode: "threads".into(),
        host: String::new(),
        kernel: String::new(),
        start_unix_ns: 0,
    };
    let p = agg.snapshot(meta, None, 10);
    let dt_build = t1.elapsed();
    println!(
        "== pipeline: decode + attribute + aggregate, {decoded} samples ({} MiB of records)",
        bytes.len() >> 20
    );
    println!(
        "   cold caches: {:.1} ms, {:.2} M samples/s",
        cold.as_secs_f64() * 1e3,
        decoded as f64 / cold.as_secs_f64() / 1e6
    );
    println!(
        "   warm caches: {:.1} ms total, {:.0} ns/sample, {:.2} M samples/s per core (issue #10 asks >= 20); report build {:.2} ms; {} symbols",
        dt.as_secs_f64() * 1e3,
        dt.as_nanos() as f64 / decoded as f64,
        decoded as f64 / dt.as_secs_f64() / 1e6,
        dt_build.as_secs_f64() * 1e3,
        p.vms[0].top_symbols.len()
    );
}

/// One finished child process: exit status, wall time, CPU time (user + sys) and peak
/// resident set, from wait4's rusage (which covers the child and the descendants it reaped).
struct Run {
    status: std::process::ExitStatus,
    wall: Duration,
    cpu: Duration,
    /// `ru_maxrss`, in KiB (getrusage(2)).
    max_rss_kib: u64,
    /// What the child wrote to stderr.
    stderr: String,
}

/// The argument that turns this benchmark into [`measure_child`].
const MEASURE: &str = "--measure-child";

/// Runs `cmd` to its end (stdout discarded, stderr kept) and measures it.
///
/// Through a fresh copy of this benchmark ([`measure_child`]) rather than from this process:
/// Linux keeps the RSS high-water mark of the memory a process had before execve (a spawned
/// child shares its parent's until then), so a child of this benchmark, whose peak is that of
/// the 1M-sample pipeline, would report this benchmark's peak as its own.
fn run_timed(cmd: &mut Command, stderr: &Path) -> Run {
    let out = Command::new(std::env::current_exe().expect("current_exe"))
        .arg(MEASURE)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"))
        .output()
        .expect("spawn");
    let v: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [status, cpu_ns, wall_ns, max_rss_kib] = v[..] else {
        panic!(
            "{MEASURE} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    Run {
        status: std::os::unix::process::ExitStatusExt::from_raw(status as i32),
        wall: Duration::from_nanos(wall_ns as u64),
        cpu: Duration::from_nanos(cpu_ns as u64),
        max_rss_kib: max_rss_kib as u64,
        stderr: std::fs::read_to_string(stderr).unwrap_or_default(),
    }
}

/// `pipeline --measure-child PROGRAM ARGS...`: runs the program (stdout discarded, stderr
/// inherited), reaps it with wait4 and prints `status cpu_ns wall_ns max_rss_kib`. This
/// process is small (it has done nothing else), so the high-water mark its child inherits is
/// a few MiB, far below any profiler's.
fn measure_child(argv: &[std::ffi::OsString]) {
    let t0 = Instant::now();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    // The child is reaped by wait4 below, not by `Child`'s wait.
    std::mem::forget(child);
    let mut status = 0;
    let mut ru: libc::rusage = zeroed_rusage();
    // SAFETY: `status` and `ru` are valid, writable locals of the types wait4 expects.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert!(r > 0, "wait4");
    let wall = t0.elapsed();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    println!(
        "{status} {} {} {}",
        (tv(ru.ru_utime) + tv(ru.ru_stime)).as_nanos(),
        wall.as_nanos(),
        ru.ru_maxrss
    );
}

fn zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is a plain C struct of integers, for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

/// Whether `perf` runs here.
fn have_perf() -> bool {
    Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Samples and lost samples (PERF_RECORD_LOST and LOST_SAMPLES) in a perf.data file, read as
/// `hvprof report` reads it.
fn count_records(path: &Path) -> (u64, u64) {
    let Ok(pd) = PerfData::open(path) else {
        return (0, 0);
    };
    let (mut samples, mut lost) = (0, 0);
    let data = pd.data();
    let mut off = 0usize;
    while let Some(rest) = data.get(off..).filter(|r| !r.is_empty()) {
        let Some((rec, size)) = pd
            .decoder(pd.attr_of(rest))
            .and_then(|d| d.decode_one(rest))
        else {
            break;
        };
        match rec {
            Record::Sample(_) => samples += 1,
            Record::Lost { lost: n, .. } | Record::LostSamples { lost: n, .. } => lost += n,
            Record::Corrupt { skipped, .. } if skipped >= rest.len() => break,
            _ => {}
        }
        off += size;
    }
    (samples, lost)
}

/// The same workload recorded by `perf record` and by `hvprof record -o`: the built-in test VM
/// with 2 busy vCPUs, cpu-clock counting host and guest time (`cpu-clock:HG` for perf, whose
/// plain `cpu-clock` is `:H`; hvprof's `cpu-clock` excludes nothing), 10 kHz per vCPU, one
/// after the other for the same time.
///
/// `stacks` are the call-graph flags given to both (`-g`, `--call-graph dwarf,8192`); with
/// them the VM runs the port-I/O workload, so most samples are host-side with real stacks.
fn record_vs_perf(dir: &Path, stacks: &[&str]) {
    const HZ: &str = "10000";
    const SECS: u64 = 4;
    let workload = if stacks.is_empty() { "compute" } else { "pio" };
    let mut vm = Command::new(HVPROF)
        .args(["testvm", "--vcpus", "2", "--workload", workload])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(vm.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pid = vm.id().to_string();
    let perf_data = dir.join("record.perf.data");
    let perf = run_timed(
        Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock:HG", "-F", HZ, "-p", &pid])
            .args(stacks)
            .arg("-o")
            .arg(&perf_data)
            .args(["--", "sleep", &SECS.to_string()]),
        &dir.join("perf-record.err"),
    );
    let hv_data = dir.join("record.hvprof.data");
    let hv = run_timed(
        Command::new(HVPROF)
            .args(["record", "-e", "cpu-clock", "-F", HZ, "-p", &pid])
            .args(stacks)
            .args(["-d", &SECS.to_string(), "-o"])
            .arg(&hv_data),
        &dir.join("hvprof-record.err"),
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vm.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = vm.wait();
    println!(
        "== record {}: the built-in test VM (2 busy vCPUs, {workload} workload) for {SECS} s, cpu-clock host+guest at {HZ} Hz per vCPU",
        if stacks.is_empty() { "(no stacks)".to_string() } else { stacks.join(" ") }
    );
    println!(
        "   {:<18} {:>8} {:>6} {:>9} {:>10} {:>12} {:>9} {:>12}",
        "", "samples", "lost", "CPU ms", "µs/sample", "max RSS MiB", "file MiB", "bytes/sample"
    );
    let mut per_sample = Vec::new();
    for (name, run, file) in [
        ("perf record", &perf, &perf_data),
        ("hvprof record -o", &hv, &hv_data),
    ] {
        let (n, lost) = count_records(file);
        let size = std::fs::metadata(file).map_or(0, |m| m.len());
        let bytes = if n == 0 { 0.0 } else { size as f64 / n as f64 };
        let exit = if run.status.success() {
            String::new()
        } else {
            format!("   ({}: {})", run.status, first_line(&run.stderr))
        };
        println!(
            "   {:<18} {:>8} {:>6} {:>9.1} {:>10.2} {:>12.1} {:>9.2} {:>12.1}{exit}",
            name,
            n,
            lost,
            ms(run.cpu),
            us_per(run.cpu, n),
            run.max_rss_kib as f64 / 1024.0,
            size as f64 / f64::from(1 << 20),
            bytes
        );
        per_sample.push((us_per(run.cpu, n), run.max_rss_kib as f64, bytes));
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let (p, h) = (per_sample[0], per_sample[1]);
    println!(
        "   hvprof / perf: CPU per sample {:.2}, max RSS {:.2}, bytes per sample {:.3}",
        ratio(h.0, p.0),
        ratio(h.1, p.1),
        ratio(h.2, p.2)
    );
}

/// The synthesized VM: its VMM's pid (far above the usual pid range, so no process of this
/// host is mistaken for it) and its vCPU threads.
const VMM_PID: u32 = 3_999_000;
const VCPUS: u32 = 2;

/// Writes `path`: a perf.data file as `hvprof record -p VMM -o` writes it (one cpu-clock attr
/// at 10 kHz, `IP|TID|TIME|CPU|PERIOD` with `sample_id_all`, hvprof's feature sections), for a
/// VMM process `qemu-system-x86` with vCPU threads `CPU n/KVM`: the kernel map
/// (`[kernel.kallsyms]_text`, as perf synthesizes it), COMM/FORK per thread, MMAP2 of this
/// benchmark's own executable (a real ELF with real symbols) as the VMM's text, then `n`
/// samples, 100 µs apart per vCPU: 85% guest user (a few hundred guest IPs), 10% host kernel
/// (core kernel functions from /proc/kallsyms, on the vCPU threads), 5% VMM user (functions
/// of this benchmark, on the VMM's main thread).
fn synthesize_recording(path: &Path, n: u64) {
    let host = HostSymbols::load(Path::new("/"));
    let kern: Vec<u64> = host
        .kallsyms
        .as_ref()
        .map(|k| {
            k.iter()
                .filter(|s| s.module.is_none() && s.name != "_text" && s.name != "_stext")
                .step_by(499)
                .map(|s| s.addr + 1)
                .collect()
        })
        .unwrap_or_default();
    let me = std::process::id();
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap();
    let maps = ProcMaps::read_from(Path::new("/proc"), me).unwrap();
    let text: Vec<_> = maps
        .iter()
        .filter(|m| m.is_exec() && m.file_path() == Some(exe.as_path()))
        .collect();
    let vmm_ips: Vec<u64> = [
        main as fn() as usize,
        pipeline as fn() as usize,
        run_timed as fn(&mut Command, &Path) -> Run as usize,
        count_records as fn(&Path) -> (u64, u64) as usize,
        synthesize_recording as fn(&Path, u64) as usize,
        report_vs_perf as fn(&Path, u64) as usize,
    ]
    .iter()
    .map(|&f| f as u64 + 4)
    .collect();

    let enc = Encoder::new(abi::HVPROF_SAMPLE_TYPE);
    let mut out = Vec::with_capacity(4 << 20);
    // The kernel's map, as hvprof record synthesizes it (no process: pids = []).
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").ok();
    hvprof::recording::synth::synthesize(
        Path::new("/proc"),
        Some(&[]),
        kallsyms.as_deref(),
        hvprof::recording::synth::SAMPLE_TYPE,
        &mut out,
    );
    enc.comm(&mut out, VMM_PID, VMM_PID, "qemu-system-x86", 0);
    let mut vm = GuestMachine::new(VmId::Vmm(VMM_PID as i32), "qemu-system-x86");
    vm.threads.insert(
        VMM_PID as i32,
        Thread {
            tid: VMM_PID as i32,
            name: "qemu-system-x86".into(),
            vcpu: None,
            tcg: false,
        },
    );
    for v in 0..VCPUS {
        let tid = VMM_PID + 1 + v;
        let name = format!("CPU {v}/KVM");
        enc.fork(&mut out, VMM_PID, tid, VMM_PID, 0);
        enc.comm(&mut out, VMM_PID, tid, &name, 0);
        vm.vcpus.push(Vcpu {
            index: v,
            tid: Some(tid as i32),
        });
        vm.threads.insert(
            tid as i32,
            Thread {
                tid: tid as i32,
                name,
                vcpu: Some(v),
                tcg: false,
            },
        );
    }
    for m in &text {
        hvprof::recording::synth::mapping(&enc, VMM_PID as i32, m, &mut out);
    }

    let attr = AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
        .frequency(10_000)
        .sample_type(abi::HVPROF_SAMPLE_TYPE)
        .disabled(true)
        .sample_id_all(true)
        .task(true)
        .mmap(true)
        .mmap2(true)
        .comm(true)
        .comm_exec(true)
        .build();
    let ids = (1..=u64::from(VCPUS) + 1).collect();
    let mut rec = Recorder::create(path, &attr, ids, "cpu-clock", &out).unwrap();
    out.clear();
    let t0 = 1_000_000_000u64;
    for i in 0..n {
        let v = (i % u64::from(VCPUS)) as u32;
        let vcpu_tid = VMM_PID + 1 + v;
        let time = t0 + (i / u64::from(VCPUS)) * 100_000;
        let (cpumode, ip, tid) = match i % 20 {
            0 | 1 if !kern.is_empty() => (
                CpuMode::Kernel,
                kern[(i as usize / 20) % kern.len()],
                vcpu_tid,
            ),
            2 if !vmm_ips.is_empty() && !text.is_empty() => (
                CpuMode::User,
                vmm_ips[(i as usize / 20) % vmm_ips.len()] + (i / 100) % 16,
                VMM_PID,
            ),
            _ => (
                CpuMode::GuestUser,
                0x40_0200 + (i.wrapping_mul(7919) % 0x300),
                vcpu_tid,
            ),
        };
        let p = SampleParts {
            cpumode: Some(cpumode),
            ip,
            pid: VMM_PID,
            tid,
            time,
            cpu: v,
            period: 100_000,
            ..SampleParts::default()
        };
        enc.sample(&mut out, &p);
        if out.len() >= 1 << 20 {
            rec.write(&out).unwrap();
            out.clear();
        }
    }
    rec.write(&out).unwrap();
    let uts = nix::sys::utsname::uname().ok();
    let section = HvprofSection {
        version: SECTION_VERSION,
        meta: Some(Meta {
            event: "cpu-clock".into(),
            rate: hvprof::counters::Rate::Frequency(10_000),
            period_is_ns: true,
            duration_ns: n / u64::from(VCPUS) * 100_000,
            mode: "threads".into(),
            host: uts.as_ref().map_or(String::new(), |u| {
                u.nodename().to_string_lossy().into_owned()
            }),
            kernel: uts.as_ref().map_or(String::new(), |u| {
                u.release().to_string_lossy().into_owned()
            }),
            start_unix_ns: 0,
        }),
        vms: vec![vm],
        ..HvprofSection::default()
    };
    rec.finish(&section, Path::new("/proc")).unwrap();
}

/// `hvprof report` and `perf report --stdio --sort comm,sym` on the same synthesized file of
/// `n` samples: wall and CPU time of each.
fn report_vs_perf(dir: &Path, n: u64) {
    let file = dir.join(format!("synth-{n}.data"));
    synthesize_recording(&file, n);
    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
    let perf = run_timed(
        Command::new("perf")
            .args(["report", "--stdio", "--sort", "comm,sym", "-i"])
            .arg(&file),
        &dir.join("perf-report.err"),
    );
    let hv = run_timed(
        Command::new(HVPROF).args(["report", "-i"]).arg(&file),
        &dir.join("hvprof-report.err"),
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let check = |r: &Run| {
        if r.status.success() {
            String::new()
        } else {
            format!(" ({}: {})", r.status, first_line(&r.stderr))
        }
    };
    println!(
        "   {:>9} {:>8.1} {:>11.1} {:>10.1} {:>11.1} {:>10.1} {:>9.1}× {:>7.1}×{}{}",
        n,
        size as f64 / f64::from(1 << 20),
        ms(perf.wall),
        ms(perf.cpu),
        ms(hv.wall),
        ms(hv.cpu),
        ratio(perf.wall, hv.wall),
        ratio(perf.cpu, hv.cpu),
        check(&perf),
        check(&hv),
    );
}

/// Whether perf reads a synthesized file whole: `perf report -D` dumps every record, guest
/// samples included (plain `perf report` and `perf script` hide guest-tagged samples).
fn perf_reads_synthesized(dir: &Path) {
    let n = 10_000;
    let file = dir.join("synth-check.data");
    synthesize_recording(&file, n);
    let out = Command::new("perf")
        .args(["report", "-D", "-i"])
        .arg(&file)
        .output();
    let (seen, stderr) = match &out {
        Ok(o) => (
            String::from_utf8_lossy(&o.stdout)
                .matches("PERF_RECORD_SAMPLE(")
                .count(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (0, e.to_string()),
    };
    let ok = out.as_ref().is_ok_and(|o| o.status.success()) && seen as u64 == n;
    println!(
        "   check: perf report -D on a {n}-sample synthesized file: {seen} samples{}{}",
        if ok {
            ""
        } else {
            "  <- perf does NOT read the file whole"
        },
        match first_line(&stderr) {
            "" => String::new(),
            l => format!("; perf says: {}", l.trim()),
        }
    );
}

fn reports(dir: &Path) {
    println!(
        "== report: a synthesized hvprof recording (85% guest user, 10% host kernel, 5% VMM user)"
    );
    perf_reads_synthesized(dir);
    println!(
        "   {:>9} {:>8} {:>23} {:>22} {:>19}",
        "", "", "perf report --stdio", "hvprof report", "perf / hvprof"
    );
    println!(
        "   {:>9} {:>8} {:>11} {:>10} {:>11} {:>10} {:>10} {:>8}",
        "samples", "file MiB", "wall ms", "CPU ms", "wall ms", "CPU ms", "wall", "CPU"
    );
    for n in [100_000, 1_000_000] {
        report_vs_perf(dir, n);
    }
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us_per(d: Duration, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        d.as_secs_f64() * 1e6 / n as f64
    }
}
