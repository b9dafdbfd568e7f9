//! Captured trees under `tests/fixtures/<case>/` classified end to end.
//!
//! `ec2_pv` and `ec2_pvhvm` hold the kernel logs quoted in Brendan Gregg's "Xen Feature
//! Detection" (2014); see `tests/fixtures/README.md` for what each tree contains and which
//! parts are synthesized.

use std::path::PathBuf;

use hvprof_detect::{
    detect, detect_with_probe, render_text, Confidence, Detection, GuestIpProbe, GuestKind,
    NestedVia, Probe, ProbeOutcome, Signal, Source, XenMode,
};

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

fn run(case: &str) -> Detection {
    detect(&Source::tree(fixture(case)))
}

fn active(d: &Detection) -> Vec<String> {
    d.xen
        .as_ref()
        .map(|x| x.active.iter().map(|a| a.name.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn ec2_pv_is_pv() {
    let d = run("ec2_pv");
    assert_eq!(d.verdict.kind, GuestKind::XenGuest);
    assert_eq!(d.verdict.xen_mode, Some(XenMode::Pv));
    assert_eq!(d.verdict.confidence, Confidence::High);
    assert!(!d.verdict.nested);
    let x = d.xen.as_ref().expect("xen section");
    assert_eq!(x.version.as_deref(), Some("4.2.amazon"));
    let act = active(&d);
    for f in ["pv_timers", "pv_clock", "pv_network", "pv_disks"] {
        assert!(act.iter().any(|a| a == f), "{f} missing from {act:?}");
    }
    assert!(
        !act.iter().any(|a| a == "pv_interrupts"),
        "PV has no HVM callback vector"
    );
    // The evidence names the line that said so.
    assert!(d.evidence.iter().any(|e| e.signal == Signal::XenPv
        && e.source == "kernel log line 6"
        && e.observed == "Booting paravirtualized kernel on Xen"));
    // Capabilities list hvm-3.0 on this PV guest: a red herring, not a mode.
    assert!(x.capabilities.iter().any(|c| c == "hvm-3.0-x86_64"));
    assert!(d
        .red_herrings
        .iter()
        .any(|r| r.source == "/sys/hypervisor/properties/capabilities"));
    assert!(d
        .red_herrings
        .iter()
        .any(|r| r.source == "/boot/config-3.15.0-rc2" && r.observed.contains("CONFIG_XEN_PVH=y")));
    let f = x.features.as_ref().expect("features");
    let names: Vec<&str> = f.set.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mmu_pt_update_preserve_ad",
            "highmem_assist",
            "gnttab_map_avail_bits"
        ]
    );
}

#[test]
fn ec2_pvhvm_is_pvhvm_with_the_seed_features() {
    let d = run("ec2_pvhvm");
    assert_eq!(d.verdict.kind, GuestKind::XenGuest);
    assert_eq!(d.verdict.xen_mode, Some(XenMode::Pvhvm));
    assert_eq!(d.verdict.confidence, Confidence::High);
    let x = d.xen.as_ref().expect("xen section");
    let f = x.features.as_ref().expect("features decoded");
    assert_eq!(f.raw, "00000705");
    let names: Vec<&str> = f.set.iter().map(|b| b.name.as_str()).collect();
    // Exactly the five names xen-features.pl prints in the seed.
    assert_eq!(
        names,
        [
            "writable_page_tables",
            "auto_translated_physmap",
            "hvm_callback_vector",
            "hvm_safe_pvclock",
            "hvm_pirqs"
        ]
    );
    assert!(f.unknown_bits.is_empty());
    let act = active(&d);
    for f in [
        "pv_interrupts",
        "pv_timers",
        "pv_clock",
        "pv_network",
        "unplugged_emulated_nics",
        "unplugged_emulated_disks",
        "pv_disks",
    ] {
        assert!(act.iter().any(|a| a == f), "{f} missing from {act:?}");
    }
    assert!(
        x.mode_reason.contains("Xen HVM callback vector"),
        "{}",
        x.mode_reason
    );
    assert_eq!(d.platform.dmi.product_name.as_deref(), Some("HVM domU"));
    // No vmx in a guest's cpuinfo is called out.
    assert!(d.red_herrings.iter().any(|r| r.observed == "no vmx/svm"));
}

#[test]
fn xen_pvh() {
    let d = run("xen_pvh");
    assert_eq!(d.verdict.kind, GuestKind::XenGuest);
    assert_eq!(d.verdict.xen_mode, Some(XenMode::Pvh));
    let x = d.xen.as_ref().expect("xen section");
    assert_eq!(x.guest_type.as_deref(), Some("PVH"));
    let f = x.features.as_ref().expect("features");
    assert_eq!(f.unknown_bits, [27], "unknown bits listed by number");
    assert!(f.has("linux_rsdp_unrestricted") && !f.has("hvm_pirqs"));
    assert_eq!(x.version.as_deref(), Some("4.17.3"));
    assert!(d
        .evidence
        .iter()
        .any(|e| e.signal == Signal::Xen && e.source == "cpuid 0x40000000"));
    assert!(active(&d).iter().any(|a| a == "pv_spinlocks"));
}

#[test]
fn xen_plain_hvm() {
    let d = run("xen_hvm");
    assert_eq!(d.verdict.kind, GuestKind::XenGuest);
    assert_eq!(d.verdict.xen_mode, Some(XenMode::Hvm));
    assert!(active(&d).is_empty());
    // The kernel's "bare hardware" line is reported as a conflict, not ignored.
    assert!(d
        .verdict
        .conflicts
        .iter()
        .any(|c| c.contains("bare hardware")));
    assert!(d.verdict.confidence >= Confidence::Medium);
}

#[test]
fn xen_hvm_with_pv_drivers() {
    let d = run("xen_hvm_pv_drivers");
    assert_eq!(d.verdict.xen_mode, Some(XenMode::HvmPvDrivers));
    let act = active(&d);
    assert!(act.iter().any(|a| a == "pv_network"));
    assert!(!act.iter().any(|a| a == "pv_interrupts"));
}

#[test]
fn kvm_guest() {
    let d = run("kvm_guest");
    assert_eq!(d.verdict.kind, GuestKind::KvmGuest);
    assert_eq!(d.verdict.confidence, Confidence::High);
    assert!(!d.verdict.nested, "no /dev/kvm: not nested");
    let k = d.kvm.as_ref().expect("kvm section");
    assert_eq!(k.signature_leaf, Some(0x4000_0000));
    assert_eq!(k.features_eax, Some(0x0100_7afb));
    let names: Vec<&str> = k.features.iter().map(|b| b.name.as_str()).collect();
    for n in [
        "CLOCKSOURCE2",
        "STEAL_TIME",
        "PV_EOI",
        "PV_UNHALT",
        "PV_SEND_IPI",
        "CLOCKSOURCE_STABLE_BIT",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!names.contains(&"ASYNC_PF_VMEXIT"));
    let act: Vec<&str> = k.active.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(act.iter().filter(|a| **a == "kvmclock").count(), 1);
    assert!(act.contains(&"steal_time") && act.contains(&"pv_spinlocks"));
    let kinds: Vec<&str> = d.platform.virtio.iter().map(|v| v.kind.as_str()).collect();
    assert_eq!(kinds, ["net", "block", "rng"]);
    // vmx inside a guest is a red herring.
    assert!(d.red_herrings.iter().any(|r| r.observed == "vmx"));
    assert!(d.host.hardware_pmu);
    assert_eq!(d.host.default_event(), "cycles");
    assert!(!d.pvm.guest);
}

#[test]
fn bare_metal_kvm_host() {
    let d = run("bare_metal");
    assert_eq!(d.verdict.kind, GuestKind::BareMetal);
    assert_eq!(d.verdict.confidence, Confidence::High);
    assert!(!d.verdict.nested);
    let h = &d.host;
    assert!(h.kvm && h.hardware_pmu && h.hardware_virt && !h.pvm_host);
    assert_eq!(h.kvm_backends, ["kvm_intel"]);
    assert_eq!(h.default_event(), "cycles");
    assert_eq!(h.guest_ips_hidden_reason(), None);
    assert!(h.tracepoints.kvm_exit && h.tracepoints.kvm_entry);
    assert_eq!(h.debugfs.stats_readable, Some(true));
    assert_eq!(h.debugfs.vm_dirs, ["4242-12"]);
    assert_eq!(h.debugfs.vcpu_files_readable, Some(true));
    assert_eq!(h.lockdown.mode, "none");
    assert_eq!(h.paranoid, Some(2));
    assert!(d.can_measure.iter().any(|c| c.contains("kvm:kvm_exit")));
    assert!(d.cannot_measure.is_empty(), "{:?}", d.cannot_measure);
    // Configured (CONFIG_KVM_GUEST=y) is not active.
    assert!(d
        .red_herrings
        .iter()
        .any(|r| r.observed.contains("CONFIG_KVM_GUEST=y")));
    assert!(d.kvm.is_none() && d.xen.is_none());
}

#[test]
fn captured_dev_machine_is_a_kvm_guest_hosting_pvm() {
    let d = run("live_pvm_nested");
    assert_eq!(d.verdict.kind, GuestKind::KvmGuest);
    assert!(d.verdict.nested);
    assert_eq!(d.verdict.nested_via, Some(NestedVia::Pvm));
    assert!(d.verdict.pvm_host && d.pvm.host && !d.pvm.guest);
    assert_eq!(d.pvm.cmdline_nested_pvm.as_deref(), Some("1"));
    assert!(d.pvm.kallsyms_event_entry);
    let h = &d.host;
    assert!(h.kvm && !h.hardware_pmu && !h.hardware_virt);
    assert_eq!(h.default_event(), "cpu-clock");
    assert_eq!(
        h.event_sources,
        ["breakpoint", "msr", "software", "tracepoint", "uprobe"]
    );
    let why = h
        .guest_ips_hidden_reason()
        .expect("guest IPs hidden on PVM");
    assert!(why.contains("pvm_do_event_irqoff"), "{why}");
    assert_eq!(h.lockdown.mode, "locked");
    assert!(
        d.evidence
            .iter()
            .any(|e| e.signal == Signal::NotPvmGuest
                && e.observed.starts_with("pvm-pv: not detected"))
    );
    let k = d.kvm.as_ref().expect("kvm section");
    assert_eq!(k.features_eax, Some(0x0100_7efb));
    let text = render_text(&d);
    for key in [
        "Verdict: KVM guest; nested: also a KVM host via PVM (kvm_pvm loaded, /dev/kvm present)",
        "Confidence: high",
        "hardware PMU: no (event sources: breakpoint msr software tracepoint uprobe)",
        "default event: cpu-clock",
        "PVM host: yes",
        "hvprof can measure here:",
        "hvprof cannot measure here:",
        "  - count hardware events (cycles, instructions, cache misses), because there is no hardware PMU",
        "pvm_* symbols: PVM code compiled into the kernel",
    ] {
        assert!(text.contains(key), "missing {key:?} in:\n{text}");
    }
}

#[test]
fn golden_text_key_lines() {
    let text = render_text(&run("ec2_pvhvm"));
    for key in [
        "Verdict: Xen guest, mode PVHVM\n",
        "Confidence: high\n",
        "  + kernel log line 20: Xen HVM callback vector for event delivery is enabled -> xen_pv_interrupts (strong)",
        "  features: 00000705 (/sys/hypervisor/properties/features)\n",
        "    bit  0 writable_page_tables:",
        "    bit  2 auto_translated_physmap:",
        "    bit  8 hvm_callback_vector:",
        "    bit  9 hvm_safe_pvclock:",
        "    bit 10 hvm_pirqs:",
        "  version: 4.2.amazon\n",
        "Red herrings:\n",
        "hvprof can measure here:\n",
    ] {
        assert!(text.contains(key), "missing {key:?} in:\n{text}");
    }
    let text = render_text(&run("xen_pvh"));
    assert!(text.contains("    bit 27 (unknown to hvprof)"), "{text}");
}

#[test]
fn json_round_trips_and_uses_strings_for_enums() {
    let d = run("ec2_pvhvm");
    let s = serde_json::to_string_pretty(&d).expect("serialize");
    let v: serde_json::Value = serde_json::from_str(&s).expect("parse back");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["verdict"]["kind"], "xen_guest");
    assert_eq!(v["verdict"]["xen_mode"], "pvhvm");
    assert_eq!(v["verdict"]["confidence"], "high");
    assert_eq!(v["host"]["guest_ip_tagging"]["status"], "not_probed");
    assert_eq!(v["xen"]["features"]["set"][4]["name"], "hvm_pirqs");
    assert_eq!(v["evidence"][0]["strength"], "moderate");
}

