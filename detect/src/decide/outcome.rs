//! Conclusions for people: the one-line summary, the red herrings, and what hvprof can and
//! cannot measure here.

use crate::evidence::cpuinfo::Flags;
use crate::evidence::sysfs::XenSysfs;
use crate::evidence::Ctx;
use crate::host::{HostCapabilities, Probe};
use crate::kvm::PvmInfo;
use crate::model::{GuestKind, NestedVia, Verdict};
use crate::xen::XenInfo;

/// "Xen guest, mode PVHVM (dom0: a Xen host); nested: ...".
pub(crate) fn summary_line(v: &Verdict, host: &HostCapabilities, xen: Option<&XenInfo>) -> String {
    let mut s = match v.kind {
        GuestKind::XenGuest => match v.xen_mode {
            Some(m) => format!("Xen guest, mode {}", m.label()),
            None => "Xen guest, mode unknown".to_string(),
        },
        GuestKind::OtherGuest => format!(
            "virtual machine ({})",
            v.hypervisor
                .clone()
                .unwrap_or_else(|| "unidentified hypervisor".into())
        ),
        GuestKind::Unknown => "unknown".to_string(),
        k => k.label().to_string(),
    };
    if let Some(x) = xen {
        if x.dom0 == Some(true) {
            s.push_str(" (dom0: a Xen host)");
        }
    }
    if v.nested {
        s.push_str(match v.nested_via {
            Some(NestedVia::Pvm) => {
                "; nested: also a KVM host via PVM (kvm_pvm loaded, /dev/kvm present)"
            }
            Some(NestedVia::Hardware) => {
                "; nested: also a KVM host via nested VMX/SVM (/dev/kvm present)"
            }
            _ => "; nested: also a KVM host (/dev/kvm present)",
        });
    } else if matches!(v.kind, GuestKind::BareMetal) && host.kvm {
        s.push_str(if host.pvm_host {
            "; KVM host (PVM)"
        } else {
            "; KVM host"
        });
    }
    s
}

/// Record what looks like evidence but is not: vmx/svm in a guest, `/boot/config-*`, Xen
/// capabilities, built-in PVM code, `nested_pvm=`, a `hypervisor` flag on bare metal.
pub(crate) fn red_herrings(
    cx: &mut Ctx,
    v: &Verdict,
    flags: &Flags,
    xen: &XenSysfs,
    pvm: &PvmInfo,
) {
    let guest = !matches!(v.kind, GuestKind::BareMetal | GuestKind::Unknown);
    if guest {
        let hv: Vec<&str> = ["vmx", "svm"]
            .into_iter()
            .filter(|f| flags.has(f))
            .collect();
        if !hv.is_empty() {
            cx.herring(
                "/proc/cpuinfo flags",
                hv.join(" "),
                "inside a guest, vmx/svm only say that nested hardware virtualization is offered to this guest; they say nothing about how this guest itself is virtualized",
            );
        } else if !flags.all.is_empty() {
            cx.herring(
                "/proc/cpuinfo flags",
                "no vmx/svm",
                "inside a guest the host masks vmx/svm unless it offers nested virtualization: their absence does not mean this is not HVM",
            );
        }
    }
    // /boot/config-*: configured is not active.
    for name in cx.fs.list("/boot") {
        if !name.starts_with("config-") {
            continue;
        }
        let p = format!("/boot/{name}");
        let Ok(text) = cx.fs.try_read(&p) else {
            continue;
        };
        let set: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.ends_with("=y")
                    && (l.starts_with("CONFIG_XEN_PV")
                        || l.starts_with("CONFIG_XEN_HAVE_PVMMU")
                        || l.starts_with("CONFIG_KVM_GUEST")
                        || l.starts_with("CONFIG_PVM_GUEST")
                        || l.starts_with("CONFIG_PARAVIRT=")
                        || l.starts_with("CONFIG_XEN_PVHVM")
                        || l.starts_with("CONFIG_XEN_PVH"))
            })
            .collect();
        if !set.is_empty() {
            cx.herring(
                p,
                set.join(" "),
                "configured is not active: these options let the kernel run in those modes if the hypervisor offers them",
            );
        }
    }
    if xen.capabilities.iter().any(|c| c.starts_with("hvm")) {
        cx.herring(
            "/sys/hypervisor/properties/capabilities",
            xen.capabilities.join(" "),
            "capabilities list what the Xen host can run (hvm-* = the host supports HVM), not the mode of this guest; a PV guest shows them too",
        );
    }
    if pvm.kallsyms_pvm_symbols > 0 && !pvm.guest {
        cx.herring(
            "/proc/kallsyms",
            format!("{} pvm_* symbols", pvm.kallsyms_pvm_symbols),
            "PVM code compiled into the kernel (guest entry code, or the kvm_pvm host) is not evidence of running as a PVM guest",
        );
    }
    if let Some(n) = &pvm.cmdline_nested_pvm {
        if !pvm.host {
            cx.herring(
                "/proc/cmdline",
                format!("nested_pvm={n}"),
                "a boot parameter asking for nested PVM is a request, not a running PVM host",
            );
        }
    }
    if flags.has("hypervisor") && v.kind == GuestKind::BareMetal {
        cx.herring(
            "/proc/cpuinfo flags",
            "hypervisor",
            "hypervisor flag set but other evidence says bare metal",
        );
    }
}

