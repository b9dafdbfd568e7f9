//! The result of detection: [`Detection`] and its parts. Every type here is `Serialize`; the
//! JSON schema is documented in `docs/detect.md`.

use serde::Serialize;

use crate::cpuid::CpuidInfo;
use crate::host::HostCapabilities;
use crate::kvm::{KvmGuestInfo, PvmInfo};
use crate::source::{InputProblem, KernelLogInfo};
use crate::xen::{XenInfo, XenMode};

/// Version of the JSON layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything `hvprof detect` found. Never an error: missing or malformed inputs show up in
/// [`Detection::problems`], in the evidence, and as [`GuestKind::Unknown`] with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What was read.
    pub input: InputInfo,
    /// The answer: which hypervisor, which mode, nested or not, how sure.
    pub verdict: Verdict,
    /// CPUID as far as detection is concerned.
    pub cpuid: CpuidInfo,
    /// The kernel log used.
    pub kernel_log: KernelLogInfo,
    /// Xen details; `None` when there is no Xen evidence at all.
    pub xen: Option<XenInfo>,
    /// KVM guest details; `None` when there is no KVM-guest evidence.
    pub kvm: Option<KvmGuestInfo>,
    /// PVM guest and host.
    pub pvm: PvmInfo,
    /// Guest-visible platform: clocksource, virtio devices, DMI, CPU flags.
    pub platform: Platform,
    /// What hvprof can measure here.
    pub host: HostCapabilities,
    /// Every observation that went into the verdict, in the order found.
    pub evidence: Vec<Evidence>,
    /// Things that look like evidence but are not (configured ≠ active, capabilities ≠ mode).
    pub red_herrings: Vec<RedHerring>,
    /// "hvprof can measure here: ..." lines.
    pub can_measure: Vec<String>,
    /// "cannot, because ..." lines.
    pub cannot_measure: Vec<String>,
    /// Inputs that exist but could not be used.
    pub problems: Vec<InputProblem>,
}

/// What was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputInfo {
    /// The directory standing for `/`.
    pub root: String,
    /// Whether the live system was inspected (CPUID instruction, `/dev/kmsg`, `/dev/kvm` open).
    pub live: bool,
}

/// What kind of machine this is, from the point of view of its own kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestKind {
    /// No hypervisor underneath.
    BareMetal,
    /// A KVM guest (hardware-assisted or not; not PVM).
    KvmGuest,
    /// A Xen guest (domU) or dom0; see [`Verdict::xen_mode`].
    XenGuest,
    /// A PVM guest: a KVM guest of a PVM (software) host.
    PvmGuest,
    /// A VMware guest (CPUID "VMwareVMware").
    VmwareGuest,
    /// A Hyper-V guest (CPUID "Microsoft Hv" and no other hypervisor behind it).
    HypervGuest,
    /// Virtualized, but by something else or unidentified (see [`Verdict::hypervisor`]).
    OtherGuest,
    /// Not enough evidence; see [`Verdict::unknown_reason`].
    Unknown,
}

impl GuestKind {
    /// Human label: "bare metal", "KVM guest", ...
    pub fn label(self) -> &'static str {
        match self {
            GuestKind::BareMetal => "bare metal",
            GuestKind::KvmGuest => "KVM guest",
            GuestKind::XenGuest => "Xen guest",
            GuestKind::PvmGuest => "PVM guest",
            GuestKind::VmwareGuest => "VMware guest",
            GuestKind::HypervGuest => "Hyper-V guest",
            GuestKind::OtherGuest => "virtual machine (other hypervisor)",
            GuestKind::Unknown => "unknown",
        }
    }
}

/// How a nested guest hosts its own guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NestedVia {
    /// `kvm_pvm`: software virtualization, no VMX/SVM needed.
    Pvm,
    /// VMX/SVM exposed to this guest (nested hardware virtualization).
    Hardware,
    /// `/dev/kvm` exists but the backend is unknown.
    Unknown,
}

/// How sure the verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// No usable evidence.
    None,
    /// Only weak evidence, or strong evidence on both sides.
    Low,
    /// Moderate evidence, or strong evidence with weaker conflicting evidence.
    Medium,
    /// Strong evidence and nothing strong against it.
    High,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// What this machine is.
    pub kind: GuestKind,
    /// Hypervisor name as identified: `KVM`, `Xen`, `PVM`, `VMware`, `Hyper-V`, a CPUID
    /// signature, or `None` for bare metal / unknown.
    pub hypervisor: Option<String>,
    /// Xen mode when [`GuestKind::XenGuest`] and decidable.
    pub xen_mode: Option<XenMode>,
    /// A guest that is itself a KVM host (`/dev/kvm` present inside a VM).
    pub nested: bool,
    /// How it hosts its guests, when `nested`.
    pub nested_via: Option<NestedVia>,
    /// This machine can run PVM guests.
    pub pvm_host: bool,
    /// How sure.
    pub confidence: Confidence,
    /// One line: "KVM guest; nested: KVM host via PVM (kvm_pvm loaded, /dev/kvm present)".
    pub summary: String,
    /// Evidence that disagrees with the verdict, one line each.
    pub conflicts: Vec<String>,
    /// When `kind` is `unknown`: why.
    pub unknown_reason: Option<String>,
}

