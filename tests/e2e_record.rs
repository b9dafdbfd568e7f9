//! End to end, on this machine's real KVM: start the built-in test VM as its own process,
//! profile it with `hvprof record`, and check the report.
//!
//! Needs root and /dev/kvm. Without them each test prints why and passes — except under
//! `CI=true`, where a missing prerequisite fails, so CI can never pass by skipping.
//!
//! The machine may be busy: sample counts are checked against each vCPU thread's measured
//! time on a CPU (`tests/common/on_cpu.rs`), never against duration × frequency.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hvprof::attribute::Class;
use hvprof::report::{Profile, ThreadReport};

use common::assert_thread_samples;
use common::on_cpu::OnCpuWindow;
use common::vm::{prerequisites, Vm, HVPROF};

impl Vm {
    /// `hvprof record --format json -p PID EXTRA...`, parsed.
    fn record_json(&self, extra: &[&str]) -> Profile {
        self.record_json_on_cpu(extra).0
    }

    /// [`Vm::record_json`], with the on-CPU time of each of the VM's threads over the whole
    /// `hvprof` run as the test measured it itself: `(tid, ns)`, `None` for a thread gone.
    fn record_json_on_cpu(&self, extra: &[&str]) -> (Profile, Vec<(i32, Option<u64>)>) {
        let pid = self.pid.to_string();
        let window = OnCpuWindow::start_process(self.pid);
        let p = record_json(&[&["-p", pid.as_str()], extra].concat());
        let outer = window.tids().into_iter().zip(window.deltas()).collect();
        (p, outer)
    }

    /// `hvprof record -p PID -e cpu-clock EXTRA...`.
    fn record(&self, extra: &[&str]) -> std::process::Output {
        let pid = self.pid.to_string();
        hvprof(&[&["record", "-p", pid.as_str(), "-e", "cpu-clock"], extra].concat())
    }
}

fn hvprof(args: &[&str]) -> std::process::Output {
    Command::new(HVPROF)
        .args(args)
        .output()
        .expect("run hvprof")
}

fn record_json(args: &[&str]) -> Profile {
    let out = hvprof(&[&["record", "--format", "json"], args].concat());
    assert!(
        out.status.success(),
        "hvprof record failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report parses into hvprof::report::Profile")
}

fn class_sum(rows: &[hvprof::report::ClassRow]) -> f64 {
    rows.iter().map(|r| r.percent).sum()
}

fn share_of(t: &ThreadReport, class: Class, name: &str) -> u64 {
    t.top_symbols
        .iter()
        .filter(|s| s.class == class && s.symbol.name == name)
        .map(|s| s.samples)
        .sum()
}

/// The test measured each thread's on-CPU time around the hvprof run: `(tid, ns)`.
type OuterOnCpu = [(i32, Option<u64>)];

fn outer_of(outer: &OuterOnCpu, tid: i32) -> Option<u64> {
    outer
        .iter()
        .find(|(t, _)| *t == tid)
        .and_then(|(_, ns)| *ns)
}

/// Each vCPU's samples against its own measured time on CPU (a busy machine gives the vCPU
/// less than the whole duration, so duration × `hz` is no yardstick), nothing lost, and class
/// shares that add up. Needs a clock event (cpu-clock, task-clock), which samples at `hz` per
/// second on CPU.
fn check_counts(p: &Profile, hz: u64, outer: &OuterOnCpu) {
    assert!(
        p.meta.period_is_ns,
        "event {} is not a clock event: samples do not follow on-CPU time",
        p.meta.event
    );
    let vm = &p.vms[0];
    for t in &vm.vcpus {
        let what = format!("vCPU {:?}", t.vcpu);
        assert_thread_samples(&what, t, hz, outer_of(outer, t.tid));
        assert_eq!(t.lost, 0, "no lost samples at {hz} Hz");
        assert!(
            (class_sum(&t.classes) - 100.0).abs() < 0.01,
            "class shares sum to 100%"
        );
    }
    assert!((class_sum(&vm.classes) - 100.0).abs() < 0.01);
    assert_eq!(p.total_lost, 0);
}

