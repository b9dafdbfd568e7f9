//! Domains seen from dom0: xenstore's `/local/domain/N` (name, vCPUs and their availability,
//! the device model's pid), the hypervisor's vCPU placement and CPU time
//! (`XEN_DOMCTL_getvcpuinfo`), and the [`Machines`] the attribution path uses.
//!
//! A domain is a guest machine keyed by [`VmId::XenDomain`]. Its vCPUs have no dom0 thread,
//! so each gets a synthetic thread id ([`vcpu_tid`], negative, never a real tid) that the one
//! attributor and aggregator index like a KVM vCPU thread.
//!
//! ```
//! use hvprof::xen::domains::{discover, to_machines};
//! use hvprof::xen::xenstore::MapStore;
//! let store = MapStore::new([("/local/domain/1/name", "web"), ("/local/domain/1/cpu/0/availability", "online")]);
//! let doms = discover(&store, None);
//! assert_eq!(doms[0].name, "web");
//! let machines = to_machines(&doms, false);
//! assert_eq!(machines.guests().count(), 1);
//! ```

use serde::Serialize;

use super::ffi::{VcpuInfo, VcpuSource};
use super::xenstore::Store;
use crate::model::{GuestMachine, Machines, Thread, Vcpu, VmId};

/// Domains listed at most (Xen's domids end at `DOMID_FIRST_RESERVED` = 0x7FF0, xen.h).
const MAX_DOMAINS: usize = 0x7ff0;
/// vCPUs per domain at most in the synthetic thread-id space.
pub const MAX_VCPUS: u32 = 4096;

/// One vCPU of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainVcpu {
    /// vCPU number.
    pub index: u32,
    /// xenstore's `cpu/N/availability` (`online`/`offline`), if present.
    pub availability: Option<String>,
    /// What the hypervisor says (placement, CPU time), when libxenctrl could be asked.
    pub info: Option<VcpuInfoView>,
}

/// [`VcpuInfo`] as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VcpuInfoView {
    /// Online.
    pub online: bool,
    /// Blocked waiting for an event.
    pub blocked: bool,
    /// Running now.
    pub running: bool,
    /// CPU time since the domain started, ns (`XEN_DOMCTL_getvcpuinfo`).
    pub cpu_time_ns: u64,
    /// The pCPU it is on or was last on.
    pub pcpu: u32,
}

impl From<VcpuInfo> for VcpuInfoView {
    fn from(i: VcpuInfo) -> VcpuInfoView {
        VcpuInfoView {
            online: i.online,
            blocked: i.blocked,
            running: i.running,
            cpu_time_ns: i.cpu_time_ns,
            pcpu: i.pcpu,
        }
    }
}

/// One domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    /// Its domid (0 is dom0).
    pub domid: u32,
    /// `/local/domain/N/name` (`Domain-0` for dom0).
    pub name: String,
    /// `/libxl/N/type` (`pv`, `pvh`, `hvm`), if libxl wrote it.
    pub kind: Option<String>,
    /// The device model's pid in dom0 (HVM: `/local/domain/N/image/device-model-pid`).
    pub device_model_pid: Option<i32>,
    /// Its vCPUs, by number.
    pub vcpus: Vec<DomainVcpu>,
}

impl Domain {
    /// CPU time of all vCPUs, ns, when the hypervisor was asked.
    pub fn cpu_time_ns(&self) -> Option<u64> {
        self.vcpus
            .iter()
            .map(|v| v.info.map(|i| i.cpu_time_ns))
            .sum()
    }
}

/// Where synthetic thread ids start (below it, downwards): far from perf's `-1` ("no
/// thread").
const TID_BASE: i64 = -(1 << 16);

/// The synthetic thread id of `vcpu` of domain `domid`: `-65536 - (domid * 4096 + vcpu)`,
/// negative, so never a dom0 thread nor perf's `-1`; `None` outside the id space (domid ≥
/// 0x7FF0 or vCPU ≥ [`MAX_VCPUS`]).
pub fn vcpu_tid(domid: u32, vcpu: u32) -> Option<i32> {
    if domid as usize >= MAX_DOMAINS || vcpu >= MAX_VCPUS {
        return None;
    }
    let t = TID_BASE - domid as i64 * MAX_VCPUS as i64 - vcpu as i64;
    i32::try_from(t).ok()
}

/// The (domid, vCPU) of a synthetic thread id made by [`vcpu_tid`].
pub fn vcpu_of_tid(tid: i32) -> Option<(u32, u32)> {
    let n = TID_BASE - tid as i64;
    if n < 0 {
        return None;
    }
    let n = n as u64;
    let (d, v) = (n / MAX_VCPUS as u64, n % MAX_VCPUS as u64);
    (d < MAX_DOMAINS as u64).then_some((d as u32, v as u32))
}

