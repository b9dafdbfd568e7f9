//! `cargo bench --bench top`: the CPU `hvprof top` itself uses while it watches several
//! built-in test VMs sampled at 1 kHz per vCPU (cpu-clock), in batch mode (`-b`, JSON
//! frames, 1 s refresh), exits and steal from its stat thread included.
//!
//! Prints `top CPU: X% of one core` for the steady state (from the first frame to the last,
//! from `/proc/PID/stat` utime + stime) and for the whole run (start-up included, from
//! `getrusage(RUSAGE_CHILDREN)`), with the number of VMs and vCPUs watched and the samples
//! per second top actually processed: on this 2-CPU machine the busy vCPUs share 2 CPUs, so
//! the sample rate is bounded by the CPUs, not by VMs × vCPUs × 1 kHz. Asserts nothing.
//!
//! `HVPROF_BENCH_TOP_VMS` (default 4) VMs of 2 vCPUs each; `HVPROF_BENCH_TOP_FRAMES` (default
//! 10) frames. Needs root and /dev/kvm; skips without them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const HVPROF: &str = env!("CARGO_BIN_EXE_hvprof");

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A test VM, stopped on drop.
struct Vm(Child);

impl Vm {
    fn start(vcpus: usize) -> Vm {
        let mut child = Command::new(HVPROF)
            .args(["testvm", "--vcpus", &vcpus.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hvprof testvm");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read the test VM's ready line");
        assert!(line.contains("ready"), "test VM did not start: {line:?}");
        Vm(child)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// utime + stime of a process in seconds (`/proc/PID/stat` fields 14 and 15, proc(5)).
fn cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some(ticks as f64 / hz as f64)
}

/// CPU seconds (user + system) of the waited-for children so far.
fn children_cpu_s() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable rusage; getrusage(2) only writes into it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: zero-initialised and filled by a successful getrusage.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    if !(Path::new("/dev/kvm").exists() && nix::unistd::geteuid().is_root()) {
        println!("(skipping hvprof top's benchmark: needs root and /dev/kvm)");
        return;
    }
    let (n_vms, vcpus, frames) = (
        env_or("HVPROF_BENCH_TOP_VMS", 4),
        2,
        env_or("HVPROF_BENCH_TOP_FRAMES", 10),
    );
    let vms: Vec<Vm> = (0..n_vms).map(|_| Vm::start(vcpus)).collect();
    let pids: Vec<String> = vms.iter().map(|v| v.0.id().to_string()).collect();
    let before = children_cpu_s();
    let t0 = Instant::now();
    let mut top = Command::new(HVPROF)
        .args([
            "top",
            "-b",
            "--format",
            "json",
            "-e",
            "cpu-clock",
            "-F",
            "1000",
        ])
        .args(["-d", "1", "-n", &frames.to_string(), "-p", &pids.join(",")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run hvprof top");
    let top_pid = top.id();
    let out = BufReader::new(top.stdout.take().expect("piped"));
    let (mut first, mut last) = (None, None);
    let (mut samples, mut seen_vms, mut seen_vcpus, mut n) = (0u64, 0usize, 0usize, 0usize);
    for line in out.lines().map_while(Result::ok) {
        let now = (Instant::now(), cpu_s(top_pid));
        let Ok(f) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        n += 1;
        if first.is_none() {
            first = Some(now);
            continue;
        }
        last = Some(now);
        samples += f["samples"].as_u64().unwrap_or(0);
        let vms = f["vms"].as_array().map(Vec::as_slice).unwrap_or_default();
        seen_vms = seen_vms.max(vms.len());
        seen_vcpus = seen_vcpus.max(
            vms.iter()
                .map(|v| v["vcpus"].as_array().map_or(0, Vec::len))
                .sum(),
        );
    }
    let status = top.wait().expect("wait for hvprof top");
    let wall = t0.elapsed().as_secs_f64();
    let total_cpu = children_cpu_s() - before;
    drop(vms);
    println!("hvprof top, batch mode, {n} frames of 1 s ({status})");
    println!(
        "watching {seen_vms} test VMs, {seen_vcpus} vCPUs, cpu-clock at 1000 Hz per vCPU, on {} host CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    match (first, last) {
        (Some((t1, Some(c1))), Some((t2, Some(c2)))) if t2 > t1 => {
            let secs = (t2 - t1).as_secs_f64();
            println!(
                "top CPU: {:.2}% of one core (steady state: {:.3} s CPU over {:.1} s between the first and last frame, {:.0} samples/s processed, {:.1} µs of top's CPU per sample)",
                (c2 - c1) * 100.0 / secs,
                c2 - c1,
                secs,
                samples as f64 / secs,
                (c2 - c1) * 1e6 / (samples.max(1) as f64)
            );
        }
        _ => println!("top CPU: steady state not measured (fewer than 2 frames)"),
    }
    println!(
        "top CPU over the whole run, start-up included: {:.2}% of one core ({total_cpu:.3} s over {wall:.1} s)",
        total_cpu * 100.0 / wall
    );
}
