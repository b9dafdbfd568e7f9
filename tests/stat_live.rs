//! `hvprof stat` against the built-in test VM on this machine: a vCPU doing port I/O exits on
//! every iteration, and whichever exit source the host has must show rising exit counts and
//! name itself.
//!
//! Needs `/dev/kvm`, tracefs and root (perf tracepoints); without them the test prints why and
//! passes, except under `CI=true`.
//!
//! The machine may be busy: exit counts are compared through the vCPU threads' measured time
//! on CPU (a vCPU exits at a steady rate per second *on CPU*), never per second of wall time.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hvprof::stat::{self, StatOptions, StatReport};
use hvprof_testvm::{TestVm, TestVmConfig, Workload};

use common::on_cpu::OnCpuWindow;

/// The test VMs live in this process, and hvprof finds VMs by process: two test VMs at once
/// would look like one VM with both VMs' vCPU fds. The tests take turns.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_vm_at_a_time() -> MutexGuard<'static, ()> {
    ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("prerequisite missing under CI=true: {why}");
    }
    eprintln!("skipping: {why}");
}

fn prerequisites() -> Result<(), String> {
    if !std::path::Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm absent".into());
    }
    if stat::tracefs::effective_uid() != Some(0) {
        return Err("not root: kvm tracepoints need root or CAP_PERFMON + tracefs access".into());
    }
    match stat::tracefs::ensure_mounted(
        std::path::Path::new(stat::tracefs::DEFAULT_TRACEFS),
        "tracefs",
        "events",
    ) {
        stat::tracefs::MountState::Absent(why) => Err(format!("tracefs: {why}")),
        _ => Ok(()),
    }
}

#[test]
fn stat_port_io_vm_shows_rising_exits_with_source() {
    let _turn = one_vm_at_a_time();
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let vm = TestVm::start(TestVmConfig {
        vcpus: 2,
        workload: Workload::PortIo { port: 0x80 },
        ..Default::default()
    })
    .expect("start test VM");
    std::thread::sleep(Duration::from_millis(200));
    // The VMM's own count of KVM_EXIT_IO and the vCPUs' time on CPU, around the whole run.
    let outer = OnCpuWindow::start(vm.pid(), &vm.vcpu_tids());
    let before: Vec<u64> = (0..2).map(|i| vm.exits(i).io).collect();
    let opts = StatOptions {
        pids: vec![vm.pid()],
        duration: Some(Duration::from_millis(2500)),
        interval: Some(Duration::from_millis(500)),
        stop: hvprof::rt::StopToken::new(),
        ..StatOptions::default()
    };
    let mut intervals: Vec<StatReport> = Vec::new();
    let report = stat::run(&opts, &mut |r| {
        println!("{}", stat::render_interval_line(r));
        intervals.push(r.clone());
    })
    .expect("hvprof stat");
    let after: Vec<u64> = (0..2).map(|i| vm.exits(i).io).collect();
    let outer_on_cpu = outer.deltas();
    vm.stop().expect("stop test VM");
    let text = stat::render_text(&report);
    println!("{text}");
    let json = serde_json::to_string(&report).expect("json");
    assert!(json.contains("\"exit_source\""));

    assert_eq!(report.vms.len(), 1);
    let v = &report.vms[0];
    assert_eq!(v.vcpus.len(), 2);
    assert_ne!(report.exit_source, "none", "no exit source: {text}");
    assert_eq!(v.exits.source, report.exit_source);
    assert!(text.contains(&report.exit_source));
    // The VMM counted its KVM_EXIT_IOs over a window a little longer than hvprof's (setup
    // and teardown around it). How much longer depends on the load, so scale each vCPU's count
    // by the share of its on-CPU time that fell in hvprof's window (hvprof's steal figures
    // carry that time): exits per second on CPU are steady, exits per wall second are not.
    let vmm_io: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    assert!(vmm_io > 100, "the test VM did not exit: {vmm_io}");
    let mut expected = 0.0;
    for (i, c) in v.vcpus.iter().enumerate() {
        let inner = c.steal.as_ref().expect("steal of a vCPU thread").on_cpu_ns;
        let outer = outer_on_cpu[i].expect("vCPU thread alive until the end");
        assert!(
            inner > 0 && outer > 0,
            "vCPU {i} never ran: {inner} / {outer} ns"
        );
        let share = (inner as f64 / outer as f64).min(1.0);
        expected += (after[i] - before[i]) as f64 * share;
    }
    let seen = v.exits.total;
    println!("hvprof saw {seen} exits; VMM {vmm_io} in all, {expected:.0} in hvprof's window");
    assert!(
        seen as f64 >= expected * 0.8 && seen as f64 <= expected * 1.1 + 1000.0,
        "hvprof saw {seen} exits, the VMM handled {expected:.0} during the same on-CPU time \
         ({vmm_io} over the whole run)"
    );
    // Rising: every interval in which the vCPUs ran saw exits.
    assert!(intervals.len() >= 3, "{} intervals", intervals.len());
    for r in &intervals {
        let ran_ns: u64 = r.vms[0]
            .vcpus
            .iter()
            .filter_map(|c| Some(c.steal.as_ref()?.on_cpu_ns))
            .sum();
        assert!(
            r.vms[0].exits.total > 0 || ran_ns < 10_000_000,
            "interval {:?} saw no exits while the vCPUs ran {ran_ns} ns",
            r.interval
        );
    }
    for c in &v.vcpus {
        assert!(c.exits.total > 0, "vCPU {} saw no exits", c.index);
        assert!(c.steal.is_some());
    }
    // Port 0x80 writes dominate wherever pio is visible.
    if report.exit_source != "debugfs" {
        let top = &v.exits.by_reason[0];
        assert!(
            ["PIO", "IO_INSTRUCTION", "io"].contains(&top.name.as_str()),
            "top reason {}",
            top.name
        );
        assert!(top.latency.is_some(), "no latency for {}", top.name);
        assert_eq!(v.exits.pio[0].port, 0x80);
        assert_eq!(v.exits.pio[0].dir, "out");
    }
    if report.exit_source.contains("kvm_userspace_exit") {
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("kvm:kvm_exit never fired")),
            "fallback without the note: {:?}",
            report.notes
        );
    }
}

