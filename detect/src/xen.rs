//! Xen: feature-bit names, decoding `/sys/hypervisor/properties/features`, and the Xen part of
//! a [`crate::Detection`].
//!
//! The feature numbering is Xen's public ABI, `xen/include/public/features.h` (also copied into
//! Linux as `include/xen/interface/features.h`). Which bits Xen sets for which kind of domain is
//! in `xen/common/kernel.c`, `XENVER_get_features`: PV domains get
//! `mmu_pt_update_preserve_ad | highmem_assist | gnttab_map_avail_bits`; HVM and PVH domains get
//! `hvm_safe_pvclock | hvm_callback_vector`, plus `hvm_pirqs` when the domain has PIRQs
//! (HVM does by default, PVH does not). So the bitmap says which *kind* of domain this is, and
//! what Xen *offers*; the kernel log says what the guest kernel actually *uses*.

use serde::Serialize;

use crate::error::{Error, Result};

/// One named bit of a feature bitmap (Xen `XENFEAT_*`, KVM `KVM_FEATURE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureDef {
    /// Bit number (0 = least significant bit of the first 32-bit word).
    pub bit: u32,
    /// The name without its prefix, as in the header (`writable_page_tables`, `PV_EOI`).
    pub name: &'static str,
    /// One line on what it means, paraphrasing the header comment.
    pub meaning: &'static str,
}

/// `XENFEAT_*` from Xen `xen/include/public/features.h`. Bit 12 (`grant_map_identity`) is
/// commented out in the header as deprecated but kept here so an old hypervisor that sets it
/// is decoded by name. Bits 18–20 were added in Xen 4.19/4.20.
pub const XEN_FEATURES: &[FeatureDef] = &[
    FeatureDef {
        bit: 0,
        name: "writable_page_tables",
        meaning: "guest may update its page tables by direct writes",
    },
    FeatureDef {
        bit: 1,
        name: "writable_descriptor_tables",
        meaning: "guest may update segment descriptor tables by direct writes",
    },
    FeatureDef {
        bit: 2,
        name: "auto_translated_physmap",
        meaning: "Xen translates pseudo-physical to machine addresses (HVM/PVH paging)",
    },
    FeatureDef {
        bit: 3,
        name: "supervisor_mode_kernel",
        meaning: "guest kernel runs in supervisor mode (ring 0)",
    },
    FeatureDef {
        bit: 4,
        name: "pae_pgdir_above_4gb",
        meaning: "PAE page directories need not be below 4 GiB",
    },
    FeatureDef {
        bit: 5,
        name: "mmu_pt_update_preserve_ad",
        meaning: "MMU_PT_UPDATE_PRESERVE_AD hypercall (PV domains)",
    },
    FeatureDef {
        bit: 6,
        name: "highmem_assist",
        meaning: "MMU_{CLEAR,COPY}_PAGE hypercalls (PV domains)",
    },
    FeatureDef {
        bit: 7,
        name: "gnttab_map_avail_bits",
        meaning: "grant maps honour PTE available bits (PV domains)",
    },
    FeatureDef {
        bit: 8,
        name: "hvm_callback_vector",
        meaning: "HVM callback vector for event channels is offered (HVM/PVH)",
    },
    FeatureDef {
        bit: 9,
        name: "hvm_safe_pvclock",
        meaning: "pvclock is safe to use in an HVM guest",
    },
    FeatureDef {
        bit: 10,
        name: "hvm_pirqs",
        meaning: "physical IRQs can be routed as event channels (HVM with PIRQs)",
    },
    FeatureDef {
        bit: 11,
        name: "dom0",
        meaning: "operation as dom0 is supported",
    },
    FeatureDef {
        bit: 12,
        name: "grant_map_identity",
        meaning: "grants also mapped at pfn = mfn (deprecated)",
    },
    FeatureDef {
        bit: 13,
        name: "memory_op_vnode_supported",
        meaning: "XENMEMF_vnode accepted by memory ops",
    },
    FeatureDef {
        bit: 14,
        name: "ARM_SMCCC_supported",
        meaning: "Arm SMC calling convention supported",
    },
    FeatureDef {
        bit: 15,
        name: "linux_rsdp_unrestricted",
        meaning: "x86/PVH: ACPI RSDP may be anywhere",
    },
    FeatureDef {
        bit: 16,
        name: "not_direct_mapped",
        meaning: "domain memory is not 1:1 (gfn != mfn)",
    },
    FeatureDef {
        bit: 17,
        name: "direct_mapped",
        meaning: "domain memory is 1:1 (gfn == mfn)",
    },
    FeatureDef {
        bit: 18,
        name: "runstate_phys_area",
        meaning: "VCPUOP_register_runstate_phys_area available",
    },
    FeatureDef {
        bit: 19,
        name: "vcpu_time_phys_area",
        meaning: "VCPUOP_register_vcpu_time_phys_area available",
    },
    FeatureDef {
        bit: 20,
        name: "dm_msix_all_writes",
        meaning: "all MSI-X vector control writes go to the device model",
    },
];

