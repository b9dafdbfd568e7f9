//! Text output for people.

use std::fmt::Write as _;

use crate::host::Probe;
use crate::model::{Confidence, Detection, GuestKind, Strength};

fn strength(s: Strength) -> &'static str {
    match s {
        Strength::Weak => "weak",
        Strength::Moderate => "moderate",
        Strength::Strong => "strong",
    }
}

fn confidence(c: Confidence) -> &'static str {
    match c {
        Confidence::None => "none",
        Confidence::Low => "low",
        Confidence::Medium => "medium",
        Confidence::High => "high",
    }
}

/// `heading`, then `  - item` for each of `items`, or `  <empty>` when there are none.
fn bullets(o: &mut String, heading: &str, items: &[String], empty: &str) {
    let _ = writeln!(o, "{heading}");
    if items.is_empty() {
        let _ = writeln!(o, "  {empty}");
    }
    for i in items {
        let _ = writeln!(o, "  - {i}");
    }
}

fn probe(p: &Probe) -> String {
    match p {
        Probe::NotProbed => "not probed (run with --probe)".to_string(),
        Probe::Yes { detail } => format!("yes ({detail})"),
        Probe::No { reason } => format!("no ({reason})"),
    }
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Render a [`Detection`] as text for people.
///
/// Key lines, in order: `Verdict: ...`, `Confidence: ...`, an `Evidence:` list (`+ source:
/// observed -> signal (strength)`), then `Xen:`, `KVM guest:`, `PVM:`, `Platform:`, `Host:`
/// sections when relevant, `Red herrings:`, `hvprof can measure here:` and
/// `hvprof cannot measure here:` lists, and `Input problems:`.
pub fn render_text(d: &Detection) -> String {
    let mut o = String::new();
    let v = &d.verdict;
    let _ = writeln!(
        o,
        "hvprof detect: {}{}",
        d.input.root,
        if d.input.live {
            " (live system)"
        } else {
            " (captured tree)"
        }
    );
    let _ = writeln!(o, "Verdict: {}", v.summary);
    let _ = writeln!(o, "Confidence: {}", confidence(v.confidence));
    if let Some(r) = &v.unknown_reason {
        let _ = writeln!(o, "Unknown because: {r}");
    }
    for c in &v.conflicts {
        let _ = writeln!(o, "Conflicting evidence: {c}");
    }

    let _ = writeln!(o, "\nEvidence:");
    if d.evidence.is_empty() {
        let _ = writeln!(o, "  (none)");
    }
    for e in &d.evidence {
        let sig = serde_json::to_value(e.signal)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  + {}: {} -> {} ({}): {}",
            e.source,
            e.observed,
            sig,
            strength(e.strength),
            e.meaning
        );
    }
    let _ = writeln!(
        o,
        "  kernel log: {}",
        match (&d.kernel_log.origin, &d.kernel_log.note) {
            (Some(origin), None) => format!("{} ({} lines)", origin, d.kernel_log.lines),
            (Some(origin), Some(n)) => format!("{} ({} lines): {}", origin, d.kernel_log.lines, n),
            (None, Some(n)) => n.clone(),
            (None, None) => "none".to_string(),
        }
    );
    let _ = writeln!(
        o,
        "  cpuid: {}",
        match (&d.cpuid.origin, &d.cpuid.unavailable_reason) {
            (_, Some(r)) => format!("unavailable: {r}"),
            (Some(origin), None) => origin.clone(),
            (None, None) => "unavailable".to_string(),
        }
    );

    if let Some(x) = &d.xen {
        let _ = writeln!(o, "\nXen:");
        let _ = writeln!(
            o,
            "  mode: {} ({})",
            x.mode.map(|m| m.label()).unwrap_or("unknown"),
            x.mode_reason
        );
        if let Some(g) = &x.guest_type {
            let _ = writeln!(o, "  guest_type: {g}");
        }
        if let Some(ver) = &x.version {
            let _ = writeln!(o, "  version: {ver}");
        }
        if let Some(f) = &x.features {
            let _ = writeln!(
                o,
                "  features: {} (/sys/hypervisor/properties/features)",
                f.raw
            );
            for b in &f.set {
                let _ = writeln!(o, "    bit {:2} {}: {}", b.bit, b.name, b.meaning);
            }
            for b in &f.unknown_bits {
                let _ = writeln!(o, "    bit {b:2} (unknown to hvprof)");
            }
        }
        if let Some(e) = &x.features_error {
            let _ = writeln!(o, "  features: unusable: {e}");
        }
        if !x.capabilities.is_empty() {
            let _ = writeln!(
                o,
                "  host capabilities: {} (what the host can run, not this guest's mode)",
                x.capabilities.join(" ")
            );
        }
        if let Some(d0) = x.dom0 {
            let _ = writeln!(o, "  dom0: {}", yn(d0));
        }
        if x.active.is_empty() {
            let _ = writeln!(o, "  PV features in use: none seen");
        } else {
            let _ = writeln!(o, "  PV features in use:");
            for a in &x.active {
                let _ = writeln!(o, "    {}: {}", a.name, a.evidence);
            }
        }
    }

    if let Some(k) = &d.kvm {
        let _ = writeln!(o, "\nKVM guest:");
        if let (Some(base), Some(max)) = (k.signature_leaf, k.max_leaf) {
            let _ = writeln!(o, "  signature at 0x{base:08x}, max leaf 0x{max:08x}");
        }
        if let Some(eax) = k.features_eax {
            let names: Vec<&str> = k.features.iter().map(|b| b.name.as_str()).collect();
            let _ = writeln!(
                o,
                "  KVM_CPUID_FEATURES eax=0x{eax:08x}: {}",
                names.join(" ")
            );
            if !k.unknown_feature_bits.is_empty() {
                let _ = writeln!(o, "    unknown bits: {:?}", k.unknown_feature_bits);
            }
        }
        for a in &k.active {
            let _ = writeln!(o, "  in use: {}: {}", a.name, a.evidence);
        }
    }

    let _ = writeln!(o, "\nPVM:");
    for n in &d.pvm.notes {
        let _ = writeln!(o, "  {n}");
    }

    let p = &d.platform;
    let _ = writeln!(o, "\nPlatform:");
    let _ = writeln!(
        o,
        "  clocksource: {} (available: {})",
        p.clocksource.as_deref().unwrap_or("unknown"),
        if p.available_clocksources.is_empty() {
            "unknown".to_string()
        } else {
            p.available_clocksources.join(" ")
        }
    );
    if !p.virtio.is_empty() {
        let v: Vec<String> = p
            .virtio
            .iter()
            .map(|d| format!("{}={}", d.name, d.kind))
            .collect();
        let _ = writeln!(o, "  virtio: {}", v.join(" "));
    }
    match (&p.dmi.sys_vendor, &p.dmi.product_name) {
        (None, None) => {
            let _ = writeln!(o, "  DMI: not present");
        }
        (a, b) => {
            let _ = writeln!(
                o,
                "  DMI: {} / {} (BIOS {} {})",
                a.as_deref().unwrap_or("?"),
                b.as_deref().unwrap_or("?"),
                p.dmi.bios_vendor.as_deref().unwrap_or("?"),
                p.dmi.bios_version.as_deref().unwrap_or("?")
            );
        }
    }
    if !p.cpu_flags.is_empty() {
        let _ = writeln!(o, "  cpu flags: {}", p.cpu_flags.join(" "));
    }

    let h = &d.host;
    let _ = writeln!(o, "\nHost:");
    let _ = writeln!(
        o,
        "  /dev/kvm: {}{}",
        if h.kvm { "present" } else { "absent" },
        match h.kvm_openable {
            Some(true) => ", openable",
            Some(false) => ", NOT openable",
            None => "",
        }
    );
    if !h.kvm_backends.is_empty() {
        let _ = writeln!(o, "  KVM backends: {}", h.kvm_backends.join(" "));
    }
    let _ = writeln!(
        o,
        "  hardware virtualization (vmx/svm): {}",
        yn(h.hardware_virt)
    );
    let _ = writeln!(
        o,
        "  hardware PMU: {} (event sources: {})",
        yn(h.hardware_pmu),
        if h.event_sources.is_empty() {
            "none".to_string()
        } else {
            h.event_sources.join(" ")
        }
    );
    let _ = writeln!(o, "  default event: {}", h.default_event());
    let _ = writeln!(o, "  PVM host: {}", yn(h.pvm_host));
    let _ = writeln!(o, "  guest IP tagging: {}", probe(&h.guest_ip_tagging));
    if d.verdict.kind != GuestKind::Unknown || h.kvm {
        if let Some(r) = h.guest_ips_hidden_reason() {
            let how = if h.guest_ip_tagging == Probe::NotProbed {
                " (predicted)"
            } else {
                ""
            };
            let _ = writeln!(o, "    guest IPs hidden{how}: {r}");
        }
    }
    let _ = writeln!(
        o,
        "  tracepoints kvm:kvm_exit/kvm_entry: {}/{}{}; firing: {}",
        yn(h.tracepoints.kvm_exit),
        yn(h.tracepoints.kvm_entry),
        h.tracepoints
            .note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        probe(&h.tracepoints.firing)
    );
    let mut dbg = vec![if h.debugfs.kvm_dir {
        "present".to_string()
    } else {
        "absent".to_string()
    }];
    if let Some(r) = h.debugfs.stats_readable {
        dbg.push(format!("stats readable: {}", yn(r)));
    }
    if !h.debugfs.vm_dirs.is_empty() {
        dbg.push(format!("VMs: {}", h.debugfs.vm_dirs.join(" ")));
    }
    if let Some(r) = h.debugfs.vcpu_files_readable {
        dbg.push(format!("vcpuN/pid and tsc-offset readable: {}", yn(r)));
    }
    let _ = writeln!(
        o,
        "  debugfs kvm: {}{}",
        dbg.join("; "),
        h.debugfs
            .note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "  lockdown: {}{}",
        h.lockdown.mode,
        h.lockdown
            .evidence
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "  perf_event_paranoid: {}; kptr_restrict: {}{}",
        h.paranoid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".into()),
        h.kptr_restrict
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".into()),
        match h.root {
            Some(true) => "; running as root",
            Some(false) => "; not root",
            None => "",
        }
    );

    if !d.red_herrings.is_empty() {
        let _ = writeln!(o, "\nRed herrings:");
        for r in &d.red_herrings {
            let _ = writeln!(o, "  - {}: {}: {}", r.source, r.observed, r.why);
        }
    }
    bullets(
        &mut o,
        "\nhvprof can measure here:",
        &d.can_measure,
        "(nothing)",
    );
    bullets(
        &mut o,
        "hvprof cannot measure here:",
        &d.cannot_measure,
        "(no known limits)",
    );
    if !d.problems.is_empty() {
        let _ = writeln!(o, "\nInput problems:");
        for p in &d.problems {
            let _ = writeln!(o, "  - {}: {}", p.path, p.problem);
        }
    }
    o
}
