//! End to end, call stacks on this machine's real KVM: the built-in test VM (its VMM is
//! `hvprof testvm`, Rust built without frame pointers) running a port-I/O workload, so its
//! vCPU thread exits to the host all the time.
//!
//! - `--call-graph dwarf`: one folded stack holds the VMM's own vCPU-thread function (found by
//!   unwinding the stack copy with `.eh_frame`), the KVM_RUN ioctl and the host kernel's KVM
//!   path (kvm_vcpu_ioctl → kvm_arch_vcpu_ioctl_run);
//! - `-g` (frame pointers) gets the same kernel path but cannot reach that VMM function —
//!   which is what makes the DWARF result a test of the unwinder;
//! - the recording renders the same stacks again (`hvprof report -i`), perf reads its
//!   callchains, and `go tool pprof` reads the pprof of it;
//! - perf's own `--call-graph dwarf` recording gives hvprof the same joined stacks.
//!
//! Needs root and /dev/kvm (see tests/common/vm.rs); `go` is needed for the pprof part, which
//! CI installs (golang-go).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use hvprof::report::Profile;

use common::vm::{prerequisites, Vm, HVPROF};

/// The VMM's vCPU-thread function in hvprof's test VM (testvm/src/vm/vcpu.rs).
const VCPU_FN: &str = "hvprof_testvm::vm::vcpu::vcpu_thread";
/// The host kernel's KVM_RUN path, caller before callee.
const KVM_RUN: &str = "kvm_vcpu_ioctl;kvm_arch_vcpu_ioctl_run";

fn hvprof(args: &[&str]) -> std::process::Output {
    let out = Command::new(HVPROF)
        .args(args)
        .output()
        .expect("run hvprof");
    assert!(
        out.status.success(),
        "hvprof {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Folded lines as (stack, count).
fn folded(out: &[u8]) -> BTreeMap<String, u64> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| {
            let (s, n) = l.rsplit_once(' ')?;
            Some((s.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// Samples whose stack has the VMM's vCPU function above the host kernel's KVM_RUN path.
fn vmm_and_kvm(f: &BTreeMap<String, u64>) -> u64 {
    f.iter()
        .filter(|(s, _)| {
            s.find(VCPU_FN)
                .zip(s.find(KVM_RUN))
                .is_some_and(|(v, k)| v < k)
        })
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn dwarf_stacks_join_the_vmm_vcpu_function_and_the_kvm_run_path() {
    if !prerequisites(false) {
        return;
    }
    let vm = Vm::start(&["--workload", "pio"]);
    let pid = vm.pid.to_string();
    let base = ["record", "-p", pid.as_str(), "-e", "cpu-clock", "-d", "1.5"];

    // Frame pointers: the kernel path, but the VMM's frames stop at garbage.
    let fp = folded(&hvprof(&[&base[..], &["-g", "--format", "folded"]].concat()).stdout);
    let total_fp: u64 = fp.values().sum();
    let kvm_fp: u64 = fp
        .iter()
        .filter(|(s, _)| s.contains(KVM_RUN))
        .map(|(_, n)| n)
        .sum();
    assert!(total_fp > 100, "{fp:?}");
    assert!(kvm_fp > 0, "-g shows the KVM_RUN path: {fp:?}");
    assert_eq!(
        vmm_and_kvm(&fp),
        0,
        "the test VM has no frame pointers: -g cannot reach {VCPU_FN}"
    );

    // DWARF, recorded to a file, then reported in every format.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("stacks.data");
    let data = data.to_str().unwrap();
    hvprof(&[&base[..], &["--call-graph", "dwarf", "-o", data]].concat());
    let dw = folded(&hvprof(&["report", "-i", data, "--format", "folded"]).stdout);
    let total: u64 = dw.values().sum();
    let joined = vmm_and_kvm(&dw);
    // The vCPU thread's host-side samples: everything but the guest's own (leaf-only) time.
    let host_side: u64 = dw
        .iter()
        .filter(|(s, _)| !s.contains(";guest-"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        joined * 2 > host_side,
        "most host-side samples ({host_side} of {total}) should show {VCPU_FN} above {KVM_RUN}; {joined} do: {dw:#?}"
    );
    // Guest samples stay leaf-only: the class frame stands where no frames are known.
    assert!(
        dw.keys()
            .any(|s| s.contains(";vCPU_0;guest-user;") && !s.contains(VCPU_FN)),
        "{dw:#?}"
    );

    // The JSON of the same file: inclusive share of the VMM function covers the joined stacks.
    let p: Profile =
        serde_json::from_slice(&hvprof(&["report", "-i", data, "--format", "json"]).stdout)
            .unwrap();
    assert!(p.callchains);
    let v = &p.vms[0];
    let row = v
        .top_symbols
        .iter()
        .find(|r| r.symbol.name == VCPU_FN)
        .expect("the vCPU function is a row (children)");
    assert!(row.inclusive_samples >= joined && row.samples <= row.inclusive_samples);
    let stacked: u64 = v.stacks.iter().map(|s| s.samples).sum();
    assert_eq!(stacked, v.samples, "every sample is in one stack");

    // perf reads the callchains hvprof recorded.
    if let Ok(o) = Command::new("perf")
        .args([
            "report",
            "-i",
            data,
            "--stdio",
            "--children",
            "--sort",
            "sym",
        ])
        .output()
    {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("kvm_arch_vcpu_ioctl_run"),
            "perf report shows the recorded kernel callchains:\n{text}"
        );
    }

    // perf's own `--call-graph dwarf` file (every user register dumped, perf's mask): hvprof
    // unwinds its stack copies the same way.
    let perf_data = dir.path().join("perf-dwarf.data");
    let perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock:HG",
            "--call-graph",
            "dwarf",
            "-p",
        ])
        .arg(&pid)
        .arg("-o")
        .arg(&perf_data)
        .args(["--", "sleep", "1.5"])
        .output();
    match perf {
        Ok(o) if o.status.success() => {
            let pf = folded(
                &hvprof(&[
                    "report",
                    "-i",
                    perf_data.to_str().unwrap(),
                    "--format",
                    "folded",
                ])
                .stdout,
            );
            let host: u64 = pf
                .iter()
                .filter(|(s, _)| !s.contains(";guest-"))
                .map(|(_, n)| n)
                .sum();
            let joined = vmm_and_kvm(&pf);
            assert!(
                joined * 2 > host,
                "perf's dwarf file: {joined} of {host} host-side samples show {VCPU_FN} above {KVM_RUN}: {pf:#?}"
            );
        }
        Ok(o) if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "perf record --call-graph dwarf failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("perf is not installed (linux-perf): {e}")
        }
        _ => eprintln!("skipping perf's own dwarf file: perf record did not run"),
    }

    // go tool pprof reads the pprof of the recording and shows the joined stack.
    let pprof = dir.path().join("stacks.pb.gz");
    let out = hvprof(&["report", "-i", data, "--format", "pprof"]);
    std::fs::write(&pprof, &out.stdout).unwrap();
    match Command::new("go")
        .args(["tool", "pprof", "-traces"])
        .arg(&pprof)
        .env("HOME", dir.path())
        .output()
    {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success()
                    && text.contains(VCPU_FN)
                    && text.contains("kvm_arch_vcpu_ioctl_run"),
                "go tool pprof -traces: {}\n{text}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("go is not installed (golang-go): {e}")
        }
        Err(e) => eprintln!("skipping the pprof check: go not installed ({e})"),
    }
}
