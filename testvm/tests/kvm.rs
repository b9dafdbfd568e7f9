//! Integration tests that run the test VM on the host's KVM.
//!
//! Tests needing `/dev/kvm` print why and skip when it is unusable, except
//! when `CI=true`, where they fail. KVM tests run one at a time (they are
//! timing-sensitive and the machine may have only 2 cores).
//!
//! The machine may also be busy with other work: progress, exit and
//! iteration counts are judged against the vCPU threads' measured time on a
//! CPU (hvprof's `tests/common/on_cpu.rs`), never against wall time.

#[path = "../../tests/common/on_cpu.rs"]
mod on_cpu;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hvprof_testvm::{
    expected_shares, run_foreground, symbols, write_kallsyms, Error, Privilege, TestVm,
    TestVmConfig, Workload,
};

use on_cpu::{per_on_cpu_second, OnCpuWindow};

static SERIAL: Mutex<()> = Mutex::new(());

/// How long a vCPU thread may take to get the on-CPU time a test waits for,
/// however busy the machine: longer means the VM is stuck.
const STUCK: Duration = Duration::from_secs(60);

const MS: u64 = 1_000_000;

/// A window on the vCPU threads of `vm`, for [`OnCpuWindow::wait_for`].
fn vcpu_window(vm: &hvprof_testvm::RunningVm) -> OnCpuWindow {
    OnCpuWindow::start(vm.pid(), &vm.vcpu_tids())
}

/// Returns the serialisation guard if `/dev/kvm` is usable, `None` (after
/// printing why) if not; panics instead when `CI=true`.
fn kvm_or_skip(test: &str) -> Option<MutexGuard<'static, ()>> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner())),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{test}: /dev/kvm is not usable ({e}) and CI=true: failing instead of skipping"
                );
            }
            eprintln!("{test}: SKIPPED: /dev/kvm is not usable: {e}");
            None
        }
    }
}

fn comm(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn compute_ring3_runs_and_stops_quickly() {
    let Some(_g) = kvm_or_skip("compute_ring3_runs_and_stops_quickly") else {
        return;
    };
    let vm = TestVm::start(TestVmConfig::default()).expect("start");
    let tids = vm.vcpu_tids();
    assert_eq!(tids.len(), 2);
    assert_eq!(vm.pid(), std::process::id() as i32);
    for (i, &tid) in tids.iter().enumerate() {
        assert!(tid > 0);
        assert_eq!(comm(tid), format!("vcpu{i}"));
    }
    // A round takes ~0.5 ms on CPU: 100 ms on CPU is a few hundred rounds.
    vcpu_window(&vm).wait_for(100 * MS, STUCK).unwrap();
    let mid = [vm.progress(0), vm.progress(1)];
    vcpu_window(&vm).wait_for(100 * MS, STUCK).unwrap();
    let end = [vm.progress(0), vm.progress(1)];
    for v in 0..2 {
        assert!(mid[v] > 0, "vCPU{v} made no progress in 100 ms on CPU");
        assert!(
            end[v] > mid[v],
            "vCPU{v} progress stalled: {} -> {}",
            mid[v],
            end[v]
        );
        assert_eq!(vm.exits(v).io, 0, "Compute must not exit for I/O");
        assert_eq!(vm.failure(v), None);
    }
    let t0 = Instant::now();
    let summary = vm.stop().expect("stop");
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(200), "stop took {took:?}");
    for v in &summary.vcpus {
        assert!(v.progress >= end[v.index]);
        assert_eq!(v.exits.io, 0);
    }
    // The threads are gone after stop.
    for tid in tids {
        assert!(!std::path::Path::new(&format!("/proc/self/task/{tid}")).exists());
    }
    eprintln!("compute ring3: {summary:?}, stop took {took:?}");
}

