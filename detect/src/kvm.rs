//! KVM and PVM guest side: paravirt feature bits, the PVM signature, virtio device names.

use serde::Serialize;

use crate::xen::{ActiveFeature, FeatureDef, NamedBit};

/// `KVM_CPUID_FEATURES` (Linux `arch/x86/include/uapi/asm/kvm_para.h`): EAX holds the
/// `KVM_FEATURE_*` bits, EDX the `KVM_HINTS_*` bits.
pub const KVM_CPUID_FEATURES_OFFSET: u32 = 1;
/// `KVM_CPUID_VENDOR_FEATURES` (offset 2 from the KVM base): only a PVM hypervisor
/// implements it; EBX then holds [`PVM_CPUID_SIGNATURE`]. Source: the PVM tree
/// (github.com/virt-pvm/linux) `arch/x86/include/uapi/asm/kvm_para.h` and
/// `Documentation/virt/kvm/x86/pvm-spec.rst` ("CPUID.EBX is 0x6d7670 ("pvm")").
pub const KVM_CPUID_VENDOR_FEATURES_OFFSET: u32 = 2;
/// `PVM_CPUID_SIGNATURE`: `"pvm"` as a little-endian u32 in EBX of `KVM_CPUID_VENDOR_FEATURES`.
pub const PVM_CPUID_SIGNATURE: u32 = 0x006d_7670;
/// `KVM_HINTS_REALTIME` (EDX bit 0 of `KVM_CPUID_FEATURES`): vCPUs are never preempted.
pub const KVM_HINTS_REALTIME: u32 = 1 << 0;

/// `KVM_FEATURE_*` from Linux `arch/x86/include/uapi/asm/kvm_para.h` (v6.x; bits 14–17 since
/// v5.8–v5.16), plus bit 18 `PV_MMU`, which only the PVM tree defines.
pub const KVM_FEATURES: &[FeatureDef] = &[
    FeatureDef {
        bit: 0,
        name: "CLOCKSOURCE",
        meaning: "kvmclock, old MSRs 0x11/0x12",
    },
    FeatureDef {
        bit: 1,
        name: "NOP_IO_DELAY",
        meaning: "port 0x80 I/O delays not needed",
    },
    FeatureDef {
        bit: 2,
        name: "MMU_OP",
        meaning: "deprecated paravirt MMU hypercall",
    },
    FeatureDef {
        bit: 3,
        name: "CLOCKSOURCE2",
        meaning: "kvmclock, new MSRs 0x4b564d00/01",
    },
    FeatureDef {
        bit: 4,
        name: "ASYNC_PF",
        meaning: "asynchronous page faults",
    },
    FeatureDef {
        bit: 5,
        name: "STEAL_TIME",
        meaning: "steal time accounting",
    },
    FeatureDef {
        bit: 6,
        name: "PV_EOI",
        meaning: "paravirtual end-of-interrupt",
    },
    FeatureDef {
        bit: 7,
        name: "PV_UNHALT",
        meaning: "paravirtual spinlocks (kick a halted vCPU)",
    },
    FeatureDef {
        bit: 9,
        name: "PV_TLB_FLUSH",
        meaning: "paravirtual remote TLB flush",
    },
    FeatureDef {
        bit: 10,
        name: "ASYNC_PF_VMEXIT",
        meaning: "async #PF delivered as a VM exit (nested)",
    },
    FeatureDef {
        bit: 11,
        name: "PV_SEND_IPI",
        meaning: "paravirtual IPIs by hypercall",
    },
    FeatureDef {
        bit: 12,
        name: "POLL_CONTROL",
        meaning: "host-side halt polling can be disabled",
    },
    FeatureDef {
        bit: 13,
        name: "PV_SCHED_YIELD",
        meaning: "yield to a preempted vCPU by hypercall",
    },
    FeatureDef {
        bit: 14,
        name: "ASYNC_PF_INT",
        meaning: "async page-ready notification by interrupt",
    },
    FeatureDef {
        bit: 15,
        name: "MSI_EXT_DEST_ID",
        meaning: "extended MSI destination ID (> 255 CPUs without IOMMU)",
    },
    FeatureDef {
        bit: 16,
        name: "HC_MAP_GPA_RANGE",
        meaning: "KVM_HC_MAP_GPA_RANGE hypercall (memory encryption status)",
    },
    FeatureDef {
        bit: 17,
        name: "MIGRATION_CONTROL",
        meaning: "MSR_KVM_MIGRATION_CONTROL",
    },
    FeatureDef {
        bit: 18,
        name: "PV_MMU",
        meaning: "PVM only: paravirtual MMU (KVM_HC_PV_MMU_SET_PTES)",
    },
    FeatureDef {
        bit: 24,
        name: "CLOCKSOURCE_STABLE_BIT",
        meaning: "kvmclock PVCLOCK_TSC_STABLE_BIT honoured",
    },
];

/// Decode `KVM_CPUID_FEATURES` EAX into names and unknown bit numbers.
pub fn decode_kvm_features(eax: u32) -> (Vec<NamedBit>, Vec<u32>) {
    let mut set = Vec::new();
    let mut unknown = Vec::new();
    for bit in 0..32u32 {
        if eax & (1 << bit) == 0 {
            continue;
        }
        match KVM_FEATURES.iter().find(|d| d.bit == bit) {
            Some(d) => set.push(NamedBit {
                bit,
                name: d.name.to_string(),
                meaning: d.meaning.to_string(),
            }),
            None => unknown.push(bit),
        }
    }
    (set, unknown)
}

