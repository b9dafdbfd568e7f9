//! The Xen section: the Xen mode (PV, HVM, HVM with PV drivers, PVHVM, PVH) and why, the
//! paravirt features in use, and the sysfs facts.

use crate::evidence::log::XenLogFacts;
use crate::evidence::sysfs::{XenSysfs, CLOCKSOURCE};
use crate::evidence::{add_active, Ctx};
use crate::model::Signal;
use crate::source::{KernelLogInfo, KernelLogStatus};
use crate::xen::{XenInfo, XenMode};

/// Build [`XenInfo`] from sysfs, the log facts and the evidence.
pub(crate) fn xen_info(
    cx: &Ctx,
    sys: &XenSysfs,
    logf: &XenLogFacts,
    loginfo: &KernelLogInfo,
) -> XenInfo {
    let (mode, mode_reason) = xen_mode(cx, sys, loginfo);
    let mut active = logf.active.clone();
    if cx
        .evidence
        .iter()
        .any(|e| e.signal == Signal::XenPvClock && e.source == CLOCKSOURCE)
    {
        add_active(&mut active, "pv_clock", format!("{CLOCKSOURCE}: xen"));
    }
    let vbd = sys.bus("vbd-");
    if !vbd.is_empty() {
        add_active(
            &mut active,
            "pv_disks",
            format!("/sys/bus/xen/devices: {}", vbd.join(" ")),
        );
    } else if !sys.xvd.is_empty() {
        add_active(
            &mut active,
            "pv_disks",
            format!("/sys/block: {}", sys.xvd.join(" ")),
        );
    }
    let vif = sys.bus("vif-");
    if !sys.vif_driver.is_empty() {
        add_active(
            &mut active,
            "pv_network",
            format!(
                "network interface {} uses driver vif",
                sys.vif_driver.join(", ")
            ),
        );
    } else if !vif.is_empty() {
        add_active(
            &mut active,
            "pv_network",
            format!("/sys/bus/xen/devices: {}", vif.join(" ")),
        );
    }
    XenInfo {
        mode,
        mode_reason,
        guest_type: sys.guest_type.clone(),
        version: sys.version.clone().or_else(|| logf.version.clone()),
        features: sys.features.clone(),
        features_error: sys.features_error.clone(),
        capabilities: sys.capabilities.clone(),
        dom0: sys.dom0,
        active,
        bus_devices: sys.bus_devices.clone(),
        xvd_disks: sys.xvd.clone(),
    }
}

/// The mode and the reason for it: the kernel's own word (sysfs `guest_type`, strong log
/// lines) first, then the PV features used inside an HVM container.
fn xen_mode(cx: &Ctx, sys: &XenSysfs, loginfo: &KernelLogInfo) -> (Option<XenMode>, String) {
    let src_of = |s: Signal| {
        cx.first(s)
            .map(|e| format!("{} ({})", e.source, e.observed))
    };
    // 1. What the kernel says about itself.
    let container = if let Some(g) = &sys.guest_type {
        let why = format!("/sys/hypervisor/guest_type is {g}");
        match g.as_str() {
            "PV" => return (Some(XenMode::Pv), why),
            "PVH" => return (Some(XenMode::Pvh), why),
            "HVM" => why,
            other => {
                return (
                    None,
                    format!("/sys/hypervisor/guest_type is {other:?}, not PV/HVM/PVH"),
                )
            }
        }
    } else if let Some(e) = cx.first_strong(Signal::XenPvh) {
        return (Some(XenMode::Pvh), format!("{}: {}", e.source, e.observed));
    } else if let Some(e) = cx.first_strong(Signal::XenPv) {
        let mut why = format!("{}: {}", e.source, e.observed);
        if let Some(h) = cx.strongest(Signal::XenHvm) {
            why.push_str(&format!("; but also {}: {}", h.source, h.observed));
        }
        return (Some(XenMode::Pv), why);
    } else if let Some(e) = cx.strongest(Signal::XenHvm) {
        format!("{}: {}", e.source, e.observed)
    } else if let Some(e) = cx.first(Signal::XenPv) {
        return (
            Some(XenMode::Pv),
            format!("{}: {} (moderate evidence only)", e.source, e.observed),
        );
    } else {
        return (
            None,
            format!(
                "Xen, but nothing says PV, HVM or PVH ({}): need /sys/hypervisor/guest_type, \
                 the feature bitmap, or the boot messages",
                loginfo
                    .note
                    .clone()
                    .unwrap_or_else(|| "kernel log has no Xen mode lines".into())
            ),
        );
    };
    // 2. HVM container: refine by PV features in use.
    // PVH shares the HVM container; without PIRQs Xen does not set hvm_pirqs for it.
    if let Some(f) = &sys.features {
        if f.has("hvm_callback_vector")
            && !f.has("hvm_pirqs")
            && !cx.has(Signal::XenPvDrivers)
            && cx
                .first(Signal::XenHvm)
                .is_some_and(|e| e.source.starts_with("/sys/hypervisor/properties"))
            && sys.guest_type.is_none()
            && cx.first_strong(Signal::XenHvm).is_none()
        {
            return (
                Some(XenMode::Pvh),
                format!("{container}; hvm_* features without hvm_pirqs: Xen gives PVH domains no PIRQs (moderate evidence)"),
            );
        }
    }
    let pv_irq = src_of(Signal::XenPvInterrupts);
    let pv_other = src_of(Signal::XenPvSpinlocks)
        .or_else(|| src_of(Signal::XenPvTimers))
        .or_else(|| src_of(Signal::XenPvClock));
    let drivers = src_of(Signal::XenPvDrivers);
    if let Some(w) = pv_irq {
        return (
            Some(XenMode::Pvhvm),
            format!("{container}; PV interrupts: {w}"),
        );
    }
    if let Some(w) = pv_other {
        return (
            Some(XenMode::Pvhvm),
            format!("{container}; PV timers/spinlocks/clock: {w}"),
        );
    }
    let log_ok = loginfo.status == KernelLogStatus::Read && loginfo.starts_at_boot;
    if let Some(w) = drivers {
        let mut why = format!("{container}; PV drivers: {w}; no PV interrupts or timers");
        if !log_ok {
            why.push_str(" (no complete kernel log: the HVM callback vector may be in use unseen, which would make this PVHVM)");
        }
        return (Some(XenMode::HvmPvDrivers), why);
    }
    let mut why = format!("{container}; no PV drivers, interrupts or timers");
    if !log_ok {
        why.push_str(" (no complete kernel log: PV features may be in use unseen)");
    }
    (Some(XenMode::Hvm), why)
}
