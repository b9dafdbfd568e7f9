//! DMI evidence: the firmware vendor and product strings in `/sys/class/dmi/id`.

use super::Ctx;
use crate::model::{Dmi, Signal, Strength};

/// Read the DMI strings and record which hypervisor's firmware they name, if any.
pub(crate) fn dmi(cx: &mut Ctx) -> Dmi {
    let d = Dmi {
        sys_vendor: cx.fs.read_trim("/sys/class/dmi/id/sys_vendor"),
        product_name: cx.fs.read_trim("/sys/class/dmi/id/product_name"),
        bios_vendor: cx.fs.read_trim("/sys/class/dmi/id/bios_vendor"),
        bios_version: cx.fs.read_trim("/sys/class/dmi/id/bios_version"),
    };
    let vendor = d.sys_vendor.clone().unwrap_or_default();
    let product = d.product_name.clone().unwrap_or_default();
    let src = "/sys/class/dmi/id/{sys_vendor,product_name}";
    let obs = format!("{vendor} / {product}");
    if vendor == "Xen" {
        if product.contains("HVM") {
            cx.ev(
                src,
                obs,
                Signal::XenHvm,
                Strength::Moderate,
                "Xen HVM firmware (PV and PVH guests have no DMI)",
            );
        } else {
            cx.ev(src, obs, Signal::Xen, Strength::Moderate, "Xen firmware");
        }
    } else if vendor == "QEMU"
        || product.contains("KVM")
        || vendor == "Google"
        || vendor == "Amazon EC2"
    {
        cx.ev(
            src,
            obs,
            Signal::Kvm,
            Strength::Weak,
            "firmware of a KVM-based VMM (could also be QEMU TCG)",
        );
    } else if vendor.starts_with("VMware") {
        cx.ev(
            src,
            obs,
            Signal::Vmware,
            Strength::Moderate,
            "VMware firmware",
        );
    } else if vendor == "Microsoft Corporation" && product.contains("Virtual Machine") {
        cx.ev(
            src,
            obs,
            Signal::HyperV,
            Strength::Moderate,
            "Hyper-V firmware",
        );
    } else if vendor == "innotek GmbH" || vendor == "Parallels Software International Inc." {
        cx.ev(
            src,
            obs,
            Signal::OtherHypervisor,
            Strength::Moderate,
            "VirtualBox/Parallels firmware",
        );
    }
    d
}