/// Loop iterations per second on CPU (over all vCPUs), measured over 500 ms
/// on CPU of each vCPU thread.
fn iteration_rate(privilege: Privilege) -> (f64, TestVmConfig) {
    let cfg = TestVmConfig {
        privilege,
        ..TestVmConfig::default()
    };
    let unit = cfg.effective_unit_iterations();
    let vm = TestVm::start(cfg.clone()).expect("start");
    let n = vm.vcpus();
    let window = vcpu_window(&vm);
    let start: Vec<u64> = (0..n).map(|i| vm.progress(i)).collect();
    window.wait_for(500 * MS, STUCK).unwrap();
    let on_cpu: u64 = window.deltas().into_iter().flatten().sum();
    let end: Vec<u64> = (0..n).map(|i| vm.progress(i)).collect();
    let s = vm.stop().expect("stop");
    for (i, (e, b)) in end.iter().zip(&start).enumerate() {
        assert!(
            e > b,
            "{privilege:?}: vCPU{i} made no progress in 500 ms on CPU: {s:?}"
        );
    }
    let rounds: u64 = end.iter().zip(&start).map(|(e, b)| e - b).sum();
    let rate = per_on_cpu_second(rounds * 4 * unit, on_cpu);
    eprintln!(
        "{privilege:?}: {rounds} rounds of 4x{unit} iterations in {:.3} s on CPU = {rate:.3e} it/s",
        on_cpu as f64 / 1e9
    );
    (rate, cfg)
}

#[test]
fn ring3_runs_natively_ring0_is_emulated_but_progresses() {
    let Some(_g) = kvm_or_skip("ring3_runs_natively_ring0_is_emulated_but_progresses") else {
        return;
    };
    let (r3, _) = iteration_rate(Privilege::Ring3);
    let (r0, _) = iteration_rate(Privilege::Ring0);
    // Natively a loop iteration takes about 1 ns (~1e9 it/s on CPU); PVM's
    // instruction-by-instruction emulation of CPL 0 manages about 1e5 it/s.
    // Rates are per second on CPU, so a busy host does not lower them much.
    assert!(r3 > 5e7, "ring3 only {r3:.3e} it/s: not running natively?");
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        assert!(
            r3 > 100.0 * r0,
            "ring3 {r3:.3e} it/s vs ring0 {r0:.3e} it/s"
        );
    } else {
        // On hardware-assisted KVM (VMX/SVM) CPL 0 runs natively too.
        eprintln!("not PVM (no /sys/module/kvm_pvm): ring0/ring3 ratio not checked");
    }
}

#[test]
fn port_io_exits_are_counted() {
    let Some(_g) = kvm_or_skip("port_io_exits_are_counted") else {
        return;
    };
    let cfg = TestVmConfig {
        workload: Workload::PortIo { port: 0x80 },
        ..TestVmConfig::default()
    };
    let vm = TestVm::start(cfg).expect("start");
    // A round is 4 × 256 exits, ~70 ms on CPU: 300 ms on CPU is a few rounds.
    let window = vcpu_window(&vm);
    window.wait_for(300 * MS, STUCK).unwrap();
    let on_cpu = window.deltas();
    let io: Vec<u64> = (0..vm.vcpus()).map(|i| vm.exits(i).io).collect();
    let t0 = Instant::now();
    let s = vm.stop().expect("stop");
    assert!(t0.elapsed() < Duration::from_millis(200));
    for v in &s.vcpus {
        // (Exits since the start, over on-CPU time since the window: a slight overestimate.)
        let ns = on_cpu[v.index].expect("vCPU thread alive until stop");
        let rate = per_on_cpu_second(io[v.index], ns);
        assert!(
            rate > 1000.0,
            "vCPU{}: only {} I/O exits in {ns} ns on CPU ({rate:.0}/s)",
            v.index,
            io[v.index]
        );
        assert!(v.progress > 0, "vCPU{}: no round completed", v.index);
        assert_eq!(v.exits.hlt, 0);
    }
    eprintln!(
        "port io ring3: {:?}",
        s.vcpus
            .iter()
            .map(|v| (v.exits, v.progress))
            .collect::<Vec<_>>()
    );

    // The same from CPL 0 (no I/O bitmap or IOPL involved).
    let cfg = TestVmConfig {
        workload: Workload::PortIo { port: 0x3f8 },
        privilege: Privilege::Ring0,
        vcpus: 1,
        ..TestVmConfig::default()
    };
    let vm = TestVm::start(cfg).expect("start ring0");
    let window = vcpu_window(&vm);
    window.wait_for(200 * MS, STUCK).unwrap();
    let ns = window.deltas()[0].expect("vCPU thread alive until stop");
    let io = vm.exits(0).io;
    let s = vm.stop().expect("stop ring0");
    let rate = per_on_cpu_second(io, ns);
    assert!(
        io > 0 && rate > 200.0,
        "{io} exits in {ns} ns on CPU: {s:?}"
    );
    eprintln!("port io ring0: {:?}", s.vcpus[0].exits);
}

