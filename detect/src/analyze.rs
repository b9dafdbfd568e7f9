//! Detection from start to end: gather the evidence ([`crate::evidence`]), decide
//! ([`crate::decide`]), and assemble the [`Detection`].

use crate::decide::decide;
use crate::decide::outcome::{measure_lists, red_herrings, summary_line};
use crate::decide::xen::xen_info;
use crate::evidence::cpuid::{cpuid_evidence, kvm_info, load_cpuid};
use crate::evidence::cpuinfo::{cpu_flags, smep_smap_evidence};
use crate::evidence::dmi::dmi;
use crate::evidence::host::{host_caps, kvm_device};
use crate::evidence::log::log_evidence;
use crate::evidence::pvm::{pvm_info, pvm_notes};
use crate::evidence::sysfs::{clocksource, virtio, xen_sysfs};
use crate::evidence::{is_xen, Ctx};
use crate::host::GuestIpProbe;
use crate::model::{Detection, GuestKind, InputInfo, Platform, Signal, SCHEMA_VERSION};
use crate::source::{load_kernel_log, Fs, Source};

/// Run detection; see [`crate::detect_with_probe`].
pub(crate) fn run(src: &Source, probe: Option<&dyn GuestIpProbe>) -> Detection {
    let mut cx = Ctx::new(Fs::new(&src.root));

    // Evidence, input by input.
    let (dump, cpuid) = load_cpuid(src, &mut cx);
    cpuid_evidence(&mut cx, dump.as_ref(), &cpuid);
    let flags = cpu_flags(&mut cx);
    let (log, kernel_log) = load_kernel_log(src, &cx.fs);
    let log = log.unwrap_or_default();
    let xen_facts = xen_sysfs(&mut cx);
    let dmi = dmi(&mut cx);
    let mut kvm_active = Vec::new();
    let xen_log = log_evidence(&mut cx, &log, &mut kvm_active);
    let (clocksource, available_clocksources) = clocksource(&mut cx, &mut kvm_active);
    let virtio = virtio(&mut cx);
    let cmdline = cx.fs.read_trim("/proc/cmdline");

    // PVM and host.
    let host_raw = kvm_device(src, &mut cx);
    let mut pvm = pvm_info(&cx, &log, &flags, cmdline.as_deref(), &host_raw);
    let outcome = probe.map(|p| p.probe());
    let host = host_caps(src, &mut cx, &log, &flags, &pvm, host_raw, outcome);
    smep_smap_evidence(&mut cx, &flags);

    // Decide.
    let mut verdict = decide(&cx, &host, &kernel_log, &cpuid);
    pvm.guest = verdict.kind == GuestKind::PvmGuest;
    pvm_notes(&cx, &mut pvm);

    let xen = (verdict.kind == GuestKind::XenGuest
        || cx.evidence.iter().any(|e| is_xen(e.signal))
        || xen_facts.any())
    .then(|| xen_info(&cx, &xen_facts, &xen_log, &kernel_log));
    if let Some(x) = &xen {
        if verdict.kind == GuestKind::XenGuest {
            verdict.xen_mode = x.mode;
        }
    }
    let kvm = (matches!(verdict.kind, GuestKind::KvmGuest | GuestKind::PvmGuest)
        || cx.has(Signal::Kvm))
    .then(|| kvm_info(dump.as_ref(), &cpuid, kvm_active));
    verdict.summary = summary_line(&verdict, &host, xen.as_ref());

    red_herrings(&mut cx, &verdict, &flags, &xen_facts, &pvm);
    let (can_measure, cannot_measure) = measure_lists(&verdict, &host);

    let platform = Platform {
        clocksource,
        available_clocksources,
        virtio,
        dmi,
        cpu_flags: flags.selected,
        cmdline,
    };
    Detection {
        schema_version: SCHEMA_VERSION,
        input: InputInfo {
            root: src.root.display().to_string(),
            live: src.live,
        },
        verdict,
        cpuid,
        kernel_log,
        xen,
        kvm,
        pvm,
        platform,
        host,
        evidence: cx.evidence,
        red_herrings: cx.red_herrings,
        can_measure,
        cannot_measure,
        problems: cx.fs.problems,
    }
}