#[test]
fn record_finds_vm_counts_samples_and_names_guest_functions() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    let (p, outer) = vm.record_json_on_cpu(&[
        "-F",
        "1000",
        "-d",
        "3",
        "--guest-kallsyms",
        vm.kallsyms.to_str().unwrap(),
    ]);
    assert_eq!(p.vms.len(), 1);
    let v = &p.vms[0];
    assert_eq!(v.pid, vm.pid);
    assert_eq!(v.name, "hvprof-testvm");
    assert_eq!(v.vcpu_count, 2);
    assert_eq!(
        v.vcpus.iter().map(|t| t.vcpu).collect::<Vec<_>>(),
        vec![Some(0), Some(1)]
    );
    check_counts(&p, 1000, &outer);
    // This kernel reports guest IPs when exclude_guest is clear: the ring-3 payload's samples
    // are GUEST_USER and resolve through the test VM's symbol map with the payload's shares.
    if p.guest_ips.tagged_samples > 0 {
        let (v0, v1) = (&v.vcpus[0], &v.vcpus[1]);
        let a = share_of(v0, Class::GuestUser, "hot_loop_a") as f64;
        assert!(
            a / v0.samples as f64 > 0.9,
            "vCPU 0 runs hot_loop_a: {v0:#?}"
        );
        let b = share_of(v1, Class::GuestUser, "hot_loop_b") as f64;
        let c = share_of(v1, Class::GuestUser, "hot_loop_c") as f64;
        let share_b = b / (b + c);
        assert!(
            (share_b - 0.75).abs() < 0.05,
            "vCPU 1 hot_loop_b:hot_loop_c = 3:1, got {share_b:.3}"
        );
    } else {
        assert!(
            p.guest_ips.hidden,
            "no guest-tagged sample, so the report must say guest IPs are hidden"
        );
    }
}

#[test]
fn excluded_guest_samples_are_inferred_as_guest_time_and_said_so() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    // perf's default (exclude_guest=1) is what hides guest IPs here: the samples land in the
    // hypervisor's guest-interrupt path (pvm_do_event_irqoff under PVM).
    let (p, outer) = vm.record_json_on_cpu(&["-F", "1000", "-d", "2", "--exclude-guest"]);
    assert_eq!(p.guest_ips.tagged_samples, 0);
    assert!(p.guest_ips.hidden, "{:#?}", p.guest_ips);
    assert!(p.guest_ips.landing_samples > 0);
    let v = &p.vms[0];
    check_counts(&p, 1000, &outer);
    for t in &v.vcpus {
        let hidden = t
            .classes
            .iter()
            .find(|c| c.class == Class::GuestHidden)
            .expect("guest-hidden class");
        assert!(
            hidden.percent > 80.0,
            "vCPU {:?}: guest time {:.1}%",
            t.vcpu,
            hidden.percent
        );
        let top = &t.top_symbols[0];
        assert_eq!(top.class, Class::GuestHidden);
        assert!(
            hvprof::attribute::GUEST_LANDING_SYMBOLS.contains(&top.symbol.name.as_str()),
            "{top:?}"
        );
        assert_eq!(top.symbol.dso, "[kernel.kallsyms]");
    }
    let out = hvprof(&[
        "record",
        "-p",
        &vm.pid.to_string(),
        "-d",
        "1",
        "--exclude-guest",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("guest IPs are not reported by this host"),
        "{text}"
    );
    assert!(
        text.contains("no hardware PMU") || !text.contains("cpu-clock instead"),
        "{text}"
    );
}

#[test]
fn ring0_guest_shows_hypervisor_emulation_with_host_symbols() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&["--ring0"]);
    let p = vm.record_json(&["-e", "cpu-clock", "-d", "2"]);
    let v = &p.vms[0];
    let kvm = v
        .classes
        .iter()
        .find(|c| c.class == Class::HypervisorKvm)
        .map_or(0.0, |c| c.percent);
    assert!(
        kvm > 30.0,
        "ring-0 guest code is emulated by KVM: {:#?}",
        v.classes
    );
    let named: Vec<&str> = v
        .top_symbols
        .iter()
        .filter(|s| s.class == Class::HypervisorKvm && s.symbol.addr.is_none())
        .map(|s| s.symbol.name.as_str())
        .collect();
    assert!(
        !named.is_empty(),
        "hypervisor symbols named from /proc/kallsyms"
    );
}

