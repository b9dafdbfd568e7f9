//! sysfs evidence: `/sys/hypervisor` and the Xen bus (Xen), the current clocksource, virtio
//! devices.
//!
//! Sources: Linux `drivers/xen/sys-hypervisor.c` (`/sys/hypervisor`), Xen
//! `xen/common/kernel.c` (which feature bits each domain type gets),
//! `include/uapi/linux/virtio_ids.h` (device ids).

use super::{abridge, add_active, Ctx};
use crate::kvm::virtio_device_name;
use crate::model::{Signal, Strength, VirtioDevice};
use crate::xen::{decode_xen_features, ActiveFeature, XenFeatures};

/// What `/sys/hypervisor`, `/proc/xen`, the Xen bus and the block/net devices say about Xen.
#[derive(Default)]
pub(crate) struct XenSysfs {
    /// `/sys/hypervisor/type`.
    pub(crate) hv_type: Option<String>,
    /// `/sys/hypervisor/guest_type` (`PV`, `HVM`, `PVH`).
    pub(crate) guest_type: Option<String>,
    /// `major.minor` + `extra` from `/sys/hypervisor/version/*`.
    pub(crate) version: Option<String>,
    /// `/sys/hypervisor/properties/features` decoded.
    pub(crate) features: Option<XenFeatures>,
    /// Why the features file could not be decoded.
    pub(crate) features_error: Option<String>,
    /// `/sys/hypervisor/properties/capabilities`, split.
    pub(crate) capabilities: Vec<String>,
    /// `control_d` in `/proc/xen/capabilities`; `None` without xenfs.
    pub(crate) dom0: Option<bool>,
    /// Entries of `/sys/bus/xen/devices`.
    pub(crate) bus_devices: Vec<String>,
    /// `xvd*` disks in `/sys/block`.
    pub(crate) xvd: Vec<String>,
    /// Network interfaces whose driver is `vif` (netfront).
    pub(crate) vif_driver: Vec<String>,
}

