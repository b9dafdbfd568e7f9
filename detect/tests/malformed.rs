//! Missing, empty, truncated and malformed inputs: a clear "unknown" with a reason, never a panic.

use std::fs;
use std::path::Path;

use hvprof_detect::{detect, render_text, Confidence, GuestKind, KernelLogStatus, Source, XenMode};

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, content).expect("write");
}

#[test]
fn empty_tree_is_unknown_with_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = detect(&Source::tree(dir.path()));
    assert_eq!(d.verdict.kind, GuestKind::Unknown);
    assert_eq!(d.verdict.confidence, Confidence::None);
    let why = d.verdict.unknown_reason.as_deref().expect("reason");
    assert!(why.contains("no cpuid.txt"), "{why}");
    assert!(why.contains("no kernel log"), "{why}");
    assert!(why.contains("no /proc/cpuinfo"), "{why}");
    assert_eq!(d.kernel_log.status, KernelLogStatus::NotFound);
    let text = render_text(&d);
    assert!(text.contains("Verdict: unknown\n"), "{text}");
    assert!(
        text.contains("Unknown because: no usable evidence"),
        "{text}"
    );
    serde_json::to_string(&d).expect("serializable");
}

#[test]
fn missing_root_directory() {
    let d = detect(&Source::tree("/nonexistent/hvprof-detect-test"));
    assert_eq!(d.verdict.kind, GuestKind::Unknown);
    assert!(d.verdict.unknown_reason.is_some());
}

#[test]
fn non_hex_features_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "sys/hypervisor/properties/features",
        b"zzzz-not-hex\n",
    );
    let d = detect(&Source::tree(dir.path()));
    assert_eq!(d.verdict.kind, GuestKind::Unknown);
    let why = d.verdict.unknown_reason.as_deref().expect("reason");
    assert!(
        why.contains("/sys/hypervisor/properties/features: malformed"),
        "{why}"
    );
    assert!(why.contains("not hexadecimal"), "{why}");
    let x = d.xen.expect("xen section shows the unusable file");
    assert!(x.features.is_none());
    assert!(x.features_error.expect("error").contains("not hexadecimal"));
}

#[test]
fn non_hex_features_with_xen_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "sys/hypervisor/type", b"xen\n");
    write(dir.path(), "sys/hypervisor/properties/features", b"0x\n");
    let d = detect(&Source::tree(dir.path()));
    assert_eq!(d.verdict.kind, GuestKind::XenGuest);
    assert_eq!(d.verdict.xen_mode, None);
    assert!(d
        .problems
        .iter()
        .any(|p| p.path == "/sys/hypervisor/properties/features"));
    assert!(render_text(&d).contains("Verdict: Xen guest, mode unknown"));
    let x = d.xen.expect("xen");
    assert!(
        x.mode_reason.contains("nothing says PV, HVM or PVH"),
        "{}",
        x.mode_reason
    );
}

#[test]
fn truncated_dmesg_is_unknown_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The tail of a wrapped ring buffer, cut mid-line: no boot messages survive.
    write(
        dir.path(),
        "dmesg",
        b"[ 8123.456789] EXT4-fs (xvda1): re-mounted. Opts: (null)\n[ 8124.000001] Booting paravirtualized kern",
    );
    let d = detect(&Source::tree(dir.path()));
    assert_eq!(d.verdict.kind, GuestKind::Unknown);
    assert!(!d.kernel_log.starts_at_boot);
    assert!(d
        .kernel_log
        .note
        .as_deref()
        .unwrap_or("")
        .contains("does not reach back to boot"));
    let why = d.verdict.unknown_reason.expect("reason");
    assert!(why.contains("truncated"), "{why}");
}

#[test]
fn empty_and_binary_dmesg() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "dmesg.txt", b"");
    let d = detect(&Source::tree(dir.path()));
    assert_eq!(d.kernel_log.status, KernelLogStatus::Empty);
    assert_eq!(d.verdict.kind, GuestKind::Unknown);

    write(
        dir.path(),
        "dmesg.txt",
        &[0xff, 0xfe, b'[', b']', 0, b'\n', 0x80, b'<', b'9'],
    );
    let d = detect(&Source::tree(dir.path()));
    assert_eq!(d.kernel_log.status, KernelLogStatus::Read);
    assert_eq!(d.verdict.kind, GuestKind::Unknown);
}