#[test]
fn stat_bad_inputs_give_partial_results() {
    let _turn = one_vm_at_a_time();
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let vm = TestVm::start(TestVmConfig {
        vcpus: 1,
        workload: Workload::PortIo { port: 0x70 },
        ..Default::default()
    })
    .expect("start test VM");
    // No tracefs, no debugfs: steal still measured, exits from no source, and notes say why.
    let opts = StatOptions {
        pids: vec![vm.pid()],
        duration: Some(Duration::from_millis(300)),
        tracefs: tmp.path().join("no-tracefs"),
        debugfs: Some(tmp.path().join("no-debugfs")),
        ..StatOptions::default()
    };
    let r = stat::run(&opts, &mut |_| {}).expect("partial report");
    vm.stop().expect("stop");
    println!("{}", stat::render_text(&r));
    assert_eq!(r.exit_source, "none");
    assert!(
        r.notes.iter().any(|n| n.contains("tracefs unavailable")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes.iter().any(|n| n.contains("debugfs")),
        "{:?}",
        r.notes
    );
    assert!(r.tracepoints.iter().all(|t| t.state == "absent"));
    assert!(r.vms[0].vcpus[0].steal.is_some());
    assert!(!r.xen_hypercalls.available);

    // A pid that is not a VM is an error naming it (a child of ours: pid 1 may not be
    // readable even by root in a container).
    let mut not_vm = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let not_vm_pid = not_vm.id() as i32;
    let e = stat::run(
        &StatOptions {
            pids: vec![not_vm_pid],
            duration: Some(Duration::from_millis(50)),
            ..StatOptions::default()
        },
        &mut |_| {},
    )
    .expect_err("sleep is not a VM");
    let _ = not_vm.kill();
    let _ = not_vm.wait();
    let msg = hvprof::error_chain(&e);
    assert!(msg.contains(&format!("pid {not_vm_pid}")), "{msg}");
    // Bad options.
    let e = stat::run(
        &StatOptions {
            interval: Some(Duration::from_millis(1)),
            ..StatOptions::default()
        },
        &mut |_| {},
    )
    .expect_err("interval too short");
    assert!(e.to_string().contains("interval"), "{e}");
}

#[test]
fn stat_vm_exiting_mid_run_keeps_figures() {
    let _turn = one_vm_at_a_time();
    if let Err(why) = prerequisites() {
        return skip_or_fail(&why);
    }
    // A fake proc tree pointing at a real VM whose "process" disappears mid-run: the test VM
    // lives in this process, so it cannot really exit; removing its fake /proc entry is what
    // hvprof sees when a VMM exits.
    let tmp = tempfile::tempdir().expect("tempdir");
    let vm = TestVm::start(TestVmConfig {
        vcpus: 1,
        workload: Workload::PortIo { port: 0x80 },
        ..Default::default()
    })
    .expect("start test VM");
    let pid = vm.pid();
    let tid = vm.vcpu_tids()[0];
    let proc_root = tmp.path().join("proc");
    let pdir = proc_root.join(pid.to_string());
    std::fs::create_dir_all(pdir.join("fd")).unwrap();
    std::fs::create_dir_all(pdir.join(format!("task/{tid}"))).unwrap();
    std::os::unix::fs::symlink("anon_inode:kvm-vm", pdir.join("fd/10")).unwrap();
    std::os::unix::fs::symlink("anon_inode:kvm-vcpu:0", pdir.join("fd/11")).unwrap();
    std::fs::write(pdir.join("comm"), "fakevmm\n").unwrap();
    std::fs::write(pdir.join(format!("task/{tid}/comm")), "vcpu0\n").unwrap();
    std::fs::write(
        pdir.join(format!("task/{tid}/stat")),
        format!("{tid} (vcpu0) R 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0\n"),
    )
    .unwrap();
    let real = format!("/proc/{pid}/task/{tid}/schedstat");
    let fake = pdir.join(format!("task/{tid}/schedstat"));
    std::fs::copy(&real, &fake).unwrap();
    let stop = hvprof::rt::StopToken::new();
    // The duration only bounds the run: the VM's exit (after ~0.5 s) must end it first.
    let opts = StatOptions {
        pids: vec![pid],
        duration: Some(Duration::from_secs(10)),
        proc_root: proc_root.clone(),
        debugfs: None,
        stop: stop.clone(),
        ..StatOptions::default()
    };
    let pdir2 = pdir.clone();
    let killer = std::thread::spawn(move || {
        // Refresh the fake schedstat atomically (write + rename), as the kernel's file reads.
        let tmpfile = fake.with_extension("tmp");
        for _ in 0..25 {
            std::thread::sleep(Duration::from_millis(20));
            if std::fs::copy(&real, &tmpfile).is_ok() {
                let _ = std::fs::rename(&tmpfile, &fake);
            }
        }
        std::fs::remove_dir_all(&pdir2).unwrap();
    });
    let r = stat::run(&opts, &mut |_| {});
    killer.join().unwrap();
    vm.stop().expect("stop");
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            // discover may not identify the fake vCPU thread; that is not what is tested here.
            return eprintln!("skipping: fake proc tree not accepted: {e}");
        }
    };
    println!("{}", stat::render_text(&r));
    assert!(r.vms[0].exited);
    assert!(
        r.duration_s < 8.0,
        "run did not end when the VM exited: {} s of a 10 s duration",
        r.duration_s
    );
    assert!(
        r.notes.iter().any(|n| n.contains("exited after")),
        "{:?}",
        r.notes
    );
    if r.vms[0].vcpus[0].tid.is_some() && r.exit_source != "none" {
        assert!(r.vms[0].exits.total > 0, "figures up to the exit were kept");
    }
}
