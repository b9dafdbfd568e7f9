//! `hvprof stat` from the command line on a test VM process that exits often (port I/O).
//!
//! Exit counts are judged per second the vCPUs spent on a CPU, not per wall second: the
//! machine may be busy.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const HVPROF: &str = env!("CARGO_BIN_EXE_hvprof");

#[test]
fn stat_reports_exits_with_their_source_and_steal_per_vcpu() {
    let ok = std::path::Path::new("/dev/kvm").exists() && nix::unistd::geteuid().is_root();
    if !ok {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI needs root and /dev/kvm"
        );
        eprintln!("skipping: needs root and /dev/kvm");
        return;
    }
    let mut vm = Command::new(HVPROF)
        .args(["testvm", "--workload", "pio"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(vm.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = vm.id().to_string();
    let out = Command::new(HVPROF)
        .args(["stat", "-p", &pid, "-d", "1.5", "-I", "500"])
        .output()
        .unwrap();
    let json = Command::new(HVPROF)
        .args(["stat", "-p", &pid, "-d", "1", "--format", "json"])
        .output()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vm.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = vm.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let intervals = text
        .lines()
        .filter(|l| l.contains(&format!("vm {pid}")) && l.contains("exits"))
        .count();
    assert!(intervals >= 2, "a line per interval: {text}");
    assert!(
        text.contains("[source: "),
        "every exit figure names its source: {text}"
    );
    assert!(
        text.contains("port 0x0080"),
        "port I/O exits by port: {text}"
    );
    assert!(text.contains("steal source: schedstat run_delay"), "{text}");
    assert!(json.status.success());
    let last = String::from_utf8_lossy(&json.stdout);
    let start = last.find("\n{").map_or(0, |i| i + 1);
    let v: serde_json::Value = serde_json::from_str(&last[start..]).expect("final JSON report");
    let vm = &v["vms"][0];
    assert_eq!(vm["pid"].to_string(), pid);
    // Each port write exits (~65 µs a round trip under nested PVM): at least 2000 exits per
    // second the vCPUs spent on a CPU, however little of the wall time that was.
    let on_cpu_ns: u64 = vm["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["steal"]["on_cpu_ns"].as_u64().expect("vCPU on-CPU time"))
        .sum();
    let total = vm["exits"]["total"].as_u64().unwrap();
    let per_s = common::on_cpu::per_on_cpu_second(total, on_cpu_ns);
    assert!(
        on_cpu_ns > 50_000_000 && per_s > 2000.0,
        "{total} exits in {on_cpu_ns} ns on CPU ({per_s:.0}/s): {vm}"
    );
    assert!(
        vm["exits"]["source"].as_str().unwrap().contains("kvm:"),
        "{vm}"
    );
    assert_eq!(vm["vcpus"].as_array().unwrap().len(), 2);
}