#[test]
fn missing_dmesg_file_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = detect(&Source::tree(dir.path()).with_dmesg(dir.path().join("nope.log")));
    assert_eq!(d.kernel_log.status, KernelLogStatus::NotReadable);
    assert!(d
        .kernel_log
        .note
        .expect("note")
        .contains("kernel log not readable"));
}

#[test]
fn malformed_cpuid_txt() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "cpuid.txt",
        b"CPU 0:\n 0x40000000 0x00: eax=KVM\n",
    );
    let d = detect(&Source::tree(dir.path()));
    assert!(!d.cpuid.available);
    assert!(d
        .cpuid
        .unavailable_reason
        .as_deref()
        .unwrap_or("")
        .contains("line 2"));
    assert!(d.problems.iter().any(|p| p.path == "/cpuid.txt"));
    assert_eq!(d.verdict.kind, GuestKind::Unknown);
}

#[test]
fn garbage_everywhere_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk: &[u8] = b"\xff\xfe garbage [[[ ]]] <<<>>> 0x 0x\n\n:::\n";
    for rel in [
        "proc/cpuinfo",
        "proc/cmdline",
        "proc/kallsyms",
        "proc/mounts",
        "proc/sys/kernel/perf_event_paranoid",
        "proc/sys/kernel/kptr_restrict",
        "sys/hypervisor/type",
        "sys/hypervisor/guest_type",
        "sys/hypervisor/version/major",
        "sys/hypervisor/version/minor",
        "sys/hypervisor/properties/features",
        "sys/hypervisor/properties/capabilities",
        "sys/class/dmi/id/sys_vendor",
        "sys/devices/system/clocksource/clocksource0/current_clocksource",
        "sys/bus/virtio/devices/virtio0/device",
        "sys/kernel/security/lockdown",
        "cpuid.txt",
        "dmesg",
    ] {
        write(dir.path(), rel, junk);
    }
    let d = detect(&Source::tree(dir.path()));
    let _ = render_text(&d);
    serde_json::to_string_pretty(&d).expect("serializable");
    assert!(d
        .problems
        .iter()
        .any(|p| p.path.ends_with("perf_event_paranoid")));
    assert!(d
        .problems
        .iter()
        .any(|p| p.path.ends_with("virtio0/device")));
    // A Xen guest_type that is garbage still names Xen, but no mode.
    assert_eq!(d.verdict.kind, GuestKind::XenGuest);
    assert_ne!(d.verdict.xen_mode, Some(XenMode::Pv));
}

#[test]
fn pvh_from_feature_bits_alone() {
    // No guest_type, no log: an HVM-container feature set without hvm_pirqs is PVH (moderate).
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "sys/hypervisor/type", b"xen\n");
    write(
        dir.path(),
        "sys/hypervisor/properties/features",
        b"0001a305\n",
    );
    let d = detect(&Source::tree(dir.path()));
    assert_eq!(d.verdict.xen_mode, Some(XenMode::Pvh));
    let x = d.xen.expect("xen");
    assert!(
        x.mode_reason.contains("without hvm_pirqs"),
        "{}",
        x.mode_reason
    );
}

#[test]
fn hvm_without_log_says_what_it_cannot_see() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "sys/hypervisor/type", b"xen\n");
    write(dir.path(), "sys/hypervisor/guest_type", b"HVM\n");
    write(dir.path(), "sys/bus/xen/devices/vif-0/devtype", b"vif\n");
    let d = detect(&Source::tree(dir.path()));
    assert_eq!(d.verdict.xen_mode, Some(XenMode::HvmPvDrivers));
    let x = d.xen.expect("xen");
    assert!(
        x.mode_reason.contains("no complete kernel log"),
        "{}",
        x.mode_reason
    );
}
