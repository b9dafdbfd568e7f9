//! `cargo bench --bench pipeline`: hvprof's hot paths, with perf side by side where the work
//! is comparable. Prints figures; asserts nothing.
//!
//! 1. decode + attribute + aggregate of 1,000,000 synthetic PERF_RECORD_SAMPLEs (half guest-user
//!    IPs resolved through a guest map, a quarter host-kernel IPs through the real
//!    /proc/kallsyms, a quarter VMM IPs in this benchmark's own ELF through its /proc/PID/maps);
//! 2. profiling the built-in test VM for 3 s at 4 kHz with `perf record` and with
//!    `hvprof record`: samples captured, lost, and the profiler's own CPU time;
//! 3. turning each recording into a report: `perf report --stdio` vs `hvprof report`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hvprof::aggregate::Aggregator;
use hvprof::attribute::{Attributor, HostSymbols};
use hvprof::model::{GuestMachine, Machines, Thread, Vcpu, VmId};
use hvprof::perf::abi;
use hvprof::perf::record::{encode, CpuMode, Record, RecordDecoder};
use hvprof::report::Meta;

const HVPROF: &str = env!("CARGO_BIN_EXE_hvprof");

fn main() {
    pipeline();
    if Path::new("/dev/kvm").exists() && nix::unistd::geteuid().is_root() {
        versus_perf();
    } else {
        println!("(skipping the perf comparison: needs root and /dev/kvm)");
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
    let t0 = Instant::now();
    let mut decoded = 0u64;
    RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).decode(&bytes, |r| {
        if let Record::Sample(s) = r {
            decoded += 1;
            attr.attribute_into(&s.sample, &mut agg);
        }
    });
    let dt = t0.elapsed();
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
        "   {:.1} ms total, {:.0} ns/sample, {:.2} M samples/s; report build {:.2} ms; {} symbols",
        dt.as_secs_f64() * 1e3,
        dt.as_nanos() as f64 / decoded as f64,
        decoded as f64 / dt.as_secs_f64() / 1e6,
        dt_build.as_secs_f64() * 1e3,
        p.vms[0].top_symbols.len()
    );
}

/// CPU time (user + sys) of a finished child, from wait4's rusage.
fn run_timed(cmd: &mut Command) -> (std::process::ExitStatus, Duration) {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut status = 0;
    let mut ru: libc::rusage = unsafe_zeroed_rusage();
    // SAFETY: `status` and `ru` are valid, writable locals of the types wait4 expects.
    let r = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut ru) };
    assert!(r > 0, "wait4");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    std::mem::forget(child);
    (
        std::os::unix::process::ExitStatusExt::from_raw(status),
        tv(ru.ru_utime) + tv(ru.ru_stime),
    )
}

fn unsafe_zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is a plain C struct of integers, for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

fn versus_perf() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Command::new(HVPROF)
        .args(["testvm", "--vcpus", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(vm.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pid = vm.id().to_string();
    let (hz, secs) = ("4000", "3");
    println!("== profiling the built-in test VM (2 busy vCPUs) for {secs} s at {hz} Hz, cpu-clock");
    let perf_data = dir.path().join("perf.data");
    let (st, perf_cpu) = run_timed(
        Command::new("perf")
            .args([
                "record",
                "-q",
                "-e",
                "cpu-clock",
                "-F",
                hz,
                "-p",
                &pid,
                "-o",
            ])
            .arg(&perf_data)
            .args(["--", "sleep", secs]),
    );
    let rec = dir.path().join("rec.hvprof");
    let (st2, hv_cpu) = run_timed(
        Command::new(HVPROF)
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                hz,
                "-p",
                &pid,
                "-d",
                secs,
                "-o",
            ])
            .arg(&rec),
    );
    let perf_samples = Command::new("perf")
        .args(["report", "--stdio", "--header-only", "-i"])
        .arg(&perf_data)
        .output()
        .ok();
    let perf_n = perf_samples
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("sample_freq"))
                .map(|_| ())
        })
        .map(|_| count_perf_samples(&perf_data))
        .unwrap_or(0);
    let hv_n = std::fs::read_to_string(&rec)
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("{\"t\":\"sample\""))
                .count()
        })
        .unwrap_or(0);
    println!(
        "   {:<28} {:>10} {:>16} {:>14}",
        "", "samples", "profiler CPU", "CPU/sample"
    );
    println!(
        "   {:<28} {:>10} {:>13.1} ms {:>11.1} µs   (exit {st})",
        "perf record",
        perf_n,
        ms(perf_cpu),
        us_per(perf_cpu, perf_n)
    );
    println!(
        "   {:<28} {:>10} {:>13.1} ms {:>11.1} µs   (exit {st2})",
        "hvprof record -o",
        hv_n,
        ms(hv_cpu),
        us_per(hv_cpu, hv_n)
    );
    println!("== reporting the recordings");
    let t = Instant::now();
    let (_, perf_rep_cpu) = run_timed(
        Command::new("perf")
            .args(["report", "--stdio", "-i"])
            .arg(&perf_data),
    );
    let perf_rep_wall = t.elapsed();
    let t = Instant::now();
    let (_, hv_rep_cpu) = run_timed(Command::new(HVPROF).args(["report", "-i"]).arg(&rec));
    let hv_rep_wall = t.elapsed();
    println!(
        "   perf report --stdio   {:>8.1} ms wall {:>8.1} ms CPU",
        ms(perf_rep_wall),
        ms(perf_rep_cpu)
    );
    println!(
        "   hvprof report         {:>8.1} ms wall {:>8.1} ms CPU",
        ms(hv_rep_wall),
        ms(hv_rep_cpu)
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vm.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = vm.wait();
}

fn count_perf_samples(data: &Path) -> usize {
    Command::new("perf")
        .args(["script", "-F", "ip", "--show-task-events", "-i"])
        .arg(data)
        .output()
        .map(|o| {
            o.stdout
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count()
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us_per(d: Duration, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        d.as_secs_f64() * 1e6 / n as f64
    }
}
