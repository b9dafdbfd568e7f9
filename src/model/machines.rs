//! [`Machines`]: the host and one guest machine per VM, keyed by [`VmId`].
//!
//! Built once per session from discovery (or from a recording's header) and read by every later
//! stage: attribution asks [`Machines::find_for_sample`] which machine's address space a
//! sample's IP is in and [`Machines::thread`] which VM and vCPU a thread is; the aggregator asks
//! the same index. Lookups by thread id are hash lookups, never scans.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hvprof_perf::Sample;
use hvprof_symbols::Kallsyms;
use serde::{Deserialize, Serialize};

/// A VM's identity: the key of its guest machine.
///
/// On KVM a VM is its VMM process (perf's `machine->pid`), on Xen a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "id")]
pub enum VmId {
    /// A KVM VM: the pid of the VMM process holding its `anon_inode:kvm-vm` fd.
    Vmm(i32),
    /// A Xen domain: its domid (`/local/domain/N` in xenstore).
    XenDomain(u32),
}

impl VmId {
    /// The VMM's pid, for a KVM VM.
    pub fn vmm_pid(self) -> Option<i32> {
        match self {
            VmId::Vmm(pid) => Some(pid),
            VmId::XenDomain(_) => None,
        }
    }
}

impl std::fmt::Display for VmId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmId::Vmm(pid) => write!(f, "pid {pid}"),
            VmId::XenDomain(d) => write!(f, "domain {d}"),
        }
    }
}

/// One vCPU: its index in the VM and the host thread that runs it, if found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vcpu {
    /// vCPU index (KVM's vcpu id, Xen's vcpu number).
    pub index: u32,
    /// The host thread running it (KVM: the VMM thread calling `KVM_RUN`).
    pub tid: Option<i32>,
}

/// A host thread of a VM (a vCPU thread or another VMM thread).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// Thread id.
    pub tid: i32,
    /// Its name (`/proc/TID/comm`).
    pub name: String,
    /// The vCPU it runs, if it is a vCPU thread.
    pub vcpu: Option<u32>,
    /// It is an emulator vCPU thread (QEMU TCG): its samples in anonymous executable memory are
    /// translated guest code.
    #[serde(default)]
    pub tcg: bool,
}

/// A guest machine: one VM as the host sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestMachine {
    /// Its key.
    pub id: VmId,
    /// Its name (QEMU `-name`, the domain name, or the VMM's command name).
    pub name: String,
    /// Its vCPUs, by index.
    pub vcpus: Vec<Vcpu>,
    /// Its host threads, by tid.
    pub threads: BTreeMap<i32, Thread>,
    /// The guest runs in an emulator (QEMU TCG): its vCPU threads' samples in anonymous
    /// executable memory are translated guest code.
    #[serde(default)]
    pub emulated: bool,
    /// The guest kernel's symbols (passive mode, `--guest-kallsyms`), if given.
    #[serde(skip)]
    pub kernel_symbols: Option<Arc<Kallsyms>>,
}

/// Equality of identity (id, name, vCPUs, threads); symbol sources are not compared.
impl PartialEq for GuestMachine {
    fn eq(&self, o: &Self) -> bool {
        (
            self.id,
            &self.name,
            &self.vcpus,
            &self.threads,
            self.emulated,
        ) == (o.id, &o.name, &o.vcpus, &o.threads, o.emulated)
    }
}

impl GuestMachine {
    /// A VM with no threads yet.
    pub fn new(id: VmId, name: impl Into<String>) -> GuestMachine {
        GuestMachine {
            id,
            name: name.into(),
            vcpus: Vec::new(),
            threads: BTreeMap::new(),
            emulated: false,
            kernel_symbols: None,
        }
    }

    /// The thread running vCPU `index`.
    pub fn vcpu_thread(&self, index: u32) -> Option<i32> {
        self.vcpus.iter().find(|v| v.index == index)?.tid
    }

    /// Whether any vCPU's thread is known (by name, debugfs or `KVM_RUN`).
    pub fn has_named_vcpus(&self) -> bool {
        self.vcpus.iter().any(|v| v.tid.is_some())
    }