impl XenSysfs {
    /// Xen bus devices whose name starts with `prefix` (`vbd-`, `vif-`).
    pub(crate) fn bus(&self, prefix: &str) -> Vec<&str> {
        self.bus_devices
            .iter()
            .filter(|d| d.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }
}

impl XenSysfs {
    /// Whether any of it points at Xen.
    pub(crate) fn any(&self) -> bool {
        self.hv_type.as_deref() == Some("xen")
            || self.guest_type.is_some()
            || self.features.is_some()
            || self.features_error.is_some()
            || !self.bus_devices.is_empty()
            || !self.xvd.is_empty()
    }
}

/// Read the Xen sysfs files and record what they say.
pub(crate) fn xen_sysfs(cx: &mut Ctx) -> XenSysfs {
    let hv_type = cx.fs.read_trim("/sys/hypervisor/type");
    if hv_type.as_deref() == Some("xen") {
        cx.ev(
            "/sys/hypervisor/type",
            "xen",
            Signal::Xen,
            Strength::Strong,
            "Xen sysfs driver reports Xen",
        );
    }
    let guest_type = guest_type(cx);
    let major = cx.fs.read_trim("/sys/hypervisor/version/major");
    let minor = cx.fs.read_trim("/sys/hypervisor/version/minor");
    let extra = cx.fs.read_trim("/sys/hypervisor/version/extra");
    let version = match (major, minor) {
        (Some(a), Some(b)) => Some(format!("{a}.{b}{}", extra.unwrap_or_default())),
        _ => None,
    };
    let (features, features_error) = features(cx);
    let capabilities = cx
        .fs
        .read("/sys/hypervisor/properties/capabilities")
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let dom0 = cx
        .fs
        .read("/proc/xen/capabilities")
        .map(|c| c.contains("control_d"));
    if dom0 == Some(true) {
        cx.ev(
            "/proc/xen/capabilities",
            "control_d",
            Signal::Xen,
            Strength::Strong,
            "this is dom0, the Xen host's control domain",
        );
    }
    let mut x = XenSysfs {
        hv_type,
        guest_type,
        version,
        features,
        features_error,
        capabilities,
        dom0,
        ..Default::default()
    };
    pv_devices(cx, &mut x);
    x
}

/// `/sys/hypervisor/guest_type` (Linux 4.13+): the guest kernel's own word on its mode.
fn guest_type(cx: &mut Ctx) -> Option<String> {
    let g = cx.fs.read_trim("/sys/hypervisor/guest_type")?;
    let (signal, meaning) = match g.as_str() {
        "PV" => (Signal::XenPv, "the guest kernel's own domain type"),
        "HVM" => (Signal::XenHvm, "the guest kernel's own domain type"),
        "PVH" => (Signal::XenPvh, "the guest kernel's own domain type"),
        _ => (Signal::Xen, "Xen guest of another type"),
    };
    cx.ev(
        "/sys/hypervisor/guest_type",
        g.clone(),
        signal,
        Strength::Strong,
        meaning,
    );
    Some(g)
}

/// `/sys/hypervisor/properties/features` decoded, with evidence from the bits only one kind
/// of domain gets (`xen/common/kernel.c`); or why it could not be decoded.
fn features(cx: &mut Ctx) -> (Option<XenFeatures>, Option<String>) {
    let fpath = "/sys/hypervisor/properties/features";
    let Some(text) = cx.fs.read(fpath) else {
        return (None, None);
    };
    let f = match decode_xen_features(&text) {
        Ok(f) => f,
        Err(e) => {
            cx.fs.problem(fpath, format!("malformed: {e}"));
            return (None, Some(e.to_string()));
        }
    };
    let names: Vec<&str> = f.set.iter().map(|b| b.name.as_str()).collect();
    let obs = format!("{} = {}", f.raw, names.join(" "));
    cx.ev(
        fpath,
        obs.clone(),
        Signal::Xen,
        Strength::Moderate,
        "Xen reports feature flags to this domain",
    );
    let has_any = |bits: &[&str]| bits.iter().any(|b| f.has(b));
    if has_any(&[
        "mmu_pt_update_preserve_ad",
        "highmem_assist",
        "gnttab_map_avail_bits",
    ]) {
        cx.ev(
            fpath,
            obs,
            Signal::XenPv,
            Strength::Moderate,
            "PV-only feature bits: Xen sets them only for PV domains (xen/common/kernel.c)",
        );
    } else if has_any(&["hvm_callback_vector", "hvm_safe_pvclock"]) {
        cx.ev(
            fpath,
            obs,
            Signal::XenHvm,
            Strength::Moderate,
            "hvm_* feature bits: Xen sets them only for HVM/PVH domains (xen/common/kernel.c)",
        );
    }
    (Some(f), None)
}

/// PV devices: the Xen bus, `xvd*` disks (blkfront), `vif` network interfaces (netfront).
fn pv_devices(cx: &mut Ctx, x: &mut XenSysfs) {
    x.bus_devices = cx.fs.list("/sys/bus/xen/devices");
    if !x.bus_devices.is_empty() {
        let obs = abridge(&x.bus_devices.join(" "));
        let (signal, meaning) = if x.bus("vbd-").is_empty() && x.bus("vif-").is_empty() {
            (Signal::Xen, "Xen bus devices")
        } else {
            (
                Signal::XenPvDrivers,
                "PV block (vbd) / network (vif) devices on the Xen bus",
            )
        };
        cx.ev(
            "/sys/bus/xen/devices",
            obs,
            signal,
            Strength::Moderate,
            meaning,
        );
    }
    x.xvd = cx
        .fs
        .list("/sys/block")
        .into_iter()
        .filter(|d| d.starts_with("xvd"))
        .collect();
    if !x.xvd.is_empty() {
        cx.ev(
            "/sys/block",
            x.xvd.join(" "),
            Signal::XenPvDrivers,
            Strength::Moderate,
            "xvd disks: the Xen PV block driver (blkfront)",
        );
    }
    for ifname in cx.fs.list("/sys/class/net") {
        let link = format!("/sys/class/net/{ifname}/device/driver");
        if cx.fs.link_name(&link).as_deref() == Some("vif") {
            cx.ev(
                link,
                "vif",
                Signal::XenPvDrivers,
                Strength::Moderate,
                "Xen PV network driver (netfront)",
            );
            x.vif_driver.push(ifname);
        }
    }
}

/// The current clocksource file.
pub(crate) const CLOCKSOURCE: &str =
    "/sys/devices/system/clocksource/clocksource0/current_clocksource";
/// The available clocksources file.
const CLOCKSOURCES: &str = "/sys/devices/system/clocksource/clocksource0/available_clocksource";

/// The current and available clocksources, with evidence for `xen`, `kvm-clock` and the
/// Hyper-V TSC page; `kvm-clock` also marks kvmclock active in `kvm_active`.
pub(crate) fn clocksource(
    cx: &mut Ctx,
    kvm_active: &mut Vec<ActiveFeature>,
) -> (Option<String>, Vec<String>) {
    let current = cx.fs.read_trim(CLOCKSOURCE);
    let available: Vec<String> = cx
        .fs
        .read(CLOCKSOURCES)
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    match current.as_deref() {
        Some("xen") => cx.ev(
            CLOCKSOURCE,
            "xen",
            Signal::XenPvClock,
            Strength::Strong,
            "Xen PV clock in use",
        ),
        Some("kvm-clock") => {
            cx.ev(
                CLOCKSOURCE,
                "kvm-clock",
                Signal::Kvm,
                Strength::Moderate,
                "kvmclock in use",
            );
            add_active(kvm_active, "kvmclock", format!("{CLOCKSOURCE}: kvm-clock"));
        }
        Some(c @ "hyperv_clocksource_tsc_page") => cx.ev(
            CLOCKSOURCE,
            c,
            Signal::HyperV,
            Strength::Moderate,
            "Hyper-V reference TSC page in use",
        ),
        _ => {}
    }
    (current, available)
}

/// Virtio devices under `/sys/bus/virtio/devices` (weak evidence of a VMM); a malformed
/// device id is an input problem and the device is skipped.
pub(crate) fn virtio(cx: &mut Ctx) -> Vec<VirtioDevice> {
    let mut out = Vec::new();
    for name in cx.fs.list("/sys/bus/virtio/devices") {
        let p = format!("/sys/bus/virtio/devices/{name}/device");
        let Some(text) = cx.fs.read_trim(&p) else {
            continue;
        };
        let t = text.trim_start_matches("0x");
        match u32::from_str_radix(t, 16) {
            Ok(id) => out.push(VirtioDevice {
                name,
                id,
                kind: virtio_device_name(id).unwrap_or("unknown").to_string(),
            }),
            Err(_) => cx.fs.problem(&p, format!("malformed device id {text:?}")),
        }
    }
    if !out.is_empty() {
        let kinds: Vec<&str> = out.iter().map(|d| d.kind.as_str()).collect();
        cx.ev(
            "/sys/bus/virtio/devices",
            kinds.join(" "),
            Signal::Virtualized,
            Strength::Weak,
            "virtio devices: a virtual machine monitor (QEMU, Firecracker, cloud-hypervisor, ...)",
        );
    }
    out
}