/// Look up a Xen feature bit by number.
pub fn xen_feature(bit: u32) -> Option<&'static FeatureDef> {
    XEN_FEATURES.iter().find(|d| d.bit == bit)
}

/// A set bit of a decoded bitmap, with its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedBit {
    /// Bit number.
    pub bit: u32,
    /// Name from the header (see [`FeatureDef::name`]).
    pub name: String,
    /// What it means.
    pub meaning: String,
}

/// `/sys/hypervisor/properties/features` decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XenFeatures {
    /// The file content, trimmed (e.g. `"00000705"`).
    pub raw: String,
    /// The 32-bit submaps, submap 0 first (Linux prints them highest submap first, 8 hex
    /// digits each: `drivers/xen/sys-hypervisor.c`, `features_show`).
    pub submaps: Vec<u32>,
    /// Set bits with a name, lowest first.
    pub set: Vec<NamedBit>,
    /// Set bits this table has no name for (newer Xen), by number.
    pub unknown_bits: Vec<u32>,
}

impl XenFeatures {
    /// Whether the bit called `name` is set.
    pub fn has(&self, name: &str) -> bool {
        self.set.iter().any(|b| b.name == name)
    }
}

/// Decode the text of `/sys/hypervisor/properties/features`.
///
/// Accepts 1 to 8 hex digits (one submap), or a multiple of 8 digits (several submaps, highest
/// first); surrounding white space and a `0x` prefix are ignored.
///
/// # Errors
///
/// [`Error::XenFeatures`] if the text is empty, not hexadecimal, or longer than 8 digits
/// without being a multiple of 8.
pub fn decode_xen_features(text: &str) -> Result<XenFeatures> {
    let raw = text.trim().to_string();
    let err = |reason: &str| Error::XenFeatures {
        text: raw.clone(),
        reason: reason.to_string(),
    };
    let digits = raw
        .strip_prefix("0x")
        .or_else(|| raw.strip_prefix("0X"))
        .unwrap_or(&raw);
    if digits.is_empty() {
        return Err(err("empty"));
    }
    if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(err("not hexadecimal"));
    }
    let mut submaps = Vec::new();
    if digits.len() <= 8 {
        submaps.push(u32::from_str_radix(digits, 16).map_err(|_| err("not hexadecimal"))?);
    } else if digits.len() % 8 == 0 {
        // Highest submap first in the text: reverse the chunks.
        for chunk in digits.as_bytes().chunks(8).rev() {
            let s = std::str::from_utf8(chunk).map_err(|_| err("not hexadecimal"))?;
            submaps.push(u32::from_str_radix(s, 16).map_err(|_| err("not hexadecimal"))?);
        }
    } else {
        return Err(err(
            "more than 8 hex digits and not a whole number of 32-bit submaps",
        ));
    }
    let mut set = Vec::new();
    let mut unknown_bits = Vec::new();
    for (i, word) in submaps.iter().enumerate() {
        for j in 0..32u32 {
            if word & (1 << j) == 0 {
                continue;
            }
            let bit = i as u32 * 32 + j;
            match xen_feature(bit) {
                Some(d) => set.push(NamedBit {
                    bit,
                    name: d.name.to_string(),
                    meaning: d.meaning.to_string(),
                }),
                None => unknown_bits.push(bit),
            }
        }
    }
    Ok(XenFeatures {
        raw,
        submaps,
        set,
        unknown_bits,
    })
}