    /// vCPU threads' ids, by vCPU index.
    pub fn vcpu_tids(&self) -> impl Iterator<Item = (u32, i32)> + '_ {
        self.vcpus.iter().filter_map(|v| Some((v.index, v.tid?)))
    }
}

/// Which machine's address space a sample's IP is in.
#[derive(Debug, Clone, Copy)]
pub enum MachineRef<'m> {
    /// The host (host kernel, a host process, the hypervisor below it).
    Host,
    /// A known guest machine.
    Guest(&'m GuestMachine),
    /// A guest-mode sample of no known VM: its IP is a guest address of an unknown guest. Never
    /// folded into some default guest (see ../shared/STYLE.md on perf's quiet fallback).
    UnknownGuest,
}

/// The host and its guests, with an index from thread id to VM.
#[derive(Debug, Clone, Default)]
pub struct Machines {
    guests: BTreeMap<VmId, GuestMachine>,
    by_tid: HashMap<i32, VmId>,
    by_vmm_pid: HashMap<i32, VmId>,
    /// Guest kernel symbols for every VM without its own (`--guest-kallsyms FILE` with no pid).
    default_guest_symbols: Option<Arc<Kallsyms>>,
}

impl Machines {
    /// No guests.
    pub fn new() -> Machines {
        Machines::default()
    }

    /// Adds (or replaces) a guest machine and indexes its threads.
    pub fn add(&mut self, vm: GuestMachine) {
        if let Some(old) = self.guests.remove(&vm.id) {
            self.by_tid.retain(|_, id| *id != old.id);
        }
        for &tid in vm.threads.keys() {
            self.by_tid.insert(tid, vm.id);
        }
        for (_, tid) in vm.vcpu_tids() {
            self.by_tid.insert(tid, vm.id);
        }
        if let Some(pid) = vm.id.vmm_pid() {
            self.by_vmm_pid.insert(pid, vm.id);
        }
        self.guests.insert(vm.id, vm);
    }

    /// Adds a thread to a known VM (a thread that appeared after discovery).
    pub fn add_thread(&mut self, vm: VmId, thread: Thread) {
        if let Some(g) = self.guests.get_mut(&vm) {
            self.by_tid.insert(thread.tid, vm);
            g.threads.insert(thread.tid, thread);
        }
    }

    /// Sets the guest kernel symbols of `vm`, or of every VM without its own when `None`.
    pub fn set_guest_kernel_symbols(&mut self, vm: Option<VmId>, syms: Arc<Kallsyms>) {
        match vm {
            Some(id) => {
                if let Some(g) = self.guests.get_mut(&id) {
                    g.kernel_symbols = Some(syms);
                } else {
                    // Symbols for a VM not (yet) discovered: keep them with an empty machine so
                    // a recording replayed later still finds them.
                    let mut g = GuestMachine::new(id, id.to_string());
                    g.kernel_symbols = Some(syms);
                    self.add(g);
                }
            }
            None => self.default_guest_symbols = Some(syms),
        }
    }

