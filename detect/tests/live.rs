//! Detection on the machine running the tests.
//!
//! Generic checks run everywhere. The specific assertions describe the development/CI machine
//! kind: a Firecracker KVM guest that is itself a KVM host through PVM (`kvm_pvm` loaded,
//! `/dev/kvm` present), with no hardware PMU. Elsewhere they are skipped with a message, except
//! under `CI=true`, where a missing prerequisite fails (STYLE.md section 5, Tests).

use std::path::Path;

use hvprof_detect::{detect, render_text, GuestKind, NestedVia, Source};

#[test]
fn live_detection_does_not_panic_and_serializes() {
    let d = detect(&Source::live());
    let text = render_text(&d);
    assert!(text.contains("Verdict: "));
    serde_json::to_string_pretty(&d).expect("serializable");
    assert!(d.input.live);
    // What the detector says about /dev/kvm matches the file system.
    assert_eq!(d.host.kvm, Path::new("/dev/kvm").exists());
}

#[test]
fn live_machine_is_a_nested_pvm_host_without_pmu() {
    if !Path::new("/sys/module/kvm_pvm").exists() {
        let msg = "skipping: this machine has no kvm_pvm (not the PVM development machine kind)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        eprintln!("{msg}");
        return;
    }
    let d = detect(&Source::live());
    let text = render_text(&d);
    eprintln!("{text}");
    // A guest (CPUID says KVMKVMKVM, the kernel says "Hypervisor detected: KVM"), and not a
    // PVM guest: the kernel printed "pvm-pv: not detected" and has no kvm_pvm_guest flag.
    assert_eq!(d.verdict.kind, GuestKind::KvmGuest, "{text}");
    assert!(!d.pvm.guest, "{text}");
    // ... that is itself a KVM host through PVM.
    assert!(d.verdict.nested, "{text}");
    assert_eq!(d.verdict.nested_via, Some(NestedVia::Pvm), "{text}");
    assert!(d.pvm.host && d.host.pvm_host, "{text}");
    assert!(d.host.kvm, "{text}");
    assert!(d.host.kvm_backends.iter().any(|b| b == "kvm_pvm"));
    // No hardware PMU: perf has only software/tracepoint/breakpoint/msr/uprobe sources.
    assert!(!d.host.hardware_pmu, "{text}");
    assert_eq!(d.host.default_event(), "cpu-clock");
    assert!(d.host.guest_ips_hidden_reason().is_some());
    assert!(d.cpuid.available && d.cpuid.hypervisor_bit == Some(true));
}