struct FakeProbe;

impl GuestIpProbe for FakeProbe {
    fn probe(&self) -> ProbeOutcome {
        ProbeOutcome {
            guest_ip_tagging: Probe::No {
                reason: "0 of 200 samples tagged as guest; 190 in pvm_do_event_irqoff".into(),
            },
            kvm_exit_firing: Probe::Yes {
                detail: "4000 kvm_exit events in 1 s".into(),
            },
        }
    }
}

#[test]
fn probe_results_override_predictions() {
    let d = detect_with_probe(&Source::tree(fixture("bare_metal")), Some(&FakeProbe));
    assert_eq!(
        d.host.guest_ips_hidden_reason().as_deref(),
        Some("0 of 200 samples tagged as guest; 190 in pvm_do_event_irqoff")
    );
    assert!(matches!(d.host.tracepoints.firing, Probe::Yes { .. }));
    assert!(d
        .cannot_measure
        .iter()
        .any(|c| c.contains("0 of 200 samples")));
    let v = serde_json::to_value(&d).expect("json");
    assert_eq!(v["host"]["guest_ip_tagging"]["status"], "no");
    assert_eq!(v["host"]["tracepoints"]["firing"]["status"], "yes");
}

#[test]
fn saved_dmesg_overrides_the_tree_log() {
    // The PV log given with --dmesg against the PVHVM tree: the conflict is reported.
    let src = Source::tree(fixture("ec2_pvhvm")).with_dmesg(fixture("ec2_pv").join("dmesg"));
    let d = detect(&src);
    assert_eq!(
        d.kernel_log
            .origin
            .as_deref()
            .map(|o| o.ends_with("ec2_pv/dmesg")),
        Some(true)
    );
    assert_eq!(d.verdict.kind, GuestKind::XenGuest);
    let x = d.xen.expect("xen");
    assert!(x.mode_reason.contains("but also"), "{}", x.mode_reason);
}

