//! The report's vocabulary for one sample: its [`Class`] (domain bucket), its [`Symbol`], and
//! the [`Attributed`] sample carrying both.

use serde::{Deserialize, Serialize};

use hvprof_perf::Sample;

/// The domain class of a sample: the report's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Hypervisor: KVM code in the host kernel (kvm, kvm_intel, kvm_amd, kvm_pvm).
    HypervisorKvm,
    /// Hypervisor: the rest of the host kernel (scheduler, interrupts, syscalls of the VMM).
    HypervisorKernel,
    /// Hypervisor below the host kernel (`PERF_RECORD_MISC_HYPERVISOR`, e.g. Xen).
    HypervisorXen,
    /// VMM user space (QEMU, Firecracker, the built-in test VM's host side).
    Vmm,
    /// Guest kernel (`PERF_RECORD_MISC_GUEST_KERNEL`).
    GuestKernel,
    /// Guest user (`PERF_RECORD_MISC_GUEST_USER`).
    GuestUser,
    /// Guest time whose IP this host does not report (see the module docs).
    GuestHidden,
    /// Guest code run by an emulator's translated code (QEMU TCG JIT): guest execution seen
    /// from the host.
    Emulation,
    /// cpumode unknown.
    Unknown,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 9] = [
        Class::GuestKernel,
        Class::GuestUser,
        Class::GuestHidden,
        Class::Emulation,
        Class::Vmm,
        Class::HypervisorKvm,
        Class::HypervisorKernel,
        Class::HypervisorXen,
        Class::Unknown,
    ];

    /// Short label used in text reports and flame graphs.
    pub fn label(self) -> &'static str {
        match self {
            Class::HypervisorKvm => "hypervisor (kvm)",
            Class::HypervisorKernel => "hypervisor (host kernel)",
            Class::HypervisorXen => "hypervisor (xen)",
            Class::Vmm => "vmm",
            Class::GuestKernel => "guest kernel",
            Class::GuestUser => "guest user",
            Class::GuestHidden => "guest (ip not reported by host)",
            Class::Emulation => "emulation (tcg)",
            Class::Unknown => "unknown",
        }
    }

    /// The stable machine name (the serde name).
    pub fn key(self) -> &'static str {
        match self {
            Class::HypervisorKvm => "hypervisor-kvm",
            Class::HypervisorKernel => "hypervisor-kernel",
            Class::HypervisorXen => "hypervisor-xen",
            Class::Vmm => "vmm",
            Class::GuestKernel => "guest-kernel",
            Class::GuestUser => "guest-user",
            Class::GuestHidden => "guest-hidden",
            Class::Emulation => "emulation",
            Class::Unknown => "unknown",
        }
    }

    /// The class a sample attributed to `self` counts in once the report knows whether this
    /// host hides guest IPs (`hide`): a `landing` sample (a vCPU thread's sample in the
    /// guest-interrupt path) is then guest time whose IP was not reported.
    pub fn effective(self, landing: bool, hide: bool) -> Class {
        if landing && hide {
            Class::GuestHidden
        } else {
            self
        }
    }

    /// True for the classes that are guest execution.
    pub fn is_guest(self) -> bool {
        matches!(
            self,
            Class::GuestKernel | Class::GuestUser | Class::GuestHidden | Class::Emulation
        )
    }
}

/// A resolved (or not) symbol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Symbol {
    /// Function name, or `[unknown]`.
    pub name: String,
    /// Object it lives in: `[kernel.kallsyms]`, a module `[kvm]`, a file name `qemu-system-x86_64`,
    /// `[guest.kernel]`, or `[unknown]`.
    pub dso: String,
    /// For `[unknown]`, the address (host VA or guest VA, per the class); else None.
    pub addr: Option<u64>,
    /// Why it is unknown, if it is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl Symbol {
    /// A named symbol.
    pub fn named(name: impl Into<String>, dso: impl Into<String>) -> Symbol {
        Symbol {
            name: name.into(),
            dso: dso.into(),
            addr: None,
            reason: None,
        }
    }

    /// An unresolved address, with why.
    pub fn unknown(addr: u64, dso: impl Into<String>, reason: impl Into<String>) -> Symbol {
        Symbol {
            name: "[unknown]".into(),
            dso: dso.into(),
            addr: Some(addr),
            reason: Some(reason.into()),
        }
    }

    /// `name` or `[unknown] 0xADDR`.
    pub fn display_name(&self) -> String {
        match self.addr {
            Some(a) => format!("[unknown] {a:#x}"),
            None => self.name.clone(),
        }
    }
}

/// A sample with its attribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributed {
    /// The raw sample.
    pub sample: Sample,
    /// Its class.
    pub class: Class,
    /// Its symbol.
    pub symbol: Symbol,
    /// The sample is a vCPU thread's host-kernel sample at a guest-interrupt landing symbol
    /// (see [`super::GUEST_LANDING_SYMBOLS`]): guest time when the host hides guest IPs.
    pub landing: bool,
}