    /// The guest kernel symbols that apply to `vm` (its own, else the default), if any.
    pub fn guest_kernel_symbols<'a>(
        &'a self,
        vm: Option<&'a GuestMachine>,
    ) -> Option<&'a Kallsyms> {
        vm.and_then(|g| g.kernel_symbols.as_deref())
            .or(self.default_guest_symbols.as_deref())
    }

    /// Every guest machine, in [`VmId`] order.
    pub fn guests(&self) -> impl Iterator<Item = &GuestMachine> {
        self.guests.values()
    }

    /// The guest machine with this id.
    pub fn guest(&self, id: VmId) -> Option<&GuestMachine> {
        self.guests.get(&id)
    }

    /// The VM whose VMM process has this pid (KVM).
    pub fn vm_of_vmm_pid(&self, pid: i32) -> Option<&GuestMachine> {
        self.guests.get(self.by_vmm_pid.get(&pid)?)
    }

    /// The VM a host thread belongs to, and the thread's description.
    pub fn thread(&self, tid: i32) -> Option<(&GuestMachine, Option<&Thread>)> {
        let g = self.guests.get(self.by_tid.get(&tid)?)?;
        Some((g, g.threads.get(&tid)))
    }

    /// The VM a sample is accounted to: by its thread, else by its process (a VMM thread that
    /// appeared after discovery).
    pub fn owner_of(&self, s: &Sample) -> Option<&GuestMachine> {
        self.thread(s.tid)
            .map(|(g, _)| g)
            .or_else(|| self.vm_of_vmm_pid(s.pid))
    }

    /// Which machine's address space `s.ip` is in, as perf's `machines__find_for_cpumode`
    /// decides it: guest modes go to the guest machine of the sample's VM (by VMM pid, then by
    /// thread), every other mode to the host.
    pub fn find_for_sample(&self, s: &Sample) -> MachineRef<'_> {
        if !s.cpumode.is_guest() {
            return MachineRef::Host;
        }
        match self.owner_of(s) {
            Some(g) => MachineRef::Guest(g),
            None => MachineRef::UnknownGuest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvprof_perf::CpuMode;

    fn vm(pid: i32, vcpu_tids: &[i32], other: &[i32]) -> GuestMachine {
        let mut g = GuestMachine::new(VmId::Vmm(pid), format!("vm{pid}"));
        for (i, &tid) in vcpu_tids.iter().enumerate() {
            g.vcpus.push(Vcpu {
                index: i as u32,
                tid: Some(tid),
            });
            g.threads.insert(
                tid,
                Thread {
                    tid,
                    name: format!("CPU {i}/KVM"),
                    vcpu: Some(i as u32),
                    tcg: false,
                },
            );
        }
        for &tid in other {
            g.threads.insert(
                tid,
                Thread {
                    tid,
                    name: "qemu".into(),
                    vcpu: None,
                    tcg: false,
                },
            );
        }
        g
    }

    fn sample(cpumode: CpuMode, pid: i32, tid: i32) -> Sample {
        Sample {
            cpumode,
            pid,
            tid,
            ..Sample::default()
        }
    }

    #[test]
    fn routing_table_mirrors_machines_find_for_cpumode() {
        let mut m = Machines::new();
        m.add(vm(100, &[101, 102], &[100]));
        m.add(vm(200, &[201], &[]));
        let table = [
            // (cpumode, pid, tid) → expected machine (None = host, Some(0) = unknown guest)
            (CpuMode::Kernel, 100, 101, None),
            (CpuMode::User, 100, 100, None),
            (CpuMode::Hypervisor, 200, 201, None),
            (CpuMode::GuestKernel, 100, 101, Some(VmId::Vmm(100))),
            (CpuMode::GuestUser, 200, 201, Some(VmId::Vmm(200))),
            // A new VMM thread (not indexed) of a known VMM: found by pid.
            (CpuMode::GuestKernel, 100, 150, Some(VmId::Vmm(100))),
            // A guest sample of no known VM: unknown guest, not a default one.
            (
                CpuMode::GuestKernel,
                999,
                999,
                Some(VmId::XenDomain(u32::MAX)),
            ),
        ];
        for (mode, pid, tid, want) in table {
            let got = match m.find_for_sample(&sample(mode, pid, tid)) {
                MachineRef::Host => None,
                MachineRef::Guest(g) => Some(g.id),
                MachineRef::UnknownGuest => Some(VmId::XenDomain(u32::MAX)),
            };
            assert_eq!(got, want, "{mode:?} pid {pid} tid {tid}");
        }
        assert_eq!(m.thread(102).and_then(|(_, t)| t?.vcpu), Some(1));
        assert_eq!(
            m.owner_of(&sample(CpuMode::Kernel, 100, 101)).map(|g| g.id),
            Some(VmId::Vmm(100))
        );
        assert!(m.owner_of(&sample(CpuMode::Kernel, 1, 1)).is_none());
    }

    #[test]
    fn replacing_a_vm_reindexes_its_threads() {
        let mut m = Machines::new();
        m.add(vm(100, &[101], &[]));
        m.add(vm(100, &[103], &[]));
        assert!(m.thread(101).is_none());
        assert_eq!(m.thread(103).map(|(g, _)| g.id), Some(VmId::Vmm(100)));
        assert_eq!(VmId::XenDomain(3).to_string(), "domain 3");
        assert_eq!(
            serde_json::to_string(&VmId::Vmm(7)).unwrap(),
            r#"{"kind":"vmm","id":7}"#
        );
    }
}