/// The domains in `store`, with each vCPU's placement and CPU time from `ctl` when given.
/// Nodes that are not numbers are skipped; a vCPU the hypervisor does not answer for keeps
/// `info: None`.
pub fn discover(store: &dyn Store, mut ctl: Option<&mut dyn VcpuSource>) -> Vec<Domain> {
    let mut ids: Vec<u32> = store
        .list("/local/domain")
        .iter()
        .filter_map(|n| n.parse().ok())
        .filter(|&d| (d as usize) < MAX_DOMAINS)
        .collect();
    ids.sort_unstable();
    let mut out = Vec::new();
    for domid in ids {
        let base = format!("/local/domain/{domid}");
        let name = store
            .read(&format!("{base}/name"))
            .unwrap_or_else(|| format!("domain-{domid}"));
        let mut idx: Vec<u32> = store
            .list(&format!("{base}/cpu"))
            .iter()
            .filter_map(|n| n.parse().ok())
            .filter(|&v| v < MAX_VCPUS)
            .collect();
        idx.sort_unstable();
        let vcpus = idx
            .into_iter()
            .map(|index| DomainVcpu {
                index,
                availability: store.read(&format!("{base}/cpu/{index}/availability")),
                info: ctl
                    .as_deref_mut()
                    .and_then(|c| c.vcpu_info(domid, index).ok())
                    .map(VcpuInfoView::from),
            })
            .collect();
        out.push(Domain {
            domid,
            name,
            kind: store.read(&format!("/libxl/{domid}/type")),
            device_model_pid: store
                .read(&format!("{base}/image/device-model-pid"))
                .and_then(|p| p.trim().parse().ok()),
            vcpus,
        });
    }
    out
}

/// Dom0 lists no `cpu/` nodes of its own in xenstore: its vCPUs are asked of the hypervisor
/// (vCPU 0, 1, ... until one is refused, at most `max`).
pub fn probe_vcpus(ctl: &mut dyn VcpuSource, d: &mut Domain, max: u32) {
    if !d.vcpus.is_empty() {
        return;
    }
    for index in 0..max.min(MAX_VCPUS) {
        match ctl.vcpu_info(d.domid, index) {
            Ok(i) => d.vcpus.push(DomainVcpu {
                index,
                availability: None,
                info: Some(i.into()),
            }),
            Err(_) => break,
        }
    }
}

/// The domain named `which`: a domid or a name.
pub fn find<'a>(domains: &'a [Domain], which: &str) -> Option<&'a Domain> {
    match which.parse::<u32>() {
        Ok(id) => domains.iter().find(|d| d.domid == id),
        Err(_) => domains.iter().find(|d| d.name == which),
    }
}

/// The guest machines of `domains` (dom0 only when `with_dom0`): one per domain, each vCPU
/// with its synthetic thread ([`vcpu_tid`]) named `vCPU N`.
pub fn to_machines(domains: &[Domain], with_dom0: bool) -> Machines {
    let mut m = Machines::new();
    for d in domains.iter().filter(|d| with_dom0 || d.domid != 0) {
        let mut g = GuestMachine::new(VmId::XenDomain(d.domid), d.name.clone());
        for v in &d.vcpus {
            let tid = vcpu_tid(d.domid, v.index);
            g.vcpus.push(Vcpu {
                index: v.index,
                tid,
            });
            if let Some(tid) = tid {
                g.threads.insert(
                    tid,
                    Thread {
                        tid,
                        name: format!("vCPU {}", v.index),
                        vcpu: Some(v.index),
                        tcg: false,
                    },
                );
            }
        }
        m.add(g);
    }
    m
}