#[test]
fn guest_measured_shares_match_expected() {
    let Some(_g) = kvm_or_skip("guest_measured_shares_match_expected") else {
        return;
    };
    let vm = TestVm::start(TestVmConfig::default()).expect("start");
    // Thousands of ~0.5 ms rounds, however long that takes on a busy host.
    vcpu_window(&vm).wait_for(1000 * MS, STUCK).unwrap();
    let s = vm.stop().expect("stop");
    for v in &s.vcpus {
        let measured = v.measured_shares.clone();
        let expected = expected_shares(v.index);
        eprintln!(
            "vCPU{}: measured {measured:?} expected {expected:?} tsc {:?}",
            v.index, v.function_tsc
        );
        assert_eq!(measured.len(), expected.len());
        for ((mn, mf), (en, ef)) in measured.iter().zip(&expected) {
            assert_eq!(mn, en);
            assert!(
                (mf - ef).abs() <= 0.05,
                "vCPU{} {mn}: measured {mf:.3}, expected {ef:.3}",
                v.index
            );
        }
    }
    // vCPU0 never runs b or c; vCPU1 never runs a.
    assert_eq!(
        s.vcpus[0].function_tsc[1].1 + s.vcpus[0].function_tsc[2].1,
        0
    );
    assert_eq!(s.vcpus[1].function_tsc[0].1, 0);
}

#[test]
fn four_vcpus_follow_parity_pattern() {
    let Some(_g) = kvm_or_skip("four_vcpus_follow_parity_pattern") else {
        return;
    };
    let cfg = TestVmConfig {
        vcpus: 4,
        ..TestVmConfig::default()
    };
    let vm = TestVm::start(cfg).expect("start");
    // 4 vCPUs on a 2-core host: wait for CPU time, not wall time.
    vcpu_window(&vm).wait_for(50 * MS, STUCK).unwrap();
    let s = vm.stop().expect("stop");
    for v in &s.vcpus {
        assert!(v.progress > 0, "vCPU{} idle after 50 ms on CPU", v.index);
        let tsc: Vec<bool> = v.function_tsc.iter().map(|(_, t)| *t > 0).collect();
        if v.index % 2 == 0 {
            assert_eq!(tsc, [true, false, false]);
        } else {
            assert_eq!(tsc, [false, true, true]);
        }
    }
}

#[test]
fn halt_ring0_exits_and_ring3_is_rejected() {
    let bad = TestVmConfig {
        workload: Workload::Halt,
        ..TestVmConfig::default()
    };
    assert!(matches!(
        TestVm::start(bad),
        Err(Error::InvalidConfig { .. })
    ));
    let Some(_g) = kvm_or_skip("halt_ring0_exits_and_ring3_is_rejected") else {
        return;
    };
    let cfg = TestVmConfig {
        workload: Workload::Halt,
        privilege: Privilege::Ring0,
        vcpus: 1,
        ..TestVmConfig::default()
    };
    let vm = TestVm::start(cfg).expect("start");
    let window = vcpu_window(&vm);
    window.wait_for(200 * MS, STUCK).unwrap();
    let ns = window.deltas()[0].expect("vCPU thread alive until stop");
    let hlt = vm.exits(0).hlt;
    let s = vm.stop().expect("stop");
    let rate = per_on_cpu_second(hlt, ns);
    assert!(
        hlt > 0 && rate > 200.0,
        "{hlt} HLT exits in {ns} ns on CPU: {s:?}"
    );
    eprintln!("halt ring0: {:?} in {:?}", s.vcpus[0].exits, s.elapsed);
    assert_eq!(s.vcpus[0].exits.io, 0);
}