#[test]
fn pvm_guest() {
    let d = run("pvm_guest");
    assert_eq!(d.verdict.kind, GuestKind::PvmGuest);
    assert_eq!(d.verdict.confidence, Confidence::High);
    assert!(d.pvm.guest && !d.pvm.host);
    assert!(d
        .evidence
        .iter()
        .any(|e| e.signal == Signal::PvmGuest && e.source == "cpuid 0x40000002"));
    assert!(d
        .evidence
        .iter()
        .any(|e| e.signal == Signal::PvmGuest && e.observed == "kvm_pvm_guest"));
    let k = d
        .kvm
        .as_ref()
        .expect("kvm section (PVM guests are KVM guests)");
    assert!(k.features.iter().any(|b| b.name == "PV_MMU"));
    assert!(render_text(&d).starts_with("hvprof detect: "));
}

#[test]
fn pvh_guest_log_alone_is_pvh_with_high_confidence() {
    // Only a PVH domU's boot log and cpuinfo: its own "Hypervisor detected: Xen PVH" line is
    // PVH evidence, not another hypervisor's and not PV.
    let d = run("xen_pvh_dmesg");
    assert_eq!(d.verdict.kind, GuestKind::XenGuest);
    assert_eq!(d.verdict.xen_mode, Some(XenMode::Pvh));
    assert_eq!(d.verdict.confidence, Confidence::High);
    assert!(d.verdict.conflicts.is_empty(), "{:?}", d.verdict.conflicts);
    let line = "Hypervisor detected: Xen PVH";
    let on_it: Vec<Signal> = d
        .evidence
        .iter()
        .filter(|e| e.observed == line)
        .map(|e| e.signal)
        .collect();
    assert_eq!(on_it, [Signal::XenPvh], "evidence drawn from {line:?}");
    assert!(!d
        .evidence
        .iter()
        .any(|e| matches!(e.signal, Signal::XenPv | Signal::OtherHypervisor)));
    let x = d.xen.as_ref().expect("xen section");
    assert_eq!(x.version.as_deref(), Some("4.17"));
    let act = active(&d);
    for f in [
        "pv_interrupts",
        "pv_timers",
        "pv_spinlocks",
        "pv_clock",
        "pv_disks",
    ] {
        assert!(act.iter().any(|a| a == f), "{f} missing from {act:?}");
    }
}