/// The domains as `hvprof vms` prints them: one line per domain, one per vCPU with its
/// placement and CPU time.
pub fn render_text(domains: &[Domain]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for d in domains {
        let kind = d.kind.as_deref().unwrap_or("type unknown");
        let dm = d
            .device_model_pid
            .map(|p| format!(", device model pid {p}"))
            .unwrap_or_default();
        let cpu = d
            .cpu_time_ns()
            .map(|n| format!(", CPU time {:.2} s", n as f64 / 1e9))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "Xen domain {} ({}, domid {}, {kind}{dm}): {} vCPUs{cpu}",
            d.name,
            VmId::XenDomain(d.domid),
            d.domid,
            d.vcpus.len()
        );
        for v in &d.vcpus {
            let avail = v.availability.as_deref().unwrap_or("-");
            match v.info {
                Some(i) => {
                    let st = if i.running {
                        "running"
                    } else if i.blocked {
                        "blocked"
                    } else if i.online {
                        "runnable"
                    } else {
                        "offline"
                    };
                    let _ = writeln!(
                        s,
                        "  vCPU {} → pCPU {} ({st}, xenstore {avail}, CPU time {:.2} s)",
                        v.index,
                        i.pcpu,
                        i.cpu_time_ns as f64 / 1e9
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "  vCPU {} (xenstore {avail}; hypervisor not asked)",
                        v.index
                    );
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::abi::VcpuRegs;
    use crate::xen::error::{Result, XenError};
    use crate::xen::xenstore::MapStore;

    struct Table;
    impl VcpuSource for Table {
        fn vcpu_info(&mut self, domid: u32, vcpu: u32) -> Result<VcpuInfo> {
            if vcpu >= 2 {
                return Err(XenError::NoSuchDomain(format!("{domid}/{vcpu}")));
            }
            Ok(VcpuInfo {
                online: true,
                blocked: vcpu == 1,
                running: vcpu == 0,
                cpu_time_ns: 1_000 * (domid as u64 + 1) + vcpu as u64,
                pcpu: vcpu,
            })
        }
        fn vcpu_regs(&mut self, _: u32, _: u32) -> Result<VcpuRegs> {
            Ok(VcpuRegs::default())
        }
    }

    fn store() -> MapStore {
        MapStore::new([
            ("/local/domain/0/name", "Domain-0"),
            ("/local/domain/1/name", "domu"),
            ("/local/domain/1/cpu/0/availability", "online"),
            ("/local/domain/1/cpu/1/availability", "online"),
            ("/local/domain/1/cpu/2/availability", "offline"),
            ("/local/domain/7/name", "hvm7"),
            ("/local/domain/7/image/device-model-pid", "4242"),
            ("/local/domain/7/cpu/0/availability", "online"),
            ("/local/domain/junk/name", "x"),
            ("/libxl/1/type", "pv"),
        ])
    }

    #[test]
    fn domains_from_xenstore_with_placement() {
        let mut t = Table;
        let mut doms = discover(&store(), Some(&mut t));
        assert_eq!(doms.iter().map(|d| d.domid).collect::<Vec<_>>(), [0, 1, 7]);
        let d1 = &doms[1];
        assert_eq!(d1.name, "domu");
        assert_eq!(d1.kind.as_deref(), Some("pv"));
        assert_eq!(d1.vcpus.len(), 3);
        assert_eq!(d1.vcpus[1].info.map(|i| i.pcpu), Some(1));
        assert!(
            d1.vcpus[2].info.is_none(),
            "vCPU 2 refused by the hypervisor"
        );
        assert_eq!(d1.vcpus[2].availability.as_deref(), Some("offline"));
        assert_eq!(d1.cpu_time_ns(), None, "one vCPU without info");
        assert_eq!(doms[2].device_model_pid, Some(4242));
        assert_eq!(doms[2].cpu_time_ns(), Some(8000));
        probe_vcpus(&mut t, &mut doms[0], 64);
        assert_eq!(doms[0].vcpus.len(), 2);
        assert_eq!(find(&doms, "hvm7").map(|d| d.domid), Some(7));
        assert_eq!(find(&doms, "1").map(|d| d.name.as_str()), Some("domu"));
        assert!(find(&doms, "nope").is_none());
        let t = render_text(&doms[1..2]);
        assert!(
            t.starts_with("Xen domain domu (domain 1, domid 1, pv): 3 vCPUs"),
            "{t}"
        );
        assert!(
            t.contains("vCPU 1 → pCPU 1 (blocked, xenstore online, CPU time 0.00 s)"),
            "{t}"
        );
        assert!(
            t.contains("vCPU 2 (xenstore offline; hypervisor not asked)"),
            "{t}"
        );
    }

    #[test]
    fn machines_index_synthetic_vcpu_threads() {
        let doms = discover(&store(), None);
        let m = to_machines(&doms, false);
        assert!(m.guest(VmId::XenDomain(0)).is_none());
        let tid = vcpu_tid(1, 1).unwrap();
        let (g, t) = m.thread(tid).unwrap();
        assert_eq!(g.id, VmId::XenDomain(1));
        assert_eq!(t.and_then(|t| t.vcpu), Some(1));
        assert_eq!(vcpu_of_tid(tid), Some((1, 1)));
        assert_eq!(vcpu_of_tid(5), None);
        assert_eq!(vcpu_of_tid(-1), None);
        assert_eq!(vcpu_tid(0x7ff0, 0), None);
        assert_eq!(vcpu_tid(1, MAX_VCPUS), None);
        for (d, v) in [(0, 0), (0x7fef, MAX_VCPUS - 1), (3, 17)] {
            assert_eq!(vcpu_of_tid(vcpu_tid(d, v).unwrap()), Some((d, v)));
        }
    }
}