/// The "can measure" and "cannot measure, because" lists.
pub(crate) fn measure_lists(v: &Verdict, h: &HostCapabilities) -> (Vec<String>, Vec<String>) {
    let mut can = Vec::new();
    let mut cannot = Vec::new();
    let ev = h.default_event();
    let privileged = h.root == Some(true);
    let paranoid_note = match (h.paranoid, privileged) {
        (_, true) => String::new(),
        (Some(p), _) if p >= 2 => format!(" (perf_event_paranoid={p}: needs root or CAP_PERFMON for other processes and the kernel)"),
        _ => String::new(),
    };
    if h.kvm {
        can.push(format!(
            "host-side sampling of VMM processes and their vCPU threads with {ev}{paranoid_note}"
        ));
    }
    if matches!(v.kind, GuestKind::Unknown | GuestKind::BareMetal) || !h.kvm {
        can.push(format!(
            "sampling of this machine's own processes and kernel with {ev}{paranoid_note}"
        ));
    }
    let exits_refuted = matches!(h.tracepoints.firing, Probe::No { .. });
    if h.tracepoints.kvm_exit && h.tracepoints.kvm_entry && !exits_refuted {
        can.push(
            "VM exits and entries via the kvm:kvm_exit / kvm:kvm_entry tracepoints".to_string(),
        );
    } else if h.kvm && !exits_refuted {
        cannot.push(format!(
            "trace VM exits with kvm:kvm_exit, because {}",
            h.tracepoints
                .note
                .clone()
                .unwrap_or_else(|| "the tracepoints are missing".into())
        ));
    }
    match (h.debugfs.kvm_dir, h.debugfs.stats_readable) {
        (true, Some(true)) => can.push("KVM statistics from /sys/kernel/debug/kvm".to_string()),
        (true, Some(false)) => {
            cannot.push("read KVM statistics (exits, halt polling, ...) from debugfs, because lockdown refuses them (EPERM)".to_string());
            match h.debugfs.vcpu_files_readable {
                Some(false) => {}
                Some(true) => can.push("vCPU thread ids and TSC offsets from debugfs (vcpuN/pid, vcpuN/tsc-offset: read-only files, allowed under lockdown; read successfully)".to_string()),
                None => can.push("vCPU thread ids and TSC offsets from debugfs while a VM runs (vcpuN/pid, vcpuN/tsc-offset: read-only files, allowed under lockdown)".to_string()),
            }
        }
        (true, None) => {}
        (false, _) if h.kvm => cannot.push(format!(
            "read KVM statistics from debugfs, because {}",
            h.debugfs
                .note
                .clone()
                .unwrap_or_else(|| "debugfs has no kvm directory".into())
        )),
        _ => {}
    }
    match h.kptr_restrict {
        Some(0) => can.push("host kernel symbols from /proc/kallsyms (kptr_restrict=0)".to_string()),
        Some(1) if privileged => can.push("host kernel symbols from /proc/kallsyms (kptr_restrict=1, running as root)".to_string()),
        Some(k) => cannot.push(format!("resolve host kernel addresses from /proc/kallsyms, because kptr_restrict={k} hides them")),
        None => {}
    }
    if !h.hardware_pmu && h.event_sources.is_empty() {
        cannot.push("count hardware events (cycles, instructions, cache misses): unknown whether a hardware PMU exists (no /sys/bus/event_source/devices in the input); assuming none, so sampling uses cpu-clock".to_string());
    } else if !h.hardware_pmu {
        cannot.push(format!(
            "count hardware events (cycles, instructions, cache misses), because there is no hardware PMU (event sources: {}); sampling falls back to cpu-clock",
            if h.event_sources.is_empty() { "none found".to_string() } else { h.event_sources.join(" ") }
        ));
    } else {
        can.push("hardware events (cycles, instructions, cache misses)".to_string());
    }
    match (&h.guest_ip_tagging, h.guest_ips_hidden_reason()) {
        (Probe::Yes { detail }, _) => {
            can.push(format!("guest IPs in host samples (probed: {detail})"))
        }
        (_, Some(_)) if !h.kvm => {}
        (probe, Some(reason)) => cannot.push(format!(
            "attribute host samples to guest code (guest IPs), because {reason}{}",
            if *probe == Probe::NotProbed {
                " (predicted from the configuration; --probe measures it)"
            } else {
                ""
            }
        )),
        (Probe::NotProbed, None) => can
            .push("guest IPs in host samples, predicted (run with --probe to confirm)".to_string()),
        (Probe::No { .. }, None) => {}
    }
    if !h.kvm {
        cannot.push("profile virtual machines from here, because /dev/kvm is absent: run hvprof on the host that runs them".to_string());
    }
    if let Probe::No { reason } = &h.tracepoints.firing {
        cannot.push(format!("rely on kvm:kvm_exit firing, because {reason}"));
    }
    (can, cannot)
}