#[test]
fn system_wide_attributes_vcpu_samples_to_the_vm() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    let window = OnCpuWindow::start_process(vm.pid);
    let p = record_json(&["-a", "-e", "cpu-clock", "-F", "500", "-d", "1.5"]);
    let outer: Vec<_> = window.tids().into_iter().zip(window.deltas()).collect();
    assert_eq!(p.meta.mode, "system-wide");
    let v = p
        .vms
        .iter()
        .find(|v| v.pid == vm.pid)
        .expect("test VM found system-wide");
    assert_eq!(v.vcpus.len(), 2);
    // Per-CPU counters sample whatever runs: a vCPU gets the samples of its time on CPU.
    for t in &v.vcpus {
        let what = format!("vCPU {:?}", t.vcpu);
        assert_thread_samples(&what, t, 500, outer_of(&outer, t.tid));
    }
}

#[test]
fn stops_when_the_vm_exits_and_reports_what_it_has() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&["--duration", "1.5"]);
    let t0 = Instant::now();
    let out = hvprof(&[
        "record",
        "-p",
        &vm.pid.to_string(),
        "-e",
        "cpu-clock",
        "-d",
        "30",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "stopped when the VM went away"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VM is gone"), "{stderr}");
    assert!(
        stdout.contains("the VM exited during the collection"),
        "{stdout}"
    );
    assert!(stdout.contains("vCPU 0"), "{stdout}");
}

#[test]
fn stops_on_sigint_and_when_the_workload_ends() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    let t0 = Instant::now();
    let out = hvprof(&[
        "record",
        "-p",
        &vm.pid.to_string(),
        "-e",
        "cpu-clock",
        "--",
        "sleep",
        "1",
    ]);
    assert!(out.status.success());
    // No -d: only the workload's end can stop it. The bound is generous for a busy machine.
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?} for `sleep 1`",
        t0.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("workload ended"));

    let child = Command::new(HVPROF)
        .args(["record", "-p", &vm.pid.to_string(), "-e", "cpu-clock"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGINT"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("== VM hvprof-testvm"));
}

#[test]
fn recording_round_trip_and_corrupt_recordings() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rec.data");
    let window = OnCpuWindow::start_process(vm.pid);
    let out = vm.record(&["-F", "1000", "-d", "1", "-o", data.to_str().unwrap()]);
    let outer: Vec<_> = window.tids().into_iter().zip(window.deltas()).collect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "with -o the report is not printed");
    let rep = hvprof(&[
        "report",
        "-i",
        data.to_str().unwrap(),
        "--format",
        "json",
        "--guest-kallsyms",
        vm.kallsyms.to_str().unwrap(),
    ]);
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let p: Profile = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(p.vms[0].vcpus.len(), 2);
    // The recording keeps each thread's on-CPU time: the replayed samples match it.
    for t in &p.vms[0].vcpus {
        let what = format!("replayed vCPU {:?}", t.vcpu);
        assert_thread_samples(&what, t, 1000, outer_of(&outer, t.tid));
    }
    assert!((class_sum(&p.vms[0].classes) - 100.0).abs() < 0.01);

    // perf reads hvprof's file and counts the same samples (its raw dump shows guest-tagged
    // samples too, which plain `perf report`/`perf script` hide: shared/notes).
    let hv_samples = p.total_samples;
    if let Some(n) = perf_sample_count(&data) {
        assert_eq!(n, hv_samples, "perf report -D counts what hvprof reports");
        let script = Command::new("perf")
            .args(["script", "-i", data.to_str().unwrap()])
            .output()
            .expect("perf script");
        assert!(
            script.status.success(),
            "{}",
            String::from_utf8_lossy(&script.stderr)
        );
    }

    // Cut the file in the middle of the data: still reports, with a note.
    let bytes = std::fs::read(&data).unwrap();
    let cut = dir.path().join("cut.data");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let rep = hvprof(&["report", "-i", cut.to_str().unwrap()]);
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let text = String::from_utf8_lossy(&rep.stdout);
    assert!(
        text.contains("read up to the cut") || text.contains("was not finished"),
        "{text}"
    );

    // Garbage: a clear one-line error naming the file and the byte.
    let bad = dir.path().join("bad.data");
    std::fs::write(&bad, "this is not a recording\n").unwrap();
    let rep = hvprof(&["report", "-i", bad.to_str().unwrap()]);
    assert!(!rep.status.success());
    let err = String::from_utf8_lossy(&rep.stderr);
    assert!(
        err.contains("bad.data is not a usable perf.data file at byte"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1);
}