/// Virtio device type name for the numeric id in `/sys/bus/virtio/devices/*/device`
/// (Linux `include/uapi/linux/virtio_ids.h`; virtio 1.2 spec section 5 "Device Types").
pub fn virtio_device_name(id: u32) -> Option<&'static str> {
    Some(match id {
        1 => "net",
        2 => "block",
        3 => "console",
        4 => "rng",
        5 => "balloon",
        6 => "iomem",
        7 => "rpmsg",
        8 => "scsi",
        9 => "9p",
        10 => "mac80211_wlan",
        11 => "rproc_serial",
        12 => "caif",
        13 => "memory_balloon",
        16 => "gpu",
        17 => "clock",
        18 => "input",
        19 => "vsock",
        20 => "crypto",
        21 => "signal_dist",
        22 => "pstore",
        23 => "iommu",
        24 => "mem",
        25 => "sound",
        26 => "fs",
        27 => "pmem",
        28 => "rpmb",
        29 => "mac80211_hwsim",
        30 => "video_encoder",
        31 => "video_decoder",
        32 => "scmi",
        33 => "nitro_sec_mod",
        34 => "i2c_adapter",
        35 => "watchdog",
        36 => "can",
        37 => "dmabuf",
        38 => "param_serv",
        39 => "audio_policy",
        40 => "bt",
        41 => "gpio",
        _ => return None,
    })
}

/// KVM guest details: present in [`crate::Detection::kvm`] when a KVM signature or KVM boot
/// messages were found (also for PVM guests, which are KVM guests of a PVM host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvmGuestInfo {
    /// Base leaf of the KVM signature (`0x40000000`, or `0x40000100` behind Hyper-V
    /// enlightenments); `None` if only the kernel log said KVM.
    pub signature_leaf: Option<u32>,
    /// EAX of the base leaf: highest KVM leaf. `>= base + 2` is required for PVM.
    pub max_leaf: Option<u32>,
    /// EAX of `KVM_CPUID_FEATURES` (base + 1), if captured.
    pub features_eax: Option<u32>,
    /// Named `KVM_FEATURE_*` bits set in `features_eax`.
    pub features: Vec<NamedBit>,
    /// Set bits of `features_eax` with no name here.
    pub unknown_feature_bits: Vec<u32>,
    /// EDX of `KVM_CPUID_FEATURES`: `KVM_HINTS_*`.
    pub hints_edx: Option<u32>,
    /// Paravirt features the guest kernel reported using (kernel log `kvm-guest:` /
    /// `kvm-clock:` lines, current clocksource `kvm-clock`).
    pub active: Vec<ActiveFeature>,
}

/// PVM (Pagetable-based Virtual Machine, github.com/virt-pvm/linux): KVM with a software
/// `kvm_pvm` backend that needs no VMX/SVM, so it runs inside ordinary cloud VMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PvmInfo {
    /// This kernel runs as a PVM guest.
    pub guest: bool,
    /// This machine can run PVM guests: `kvm_pvm` is loaded and `/dev/kvm` exists.
    pub host: bool,
    /// `kvm_pvm` found: `/sys/module/kvm_pvm` or "kvm-pvm: loaded" in the kernel log.
    pub kvm_pvm_loaded: bool,
    /// Number of `pvm_*` symbols in `/proc/kallsyms`. The kernel being *built* with PVM code
    /// (host or guest side) is not the same as running it: a red herring on its own.
    pub kallsyms_pvm_symbols: usize,
    /// Whether `pvm_do_event_irqoff` (the PVM host's guest-event entry, where host samples
    /// taken in PVM guest mode land) is in kallsyms.
    pub kallsyms_event_entry: bool,
    /// `nested_pvm=...` from `/proc/cmdline`, if present.
    pub cmdline_nested_pvm: Option<String>,
    /// One line per decision: why guest / host is true or false.
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_this_machines_kvm_leaf() {
        // CPUID 0x40000001 EAX on the development machine (KVM guest hosting PVM).
        let (set, unknown) = decode_kvm_features(0x0100_7efb);
        let names: Vec<&str> = set.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "CLOCKSOURCE",
                "NOP_IO_DELAY",
                "CLOCKSOURCE2",
                "ASYNC_PF",
                "STEAL_TIME",
                "PV_EOI",
                "PV_UNHALT",
                "PV_TLB_FLUSH",
                "ASYNC_PF_VMEXIT",
                "PV_SEND_IPI",
                "POLL_CONTROL",
                "PV_SCHED_YIELD",
                "ASYNC_PF_INT",
                "CLOCKSOURCE_STABLE_BIT"
            ]
        );
        assert!(unknown.is_empty());
        let (_, unknown) = decode_kvm_features(1 << 8 | 1 << 30);
        assert_eq!(unknown, [8, 30]);
    }

    #[test]
    fn virtio_names() {
        assert_eq!(virtio_device_name(1), Some("net"));
        assert_eq!(virtio_device_name(0x13), Some("vsock"));
        assert_eq!(virtio_device_name(14), None);
    }
}
