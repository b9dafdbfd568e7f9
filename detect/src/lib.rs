//! `hvprof detect`: what virtualization am I on, which paravirt features are active, and what
//! can hvprof measure here.
//!
//! Stage: runs before recording (and on its own as `hvprof detect`).
//! Input: a [`Source`]: the live system, or a captured tree (`--root DIR`) with an optional
//! saved kernel log (`--dmesg FILE`).
//! Output: a [`Detection`] (`Serialize`; schema in `docs/detect.md`) whose
//! [`Detection::verdict`] says bare metal / KVM / Xen (PV, HVM, HVM with PV drivers, PVHVM,
//! PVH) / PVM / VMware / Hyper-V / other, nested or not, with every piece of
//! [`Evidence`] and a [`Confidence`]; and whose [`Detection::host`] ([`HostCapabilities`])
//! tells the recorder which event to use and whether guest IPs will be visible.
//!
//! Detection never fails as a whole: unreadable or malformed inputs become
//! [`InputProblem`]s and, when nothing decides, [`GuestKind::Unknown`] with
//! [`Verdict::unknown_reason`].
//!
//! ```no_run
//! use hvprof_detect::{detect, render_text, Source};
//! let d = detect(&Source::live());
//! print!("{}", render_text(&d));
//! let json = serde_json::to_string_pretty(&d).unwrap();
//! # let _ = json;
//! ```
//!
//! Sources of formats and constants: Xen `xen/include/public/features.h` (feature bits),
//! `xen/common/kernel.c` (which bits a PV/HVM/PVH domain gets); Linux
//! `arch/x86/include/uapi/asm/kvm_para.h` (KVM CPUID leaves and feature bits),
//! `include/uapi/linux/virtio_ids.h`, `drivers/xen/sys-hypervisor.c` (`/sys/hypervisor`),
//! `Documentation/ABI/testing/dev-kmsg`; the PVM tree (github.com/virt-pvm/linux)
//! `arch/x86/include/uapi/asm/pvm_para.h` and `Documentation/virt/kvm/x86/pvm-spec.rst`;
//! Brendan Gregg, "Xen Feature Detection" (2014) for the kernel log lines.

mod analyze;
mod cpuid;
mod decide;
mod error;
mod evidence;
mod host;
mod kvm;
mod model;
mod render;
mod source;
mod xen;

pub use cpuid::{
    escape_signature, CpuidDump, CpuidInfo, CpuidRegs, HypervisorLeaf, SignatureVendor,
    EXT1_ECX_SVM, HYPERVISOR_LEAF_END, HYPERVISOR_LEAF_FIRST, HYPERVISOR_LEAF_STEP,
    LEAF1_ECX_HYPERVISOR, LEAF1_ECX_VMX,
};
pub use error::{Error, Result};
pub use host::{
    Debugfs, GuestIpProbe, HostCapabilities, Lockdown, Probe, ProbeOutcome, Tracepoints,
};
pub use kvm::{
    decode_kvm_features, virtio_device_name, KvmGuestInfo, PvmInfo, KVM_CPUID_FEATURES_OFFSET,
    KVM_CPUID_VENDOR_FEATURES_OFFSET, KVM_FEATURES, KVM_HINTS_REALTIME, PVM_CPUID_SIGNATURE,
};
pub use model::{
    Confidence, Detection, Dmi, Evidence, GuestKind, InputInfo, NestedVia, Platform, RedHerring,
    Signal, Strength, Verdict, VirtioDevice, SCHEMA_VERSION,
};
pub use render::render_text;
pub use source::{InputProblem, KernelLog, KernelLogInfo, KernelLogStatus, Source};
pub use xen::{
    decode_xen_features, xen_feature, ActiveFeature, FeatureDef, NamedBit, XenFeatures, XenInfo,
    XenMode, XEN_FEATURES,
};

/// Detect without running a VM: [`HostCapabilities::guest_ip_tagging`] and
/// [`Tracepoints::firing`] are [`Probe::NotProbed`].
pub fn detect(src: &Source) -> Detection {
    analyze::run(src, None)
}

/// Detect, and if `probe` is given, run it to measure guest-IP tagging and `kvm_exit` firing.
pub fn detect_with_probe(src: &Source, probe: Option<&dyn GuestIpProbe>) -> Detection {
    analyze::run(src, probe)
}

/// Entry point for `hvprof detect [--root DIR] [--dmesg FILE] [--probe]`: the same as
/// [`detect_with_probe`]. Format the result with [`render_text`] or
/// `serde_json::to_string_pretty`.
pub fn run(src: &Source, probe: Option<&dyn GuestIpProbe>) -> Detection {
    detect_with_probe(src, probe)
}