/// Samples in a perf.data file as perf itself counts them (`perf report -D`), when perf is
/// installed (CI installs it; a missing perf under CI=true fails).
fn perf_sample_count(data: &Path) -> Option<u64> {
    let out = Command::new("perf")
        .args(["report", "-D", "-i", data.to_str().unwrap()])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("PERF_RECORD_SAMPLE("))
                .count() as u64,
        ),
        Ok(o) => panic!(
            "perf report -D failed on {}: {}",
            data.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but perf is missing")
        }
        Err(_) => None,
    }
}

#[test]
fn perfs_own_recording_is_reported_per_vm_and_vcpu() {
    if !prerequisites(false) {
        return;
    }
    if Command::new("perf").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but perf is missing"
        );
        eprintln!("skipping: no perf");
        return;
    }
    let vm = Vm::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let pid = vm.pid.to_string();
    // Both ways perf records a VM's guest time: perf record with :HG, and perf kvm --guest.
    let ways: [&[&str]; 2] = [
        &[
            "record",
            "-q",
            "-e",
            "cpu-clock:HG",
            "-F",
            "1000",
            "-p",
            &pid,
            "-o",
        ],
        &[
            "kvm",
            "--guest",
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "1000",
            "-p",
            &pid,
            "-o",
        ],
    ];
    for (i, args) in ways.iter().enumerate() {
        let data = dir.path().join(format!("perf-{i}.data"));
        let rec = Command::new("perf")
            .args(*args)
            .arg(&data)
            .args(["--", "sleep", "1.5"])
            .output()
            .expect("perf record");
        assert!(
            rec.status.success(),
            "perf {args:?}: {}",
            String::from_utf8_lossy(&rec.stderr)
        );
        let rep = hvprof(&[
            "report",
            "-i",
            data.to_str().unwrap(),
            "--format",
            "json",
            "--guest-kallsyms",
            vm.kallsyms.to_str().unwrap(),
        ]);
        assert!(
            rep.status.success(),
            "{}",
            String::from_utf8_lossy(&rep.stderr)
        );
        let p: Profile = serde_json::from_slice(&rep.stdout).unwrap();
        let v = p.vms.iter().find(|v| v.pid == vm.pid).unwrap_or_else(|| {
            panic!(
                "perf {args:?}: the VM is rebuilt from COMM records: {:?}",
                p.vms
            )
        });
        assert_eq!(v.vcpus.len(), 2, "perf {args:?}: {v:?}");
        let names: Vec<&str> = v
            .top_symbols
            .iter()
            .map(|s| s.symbol.name.as_str())
            .collect();
        assert!(
            names.contains(&"hot_loop_a") && names.contains(&"hot_loop_b"),
            "perf {args:?}: guest-tagged samples are named per VM: {names:?}"
        );
        assert_eq!(
            Some(p.total_samples),
            perf_sample_count(&data),
            "perf {args:?}"
        );
    }
}