/// Xen guest modes, on the spectrum of Brendan Gregg's "What Color Is Your Xen?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XenMode {
    /// Fully paravirtualized: the kernel boots as a PV kernel ("Booting paravirtualized kernel
    /// on Xen"), no hardware virtualization.
    Pv,
    /// Hardware virtual machine with emulated devices only: no PV drivers, no PV interrupts.
    Hvm,
    /// HVM with PV disk/network drivers (xen-blkfront/netfront, `vbd`/`vif` on the Xen bus,
    /// "unplug emulated" lines) but no PV interrupts or timers.
    HvmPvDrivers,
    /// PV-on-HVM: HVM plus PV drivers, PV interrupts (the HVM callback vector), and PV timers /
    /// spinlocks / clock.
    Pvhvm,
    /// PVH: a PV kernel in an HVM container without emulated firmware or devices ("Booting
    /// paravirtualized kernel on Xen PVH").
    Pvh,
}

impl XenMode {
    /// How the mode is usually written: `PV`, `HVM`, `HVM with PV drivers`, `PVHVM`, `PVH`.
    pub fn label(self) -> &'static str {
        match self {
            XenMode::Pv => "PV",
            XenMode::Hvm => "HVM",
            XenMode::HvmPvDrivers => "HVM with PV drivers",
            XenMode::Pvhvm => "PVHVM",
            XenMode::Pvh => "PVH",
        }
    }
}

/// A paravirtual feature seen in use, with what showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveFeature {
    /// Short name, e.g. `pv_interrupts`, `pv_timers`, `pv_spinlocks`, `pv_clock`,
    /// `pv_network`, `pv_disks`, `unplugged_emulated_nics`, `steal_time`.
    pub name: String,
    /// Where it was seen: `kernel log line 12: "..."`, a sysfs path, ...
    pub evidence: String,
}

/// Everything known about Xen on this machine. Present in [`crate::Detection::xen`] whenever
/// any Xen evidence was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XenInfo {
    /// The mode, or `None` when the evidence does not decide it (see `mode_reason`).
    pub mode: Option<XenMode>,
    /// Why this mode was chosen, or why none could be.
    pub mode_reason: String,
    /// `/sys/hypervisor/guest_type` (`PV`, `HVM`, `PVH`; Linux 4.13+), if present.
    pub guest_type: Option<String>,
    /// `major.minor` + `extra` from `/sys/hypervisor/version/*`, else from the kernel log
    /// ("Xen version: 4.2.amazon").
    pub version: Option<String>,
    /// `/sys/hypervisor/properties/features` decoded; `None` if absent or malformed.
    pub features: Option<XenFeatures>,
    /// Why the features file could not be decoded.
    pub features_error: Option<String>,
    /// `/sys/hypervisor/properties/capabilities`, split on white space (e.g. `xen-3.0-x86_64`,
    /// `hvm-3.0-x86_64`). These are what the *host* can run, not this guest's mode.
    pub capabilities: Vec<String>,
    /// Whether this domain is dom0 (the Xen host's control domain), from
    /// `/proc/xen/capabilities` (`control_d`); `None` if that file is absent (xenfs not
    /// mounted). Feature bit `dom0` is not used: it only says dom0 operation is *supported*.
    pub dom0: Option<bool>,
    /// Paravirtual features in use (PV interrupts, timers, spinlocks, clock, drivers).
    pub active: Vec<ActiveFeature>,
    /// Entries of `/sys/bus/xen/devices` (`vbd-51712`, `vif-0`, `console-0`, ...).
    pub bus_devices: Vec<String>,
    /// Xen PV block devices in `/sys/block` (`xvda`, ...).
    pub xvd_disks: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_value_decodes_to_the_five_names() {
        let f = decode_xen_features("00000705\n").unwrap();
        let names: Vec<&str> = f.set.iter().map(|b| b.name.as_str()).collect();
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
    }

    #[test]
    fn unknown_bits_and_submaps() {
        let f = decode_xen_features("80000000").unwrap();
        assert_eq!(f.unknown_bits, [31]);
        let f = decode_xen_features("0000000100000001").unwrap();
        assert_eq!(f.submaps, [1, 1]);
        assert_eq!(f.unknown_bits, [32]);
        assert_eq!(f.set[0].name, "writable_page_tables");
    }

    #[test]
    fn table_is_sorted_and_unique() {
        for w in XEN_FEATURES.windows(2) {
            assert!(w[0].bit < w[1].bit);
        }
    }

    #[test]
    fn malformed() {
        for bad in ["", "zz", "12345678 9", "123456789"] {
            assert!(decode_xen_features(bad).is_err(), "{bad:?}");
        }
    }
}
