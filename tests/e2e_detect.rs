//! `hvprof detect` on this machine: the live verdict with evidence, and `--probe`, which runs
//! the built-in test VM to measure guest-IP tagging and kvm:kvm_exit.

use std::process::Command;

const HVPROF: &str = env!("CARGO_BIN_EXE_hvprof");

fn live_kvm_host() -> bool {
    let ok = std::path::Path::new("/dev/kvm").exists() && nix::unistd::geteuid().is_root();
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but no root or /dev/kvm");
    }
    ok
}

#[test]
fn detect_names_this_machine_and_probes_it() {
    if !live_kvm_host() {
        eprintln!("skipping: needs root and /dev/kvm");
        return;
    }
    let out = Command::new(HVPROF)
        .args(["detect", "--probe", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let host = &d["host"];
    assert_eq!(host["kvm"], true);
    // The probe measured something: Yes or No with a reason naming the counts, never NotProbed.
    let st = host["guest_ip_tagging"]["status"].as_str().unwrap();
    assert!(st == "yes" || st == "no", "guest_ip_tagging: {st}");
    assert!(d["verdict"]["summary"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(
        !d["evidence"].as_array().unwrap().is_empty(),
        "every verdict has evidence"
    );
    if host["pvm_host"] == true {
        // This development/CI machine: nested KVM backed by PVM, no hardware PMU.
        assert_eq!(d["verdict"]["nested"], true);
        assert_eq!(d["verdict"]["nested_via"], "pvm");
        assert_eq!(host["hardware_pmu"], false);
        let detail = host["guest_ip_tagging"].to_string();
        assert!(detail.contains("exclude_guest=1"), "{detail}");
    }
    let text = Command::new(HVPROF).args(["detect"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("hvprof can measure here:"), "{text}");
}

#[test]
fn detect_reads_a_captured_tree() {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/detect/tests/fixtures/ec2_pvhvm"
    );
    let out = Command::new(HVPROF)
        .args(["detect", "--root", root])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PVHVM"), "{text}");
    for f in [
        "writable_page_tables",
        "auto_translated_physmap",
        "hvm_callback_vector",
        "hvm_safe_pvclock",
        "hvm_pirqs",
    ] {
        assert!(text.contains(f), "{f} in {text}");
    }
    let bad = Command::new(HVPROF)
        .args(["detect", "--root", root, "--probe"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot be combined with --root"));
}
