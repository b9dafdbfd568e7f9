//! CPUID evidence: the hypervisor-present bit, the signatures in the hypervisor leaf range,
//! the PVM vendor leaf, and the KVM feature leaf for the KVM section.

use super::Ctx;
use crate::cpuid::{CpuidDump, CpuidInfo, SignatureVendor};
use crate::kvm::{
    decode_kvm_features, KvmGuestInfo, KVM_CPUID_FEATURES_OFFSET, KVM_CPUID_VENDOR_FEATURES_OFFSET,
    PVM_CPUID_SIGNATURE,
};
use crate::model::{Signal, Strength};
use crate::source::{ReadFail, Source};
use crate::xen::ActiveFeature;

/// CPUID from the live instruction, or from `cpuid.txt` in a captured tree; a malformed or
/// unreadable dump is recorded as an input problem.
pub(crate) fn load_cpuid(src: &Source, cx: &mut Ctx) -> (Option<CpuidDump>, CpuidInfo) {
    if src.live {
        return match CpuidDump::capture_live() {
            Some(d) => {
                let info = CpuidInfo::from_dump(&d, "live CPUID instruction".into());
                (Some(d), info)
            }
            None => (
                None,
                CpuidInfo::unavailable(None, "CPUID is x86-only; not available on this CPU".into()),
            ),
        };
    }
    let path = "/cpuid.txt";
    let shown = cx.fs.path(path).display().to_string();
    match cx.fs.try_read(path) {
        Ok(text) => match CpuidDump::parse(&text) {
            Ok(d) => {
                let info = CpuidInfo::from_dump(&d, shown);
                (Some(d), info)
            }
            Err(e) => {
                cx.fs.problem(path, format!("malformed: {e}"));
                (
                    None,
                    CpuidInfo::unavailable(Some(shown), format!("cpuid.txt malformed: {e}")),
                )
            }
        },
        Err(ReadFail::Missing) => (
            None,
            CpuidInfo::unavailable(
                None,
                "no cpuid.txt in the captured tree (CPUID cannot be read from files)".into(),
            ),
        ),
        Err(ReadFail::Failed(why)) => {
            cx.fs.problem(path, why.clone());
            (
                None,
                CpuidInfo::unavailable(Some(shown), format!("cpuid.txt not readable: {why}")),
            )
        }
    }
}

/// Evidence from the hypervisor bit and each hypervisor leaf signature; behind a KVM signature,
/// the PVM vendor leaf.
pub(crate) fn cpuid_evidence(cx: &mut Ctx, dump: Option<&CpuidDump>, info: &CpuidInfo) {
    match info.hypervisor_bit {
        Some(true) => cx.ev(
            "cpuid 0x1 ecx bit 31",
            "1",
            Signal::Virtualized,
            Strength::Strong,
            "hypervisor-present bit set",
        ),
        Some(false) => cx.ev(
            "cpuid 0x1 ecx bit 31",
            "0",
            Signal::BareMetal,
            Strength::Moderate,
            "hypervisor-present bit clear (a Xen PV guest's user-space CPUID can also show this)",
        ),
        None => {}
    }
    let n = info.hypervisor_leaves.len();
    for (i, leaf) in info.hypervisor_leaves.iter().enumerate() {
        let src = format!("cpuid 0x{:08x}", leaf.base);
        let obs = format!("\"{}\" (max leaf 0x{:08x})", leaf.signature, leaf.max_leaf);
        let (signal, strength, meaning) = match leaf.vendor {
            SignatureVendor::Kvm => (Signal::Kvm, Strength::Strong, "KVM signature".to_string()),
            SignatureVendor::Xen => (Signal::Xen, Strength::Strong, "Xen signature".to_string()),
            SignatureVendor::HyperV if i + 1 < n => (
                Signal::HyperV,
                Strength::Weak,
                "Hyper-V compatible leaves offered by the hypervisor found at a higher base"
                    .to_string(),
            ),
            SignatureVendor::HyperV => (
                Signal::HyperV,
                Strength::Strong,
                "Hyper-V signature".to_string(),
            ),
            SignatureVendor::Vmware => (
                Signal::Vmware,
                Strength::Strong,
                "VMware signature".to_string(),
            ),
            v => (
                Signal::OtherHypervisor,
                Strength::Strong,
                format!("hypervisor signature ({v:?})"),
            ),
        };
        cx.ev(src, obs, signal, strength, meaning);
        if leaf.vendor == SignatureVendor::Kvm {
            let vendor_leaf = leaf.base + KVM_CPUID_VENDOR_FEATURES_OFFSET;
            let src2 = format!("cpuid 0x{vendor_leaf:08x}");
            if leaf.max_leaf >= vendor_leaf {
                match dump.and_then(|d| d.get(vendor_leaf, 0)) {
                    Some(r) if r.ebx == PVM_CPUID_SIGNATURE => cx.ev(
                        src2,
                        format!("ebx=0x{:08x} (\"pvm\")", r.ebx),
                        Signal::PvmGuest,
                        Strength::Strong,
                        "PVM vendor signature (KVM_CPUID_VENDOR_FEATURES)",
                    ),
                    Some(r) => cx.ev(
                        src2,
                        format!("ebx=0x{:08x}", r.ebx),
                        Signal::NotPvmGuest,
                        Strength::Weak,
                        "vendor leaf present but not PVM",
                    ),
                    None => {}
                }
            } else {
                cx.ev(
                    format!("cpuid 0x{:08x} eax", leaf.base),
                    format!("0x{:08x} < 0x{vendor_leaf:08x}", leaf.max_leaf),
                    Signal::NotPvmGuest,
                    Strength::Weak,
                    "no KVM_CPUID_VENDOR_FEATURES leaf, so no PVM signature; weak because \
                     user-space CPUID in a PVM guest may not be trapped by the PVM host and \
                     then shows the layer below",
                );
            }
        }
    }
}

/// The KVM section: where the KVM signature is, the `KVM_CPUID_FEATURES` bits, and the
/// paravirt features the kernel reported using (`active`).
pub(crate) fn kvm_info(
    dump: Option<&CpuidDump>,
    cpuid: &CpuidInfo,
    active: Vec<ActiveFeature>,
) -> KvmGuestInfo {
    let leaf = cpuid
        .hypervisor_leaves
        .iter()
        .find(|l| l.vendor == SignatureVendor::Kvm);
    let feat = leaf.and_then(|l| dump.and_then(|d| d.get(l.base + KVM_CPUID_FEATURES_OFFSET, 0)));
    let (features, unknown) = feat.map(|r| decode_kvm_features(r.eax)).unwrap_or_default();
    KvmGuestInfo {
        signature_leaf: leaf.map(|l| l.base),
        max_leaf: leaf.map(|l| l.max_leaf),
        features_eax: feat.map(|r| r.eax),
        features,
        unknown_feature_bits: unknown,
        hints_edx: feat.map(|r| r.edx),
        active,
    }
}