/// Which way one observation points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// No hypervisor.
    BareMetal,
    /// Some hypervisor (which one not said).
    Virtualized,
    /// KVM guest.
    Kvm,
    /// Xen guest, mode not said.
    Xen,
    /// Xen PV guest.
    XenPv,
    /// Xen HVM container (HVM, HVM with PV drivers, PVHVM; sometimes PVH).
    XenHvm,
    /// Xen PVH guest.
    XenPvh,
    /// Xen PV disk/network drivers in use.
    XenPvDrivers,
    /// Xen PV interrupts (HVM callback vector).
    XenPvInterrupts,
    /// Xen PV timers (vcpuop timer).
    XenPvTimers,
    /// Xen PV spinlocks.
    XenPvSpinlocks,
    /// Xen PV clock (clocksource `xen`).
    XenPvClock,
    /// PVM guest.
    PvmGuest,
    /// Not a PVM guest.
    NotPvmGuest,
    /// PVM host (`kvm_pvm`).
    PvmHost,
    /// KVM host (`/dev/kvm`).
    KvmHost,
    /// VMware guest.
    Vmware,
    /// Hyper-V guest (or Hyper-V enlightenments).
    HyperV,
    /// Another hypervisor.
    OtherHypervisor,
    /// A hardware PMU is usable.
    HardwarePmu,
    /// No hardware PMU.
    NoHardwarePmu,
}

/// How much one observation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Suggestive only (e.g. DMI strings, virtio devices).
    Weak,
    /// Usually right (e.g. a clocksource, Xen bus devices).
    Moderate,
    /// Decisive on its own (a CPUID signature, the kernel's own "Hypervisor detected" line).
    Strong,
}

impl Strength {
    pub(crate) fn weight(self) -> u32 {
        match self {
            Strength::Weak => 1,
            Strength::Moderate => 2,
            Strength::Strong => 3,
        }
    }
}

/// One observation: which file or line said what, and what it indicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Where: a path (`/sys/hypervisor/type`), `kernel log line 12`, `cpuid 0x40000000`.
    pub source: String,
    /// What was there, verbatim or abridged.
    pub observed: String,
    /// What it indicates.
    pub signal: Signal,
    /// How much it counts.
    pub strength: Strength,
    /// What it means, in a few words.
    pub meaning: String,
}

/// Something that looks like evidence but is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedHerring {
    /// Where.
    pub source: String,
    /// What was there.
    pub observed: String,
    /// Why it does not mean what it seems to.
    pub why: String,
}

/// Guest-visible platform details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `/sys/devices/system/clocksource/clocksource0/current_clocksource`.
    pub clocksource: Option<String>,
    /// `.../available_clocksource`, split.
    pub available_clocksources: Vec<String>,
    /// Virtio devices from `/sys/bus/virtio/devices/*/device`.
    pub virtio: Vec<VirtioDevice>,
    /// DMI strings from `/sys/class/dmi/id`.
    pub dmi: Dmi,
    /// Selected `/proc/cpuinfo` flags: `hypervisor`, `vmx`, `svm`, `kvm_pvm_guest`.
    pub cpu_flags: Vec<String>,
    /// `/proc/cmdline`.
    pub cmdline: Option<String>,
}

/// One virtio device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtioDevice {
    /// Directory name (`virtio0`).
    pub name: String,
    /// Device type id (`/sys/bus/virtio/devices/virtio0/device`, hex in sysfs).
    pub id: u32,
    /// Type name (`net`, `block`, ...; see [`crate::virtio_device_name`]), `unknown` if new.
    pub kind: String,
}

/// DMI (SMBIOS) strings; all `None` when the firmware has no DMI (Xen PV, Firecracker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dmi {
    /// `sys_vendor` (e.g. `Xen`, `QEMU`, `Amazon EC2`).
    pub sys_vendor: Option<String>,
    /// `product_name` (e.g. `HVM domU`).
    pub product_name: Option<String>,
    /// `bios_vendor`.
    pub bios_vendor: Option<String>,
    /// `bios_version` (e.g. `4.2.amazon`).
    pub bios_version: Option<String>,
}