#[test]
fn error_messages_are_one_clear_line() {
    if !prerequisites(false) {
        return;
    }
    // A process that is surely not a VM and that this test may inspect (pid 1 may not be
    // readable even by root in a container).
    let mut not_vm = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let not_vm_pid = not_vm.id().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["record", "-p", &not_vm_pid, "-d", "1"],
            "is not a KVM VM: it holds no anon_inode:kvm-vm file descriptor",
        ),
        (
            vec!["record", "-p", "999999999", "-d", "1"],
            "no process with pid 999999999",
        ),
        (
            vec!["record", "-a", "-e", "cylces", "-d", "1"],
            "unknown event 'cylces'",
        ),
        (
            vec!["testvm", "--kvm-device", "/nonexistent/kvm", "-d", "1"],
            "cannot open KVM device /nonexistent/kvm",
        ),
        (
            vec!["report", "-i", "/nonexistent/rec"],
            "cannot read /nonexistent/rec",
        ),
    ];
    for (args, want) in cases {
        let out = hvprof(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(!err.contains("panicked"));
    }
    let _ = not_vm.kill();
    let _ = not_vm.wait();
    // An unreadable guest symbol file, on a real VM.
    let vm = Vm::start(&[]);
    let out = hvprof(&[
        "record",
        "-p",
        &vm.pid.to_string(),
        "-d",
        "1",
        "--guest-kallsyms",
        "/nonexistent/System.map",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot load symbols from /nonexistent/System.map"),
        "{err}"
    );
    // Active mode without a helper behind the socket, and a malformed helper address.
    for (helper, want) in [
        (
            "unix:/nonexistent/hvprof.sock",
            "connecting to the guest helper channel unix:/nonexistent/hvprof.sock",
        ),
        ("bogus", "invalid --helper value"),
    ] {
        let out = vm.record(&["-d", "1", "--active", "--helper", helper]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(want), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Not permitted: an unprivileged user profiling the whole host with perf_event_paranoid > 0.
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if paranoid > 0 && Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("/usr/bin/setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                HVPROF,
                "record",
                "-a",
                "-e",
                "cpu-clock",
                "-d",
                "1",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("perf_event_paranoid is") && err.contains("CAP_PERFMON"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn vms_lists_the_test_vm_with_its_vcpu_threads() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    let out = hvprof(&["vms", "--format", "json"]);
    assert!(out.status.success());
    let vms: Vec<hvprof::discover::Vm> = serde_json::from_slice(&out.stdout).unwrap();
    let v = vms
        .iter()
        .find(|v| v.pid == vm.pid)
        .expect("the test VM is listed");
    assert_eq!(v.name, "hvprof-testvm");
    assert_eq!(v.vcpus.len(), 2);
    for (i, c) in v.vcpus.iter().enumerate() {
        assert_eq!(c.index, i as u32);
        let tid = c.tid.expect("vCPU thread found");
        assert_eq!(v.thread_name(tid), Some(format!("vcpu{i}").as_str()));
    }
    let text = String::from_utf8_lossy(&hvprof(&["vms"]).stdout).to_string();
    assert!(
        text.contains(&format!("VM hvprof-testvm (pid {}", vm.pid)),
        "{text}"
    );
    assert!(text.contains("vCPU 1 → tid"), "{text}");
}

#[test]
fn flame_graph_and_folded_stacks() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("flame.svg");
    let out = vm.record(&[
        "-d",
        "1",
        "--guest-kallsyms",
        vm.kallsyms.to_str().unwrap(),
        "--format",
        "folded",
        "--flamegraph",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folded = String::from_utf8_lossy(&out.stdout);
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with("hvprof-testvm_(")
                && l.contains(";vCPU_1;guest-user;hot_loop_b ")),
        "{folded}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("hot_loop_a"),
        "SVG names the guest functions"
    );
}

#[test]
fn small_ring_buffers_lose_nothing_at_4khz() {
    if !prerequisites(false) {
        return;
    }
    // 4 data pages (16 KiB) fill in ~85 ms at 4 kHz: the reader must be woken at the
    // watermark (half the ring), not when the ring is already full.
    let vm = Vm::start(&[]);
    let (p, outer) =
        vm.record_json_on_cpu(&["-e", "cpu-clock", "-F", "4000", "-m", "4", "-d", "1.5"]);
    assert_eq!(
        p.total_lost,
        0,
        "lost with a 16 KiB ring: {:?}",
        p.vms[0].vcpus.iter().map(|t| t.lost).collect::<Vec<_>>()
    );
    // Nothing lost, and nothing silently missing either: every vCPU has the samples of its
    // time on CPU.
    for t in &p.vms[0].vcpus {
        let what = format!("vCPU {:?} at 4 kHz with a 16 KiB ring", t.vcpu);
        assert_thread_samples(&what, t, 4000, outer_of(&outer, t.tid));
    }
}
