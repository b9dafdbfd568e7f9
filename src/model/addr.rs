//! Address newtypes. A bare `u64` address is ambiguous on a virtualization host: the same
//! number is a host virtual address in a host-mode sample and a guest virtual address in a
//! guest-mode one (the `ip_or_rip` pattern perf's reviewers warned against). These types name
//! the space; conversions between them happen only where a mapping says how.

use hvprof_perf::{CpuMode, Sample};

/// A virtual address in the host (host kernel or a host process such as the VMM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostVa(pub u64);

/// A virtual address inside a guest (guest kernel or a guest process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GuestVa(pub u64);

/// A byte offset in a file (an ELF image's `p_offset` space, a mapping's `pgoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileOffset(pub u64);

/// An address with its space, as a sample's cpumode says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// Host kernel, host user space, or unknown mode (treated as host).
    Host(HostVa),
    /// Guest kernel or guest user space.
    Guest(GuestVa),
}

impl Address {
    /// The sample's IP in the space its cpumode names.
    pub fn of_sample(s: &Sample) -> Address {
        Address::of(s.cpumode, s.ip)
    }

    /// `ip` in the space `cpumode` names (guest modes: guest VA; every other mode: host VA).
    pub fn of(cpumode: CpuMode, ip: u64) -> Address {
        if cpumode.is_guest() {
            Address::Guest(GuestVa(ip))
        } else {
            Address::Host(HostVa(ip))
        }
    }

    /// The raw value, for output (a report prints it with its space named beside it).
    pub fn raw(self) -> u64 {
        match self {
            Address::Host(HostVa(a)) | Address::Guest(GuestVa(a)) => a,
        }
    }
}

impl std::fmt::LowerHex for HostVa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::LowerHex::fmt(&self.0, f)
    }
}

impl std::fmt::LowerHex for GuestVa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpumode_names_the_space() {
        for (mode, want) in [
            (CpuMode::Kernel, Address::Host(HostVa(7))),
            (CpuMode::User, Address::Host(HostVa(7))),
            (CpuMode::Hypervisor, Address::Host(HostVa(7))),
            (CpuMode::Unknown, Address::Host(HostVa(7))),
            (CpuMode::GuestKernel, Address::Guest(GuestVa(7))),
            (CpuMode::GuestUser, Address::Guest(GuestVa(7))),
        ] {
            assert_eq!(Address::of(mode, 7), want, "{mode:?}");
        }
    }
}