#[test]
fn run_foreground_honours_duration_and_writes_kallsyms() {
    let Some(_g) = kvm_or_skip("run_foreground_honours_duration_and_writes_kallsyms") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kallsyms");
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let s = run_foreground(
        TestVmConfig::default(),
        Some(Duration::from_millis(300)),
        Some(&path),
        &stop,
    )
    .expect("run_foreground");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(s.vcpus.iter().all(|v| v.progress > 0));
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains(" T hot_loop_a\n"));
}

#[test]
fn run_foreground_stops_on_flag() {
    let Some(_g) = kvm_or_skip("run_foreground_stops_on_flag") else {
        return;
    };
    let stop = AtomicBool::new(true);
    let t0 = Instant::now();
    run_foreground(TestVmConfig::default(), None, None, &stop).expect("run_foreground");
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn drop_stops_vcpu_threads() {
    let Some(_g) = kvm_or_skip("drop_stops_vcpu_threads") else {
        return;
    };
    let vm = TestVm::start(TestVmConfig::default()).expect("start");
    let tids = vm.vcpu_tids();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    drop(vm);
    assert!(t0.elapsed() < Duration::from_millis(200));
    for tid in tids {
        assert!(!std::path::Path::new(&format!("/proc/self/task/{tid}")).exists());
    }
}

#[test]
fn missing_kvm_device_is_a_clear_error() {
    let cfg = TestVmConfig {
        kvm_path: PathBuf::from("/nonexistent/kvm"),
        ..TestVmConfig::default()
    };
    let err = TestVm::start(cfg).expect_err("must fail");
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::NoKvm { path, .. } if path == &PathBuf::from("/nonexistent/kvm"))
    );
    assert!(msg.contains("/dev/kvm missing or not permitted"), "{msg}");
    assert!(msg.contains("/nonexistent/kvm"), "{msg}");
    let src = std::error::Error::source(&err)
        .expect("has source")
        .to_string();
    assert!(src.contains("No such file"), "{src}");
}

#[test]
fn kallsyms_file_is_sorted_unique_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("testvm.kallsyms");
    write_kallsyms(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut parsed = Vec::new();
    for line in text.lines() {
        let mut f = line.split(' ');
        let (addr, ty, name) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        assert!(f.next().is_none(), "extra fields in {line:?}");
        assert_eq!(addr.len(), 16, "{line:?}");
        assert_eq!(ty, "T");
        parsed.push((u64::from_str_radix(addr, 16).unwrap(), name.to_string()));
    }
    for w in parsed.windows(2) {
        assert!(w[0].0 < w[1].0, "not sorted/unique: {w:?}");
    }
    for name in [
        "vcpu_main",
        "timed_call",
        "hot_loop_a",
        "hot_loop_b",
        "hot_loop_c",
    ] {
        assert!(parsed.iter().any(|(_, n)| n == name), "{name} missing");
    }
    let from_api: Vec<(u64, String)> = symbols()
        .iter()
        .map(|s| (s.addr, s.name.to_string()))
        .collect();
    assert_eq!(parsed, from_api);
    assert_eq!(parsed[0].0, 0x40_0000);
}

#[test]
fn invalid_configs_are_rejected() {
    for cfg in [
        TestVmConfig {
            vcpus: 0,
            ..TestVmConfig::default()
        },
        TestVmConfig {
            vcpus: 65,
            ..TestVmConfig::default()
        },
        TestVmConfig {
            mem_bytes: 1 << 20,
            ..TestVmConfig::default()
        },
        TestVmConfig {
            unit_iterations: Some(0),
            ..TestVmConfig::default()
        },
    ] {
        assert!(
            matches!(cfg.validate(), Err(Error::InvalidConfig { .. })),
            "{cfg:?}"
        );
    }
}
