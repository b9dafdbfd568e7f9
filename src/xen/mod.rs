//! The Xen dom0 backend: what hvprof measures when it runs in a Xen host's control domain.
//!
//! - discovery ([`domains`]): domains from xenstore ([`xenstore`]), vCPU placement and CPU
//!   time from the hypervisor (`XEN_DOMCTL_getvcpuinfo`), as [`crate::model::Machines`] keyed
//!   by [`crate::model::VmId::XenDomain`];
//! - hypervisor costs ([`stat`]): runstate times (running, runnable = steal, blocked, offline),
//!   hypercalls and HVM exits from xentrace's records ([`xentrace`]);
//! - sampling ([`vcpu_sampler`]): each domU vCPU's instruction pointer read from dom0
//!   (`XEN_DOMCTL_getvcpucontext`) at a bounded rate, fed to the one attributor and aggregator;
//!   and, where Xen's vPMU works, dom0's guest-mode perf samples re-homed through the pCPU ×
//!   time timeline ([`xentrace::timeline`], [`vpmu`]);
//! - [`detect`]: what this dom0 offers (Xen version, dom0 mode, vPMU mode, xentrace).
//!
//! The Xen tools libraries are loaded at run time ([`ffi`], `libloading`): on a host without
//! them hvprof builds and runs, and the Xen commands say what is missing.

pub mod abi;
pub mod detect;
pub mod domains;
pub mod error;
pub mod ffi;
pub mod guest_symbols;
pub mod record;
pub mod stat;
pub mod vcpu_sampler;
pub mod vpmu;
pub mod xenstore;
pub mod xentrace;

use std::path::Path;

pub use error::{Result, XenError};

/// Whether this system (under `root`, normally `/`) is a Xen dom0: `proc/xen/capabilities`
/// (xenfs) says `control_d`. `Err` carries a hint for the user when it is not.
pub fn check_dom0(root: &Path) -> std::result::Result<(), String> {
    let caps = root.join("proc/xen/capabilities");
    match std::fs::read_to_string(&caps) {
        Ok(s) if s.split_whitespace().any(|w| w == "control_d") => Ok(()),
        Ok(_) => Err(format!(
            "{} does not say control_d: this is a Xen domU, not dom0 (run hvprof in dom0 to see domains)",
            caps.display()
        )),
        Err(_) if root.join("sys/hypervisor/type").is_file() => Err(format!(
            "{} is missing: mount xenfs (mount -t xenfs xenfs /proc/xen) in dom0",
            caps.display()
        )),
        Err(_) => Err("no Xen hypervisor here (/sys/hypervisor/type is absent)".to_string()),
    }
}

/// The domains of this dom0 (xenstore through libxenstore, placement and CPU time through
/// libxenctrl; dom0's own vCPUs asked of the hypervisor).
///
/// # Errors
/// Not dom0 ([`XenError::NotDom0`] with a hint), or a Xen library missing.
pub fn list_domains() -> Result<Vec<domains::Domain>> {
    check_dom0(Path::new("/")).map_err(XenError::NotDom0)?;
    let store = ffi::XenStoreLib::open()?;
    let mut ctl = ffi::XenCtrl::open()?;
    let mut d = domains::discover(&store, Some(&mut ctl));
    for x in d.iter_mut().filter(|x| x.domid == 0) {
        domains::probe_vcpus(&mut ctl, x, 512);
    }
    Ok(d)
}

/// Whether this machine runs on Xen at all (`/sys/hypervisor/type` says `xen`).
pub fn on_xen(root: &Path) -> bool {
    std::fs::read_to_string(root.join("sys/hypervisor/type")).is_ok_and(|s| s.trim() == "xen")
}

/// Whether `root` is a Xen dom0 (see [`check_dom0`]).
pub fn is_dom0(root: &Path) -> bool {
    check_dom0(root).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dom0_from_capabilities() {
        let d = tempfile::tempdir().unwrap();
        assert!(check_dom0(d.path()).unwrap_err().contains("no Xen"));
        std::fs::create_dir_all(d.path().join("sys/hypervisor")).unwrap();
        std::fs::write(d.path().join("sys/hypervisor/type"), "xen\n").unwrap();
        assert!(check_dom0(d.path()).unwrap_err().contains("xenfs"));
        std::fs::create_dir_all(d.path().join("proc/xen")).unwrap();
        std::fs::write(d.path().join("proc/xen/capabilities"), "").unwrap();
        assert!(check_dom0(d.path()).unwrap_err().contains("domU"));
        std::fs::write(d.path().join("proc/xen/capabilities"), "control_d\n").unwrap();
        assert!(is_dom0(d.path()));
    }
}
