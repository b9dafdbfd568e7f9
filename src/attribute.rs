//! Attribution: which domain class each sample belongs to, and which symbol.
//!
//! Stage: records → **attribution** → report. Input: a [`Sample`] and the VM it came from;
//! output: an [`Attributed`] sample with its [`Class`] and [`Symbol`].
//!
//! The sample's cpumode decides the class, as `machines__find_for_cpumode` does in perf:
//! - host kernel → hypervisor, split into KVM code (modules kvm, kvm_intel, kvm_amd, kvm_pvm,
//!   or — for a KVM built into the kernel, as here — the symbol-name rule in
//!   [`is_kvm_symbol`]) and the rest of the host kernel;
//! - host user → the VMM (symbols from /proc/PID/maps and the mapped ELF files);
//! - `PERF_RECORD_MISC_GUEST_KERNEL` / `GUEST_USER` → guest kernel / guest user, resolved
//!   through the guest symbol map the user supplied for that VM (passive mode);
//! - `PERF_RECORD_MISC_HYPERVISOR` → the hypervisor below the host kernel (Xen).
//!
//! Hosts that hide guest IPs: when the kernel does not tag guest-mode samples (PVM, or VMX/SVM
//! without perf's guest callbacks), a vCPU thread's samples taken while the guest ran land in
//! the host at the hypervisor's guest-interrupt path ([`GUEST_LANDING_SYMBOLS`]). Such samples
//! are marked `landing`; the report counts them as guest time whose IP the host did not report
//! (class [`Class::GuestHidden`]) when the run shows the situation, and never invents an IP.

use std::collections::HashMap;
use std::path::Path;

use hvprof_symbols::{Kallsyms, ProcMaps, Symbolized, Symbolizer};
use serde::{Deserialize, Serialize};

use crate::record::{CpuMode, Sample};

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
    /// (see [`GUEST_LANDING_SYMBOLS`]): guest time when the host hides guest IPs.
    pub landing: bool,
}

/// Host kernel functions where a vCPU thread's samples land when the host takes a sampling
/// interrupt while the guest runs and does not report the guest IP:
/// PVM's `pvm_do_event_irqoff` (arch/x86/kvm/pvm/pvm.c), VMX's interrupt-dispatch after a
/// VM exit and its entry/exit path (arch/x86/kvm/vmx/vmenter.S, vmx.c), SVM's (svm/vmenter.S).
pub const GUEST_LANDING_SYMBOLS: &[&str] = &[
    "pvm_do_event_irqoff",
    "vmx_do_interrupt_irqoff",
    "vmx_do_interrupt_nmi_irqoff",
    "vmx_do_nmi_irqoff",
    "__vmx_vcpu_run",
    "vmx_vcpu_enter_exit",
    "__svm_vcpu_run",
    "svm_vcpu_enter_exit",
    "__svm_sev_es_vcpu_run",
];

/// KVM's loadable modules by name.
pub const KVM_MODULES: &[&str] = &["kvm", "kvm_intel", "kvm_amd", "kvm_pvm", "pvm"];

/// Whether a host kernel symbol is KVM code: in a KVM module, or — for a KVM built into the
/// kernel, whose symbols carry no module — named by KVM's conventions (`kvm*`, `__kvm*`, `pvm_*`,
/// `vmx_*`, `svm_*`, `vcpu_*`, the x86 instruction emulator `x86_emulate*`/`x86_decode*`/
/// `emulator_*`, its opcode handlers `em_*` and fetch/segment helpers, and the MMU's
/// `paging64_*`, `paging32_*`, `ept_*`, `tdp_*`, `mmu_*`).
/// The name rule is a heuristic; module membership is exact.
pub fn is_kvm_symbol(name: &str, module: Option<&str>) -> bool {
    if let Some(m) = module {
        return KVM_MODULES.contains(&m);
    }
    let n = name.trim_start_matches('_');
    const PREFIXES: &[&str] = &[
        "kvm",
        "pvm_",
        "vmx_",
        "svm_",
        "vcpu_",
        "x86_emulate",
        "x86_decode",
        "emulator_",
        "paging64_",
        "paging32_",
        "ept_",
        "nested_vmx",
        "nested_svm",
        "em_",
        "do_insn_fetch",
        "segmented_",
        "linearize",
        "tdp_",
        "mmu_",
        "fast_page_fault",
        "direct_page_fault",
    ];
    // Kernel code that shares those prefixes but is not the hypervisor: the MMU notifier
    // (mm/), the energy model (kernel/power), and a KVM *guest's* paravirtual code
    // (arch/x86/kernel/kvm.c, kvmclock.c), present whenever the host itself runs as a guest.
    const NOT_KVM: &[&str] = &[
        "mmu_notifier",
        "mmu_interval",
        "em_cpu",
        "em_dev",
        "em_pd",
        "em_perf",
        "kvm_sched_clock",
        "kvm_clock",
        "kvmclock",
        "kvm_guest",
        "kvm_steal",
        "kvm_para",
        "kvm_pv_",
        "kvm_async_pf_task",
        "kvm_read_and_reset_apf",
        "kvm_send_ipi",
        "kvm_smp_send",
        "kvm_flush_tlb",
        "kvm_wait",
        "kvm_kick_cpu",
        "kvm_cpu_online",
        "kvm_cpu_down",
        "kvm_crash",
        "kvm_io_delay",
        "kvm_setup",
        "kvm_spurious_fault",
        "kvm_save_sched_clock",
        "kvm_restore_sched_clock",
        "kvm_get_wallclock",
        "kvm_set_wallclock",
        "kvm_check_and_clear_guest_paused",
    ];
    PREFIXES.iter().any(|p| n.starts_with(p)) && !NOT_KVM.iter().any(|p| n.starts_with(p))
}

/// Host-side symbol context shared by all VMs.
#[derive(Debug, Default)]
pub struct HostSymbols {
    /// Host kernel symbols (`/proc/kallsyms`), if readable.
    pub kallsyms: Option<Kallsyms>,
    /// Why host kernel symbols are unavailable, if they are.
    pub kallsyms_error: Option<String>,
}

impl HostSymbols {
    /// Loads `/proc/kallsyms` (under `root`); failure is kept as a reason, not an error,
    /// because samples still count without names.
    pub fn load(root: &Path) -> HostSymbols {
        match Kallsyms::load(root.join("proc/kallsyms")) {
            Ok(k) => HostSymbols {
                kallsyms: Some(k),
                kallsyms_error: None,
            },
            Err(e) => HostSymbols {
                kallsyms: None,
                kallsyms_error: Some(crate::error_chain(&e)),
            },
        }
    }
}

/// Attributes samples; owns the caches (ELF files, process maps, guest symbol maps).
#[derive(Debug)]
pub struct Attributor {
    host: HostSymbols,
    guest: GuestMaps,
    maps: HashMap<i32, ProcMaps>,
    symbolizer: Symbolizer,
    proc_root: std::path::PathBuf,
    vcpu_tids: std::collections::HashSet<i32>,
    tcg_tids: std::collections::HashSet<i32>,
    maps_read_at: HashMap<i32, std::time::Instant>,
    user_cache: HashMap<(i32, u64), (Symbol, bool)>,
}

/// Entries of the per-(pid, ip) VMM symbol cache before it is cleared.
const USER_CACHE_MAX: usize = 1 << 20;

impl Attributor {
    /// An attributor using `host` kernel symbols and reading process maps under `proc_root`.
    pub fn new(host: HostSymbols, proc_root: &Path) -> Attributor {
        Attributor {
            host,
            guest: GuestMaps::default(),
            maps: HashMap::new(),
            symbolizer: Symbolizer::new(),
            proc_root: proc_root.to_path_buf(),
            vcpu_tids: Default::default(),
            tcg_tids: Default::default(),
            maps_read_at: HashMap::new(),
            user_cache: HashMap::new(),
        }
    }

    /// Registers the guest symbol map of the VM whose VMM is `vm_pid`, or of every VM without
    /// its own when None (passive mode).
    pub fn set_guest_symbols(&mut self, vm_pid: Option<i32>, syms: Kallsyms) {
        self.guest.set(vm_pid, syms);
    }

    /// Marks `tid` as a vCPU thread (only vCPU threads' samples can be guest landings).
    pub fn add_vcpu_thread(&mut self, tid: i32) {
        self.vcpu_tids.insert(tid);
    }

    /// Marks `tid` as a vCPU thread of an emulator (QEMU TCG, thread name `CPU n/TCG`): its
    /// host-user samples in anonymous executable memory are translated guest code, class
    /// [`Class::Emulation`].
    pub fn add_tcg_thread(&mut self, tid: i32) {
        self.tcg_tids.insert(tid);
    }

    /// Snapshots `/proc/PID/maps` now (call at start, while the VMM is alive).
    pub fn snapshot_maps(&mut self, pid: i32) {
        if let Ok(m) = ProcMaps::read_from(&self.proc_root, pid as u32) {
            self.maps.insert(pid, m);
            self.maps_read_at.insert(pid, std::time::Instant::now());
        }
    }

    /// The host kernel symbols, if loaded.
    pub fn host(&self) -> &HostSymbols {
        &self.host
    }

    /// Attributes one sample.
    pub fn attribute(&mut self, s: &Sample) -> Attributed {
        let (class, symbol, landing) = match s.cpumode {
            CpuMode::Kernel => self.host_kernel(s),
            CpuMode::User => {
                let (sym, anonymous) = self.host_user(s);
                if anonymous && self.tcg_tids.contains(&s.tid) {
                    (
                        Class::Emulation,
                        Symbol::named("[tcg translated code]", "[jit]"),
                        false,
                    )
                } else {
                    (Class::Vmm, sym, false)
                }
            }
            CpuMode::GuestKernel | CpuMode::GuestUser => {
                let class = if s.cpumode == CpuMode::GuestKernel {
                    Class::GuestKernel
                } else {
                    Class::GuestUser
                };
                (class, self.guest_symbol(s), false)
            }
            CpuMode::Hypervisor => (
                Class::HypervisorXen,
                Symbol::unknown(s.ip, "[hypervisor]", "no hypervisor symbols"),
                false,
            ),
            CpuMode::Unknown => (
                Class::Unknown,
                Symbol::unknown(s.ip, "[unknown]", "cpumode unknown"),
                false,
            ),
        };
        Attributed {
            sample: *s,
            class,
            symbol,
            landing,
        }
    }

    fn host_kernel(&self, s: &Sample) -> (Class, Symbol, bool) {
        let Some(k) = &self.host.kallsyms else {
            let why = self
                .host
                .kallsyms_error
                .clone()
                .unwrap_or_else(|| "no host kallsyms".into());
            return (
                Class::HypervisorKernel,
                Symbol::unknown(s.ip, "[kernel.kallsyms]", why),
                false,
            );
        };
        match k.lookup(s.ip) {
            Some(ks) => {
                let kvm = is_kvm_symbol(ks.name, ks.module);
                let class = if kvm {
                    Class::HypervisorKvm
                } else {
                    Class::HypervisorKernel
                };
                let dso = match ks.module {
                    Some(m) => format!("[{m}]"),
                    None => "[kernel.kallsyms]".to_string(),
                };
                let landing =
                    self.vcpu_tids.contains(&s.tid) && GUEST_LANDING_SYMBOLS.contains(&ks.name);
                (class, Symbol::named(ks.name, dso), landing)
            }
            None => (
                Class::HypervisorKernel,
                Symbol::unknown(s.ip, "[kernel.kallsyms]", "address outside host kallsyms"),
                false,
            ),
        }
    }

    /// The VMM symbol of a host-user sample, and whether it fell in anonymous memory; cached
    /// per (pid, ip) since hot loops repeat the same IPs. Unknown results are not cached, so a
    /// mapping that appears later is still found.
    fn host_user(&mut self, s: &Sample) -> (Symbol, bool) {
        if let Some(hit) = self.user_cache.get(&(s.pid, s.ip)) {
            return hit.clone();
        }
        let r = self.host_user_uncached(s);
        if r.0.addr.is_none() {
            if self.user_cache.len() >= USER_CACHE_MAX {
                self.user_cache.clear();
            }
            self.user_cache.insert((s.pid, s.ip), r.clone());
        }
        r
    }

    fn host_user_uncached(&mut self, s: &Sample) -> (Symbol, bool) {
        let pid = s.pid;
        let mut refreshed = false;
        loop {
            if !self.maps.contains_key(&pid) || refreshed {
                if let Ok(m) = ProcMaps::read_from(&self.proc_root, pid as u32) {
                    self.maps.insert(pid, m);
                }
                self.maps_read_at.insert(pid, std::time::Instant::now());
            }
            let Some(maps) = self.maps.get(&pid) else {
                let sym =
                    Symbol::unknown(s.ip, "[unknown]", "process maps unavailable (process gone)");
                return (sym, false);
            };
            match self.symbolizer.symbolize_user(maps, s.ip) {
                Symbolized::Sym(info) => return (Symbol::named(info.name, info.dso), false),
                Symbolized::Unknown(reason) => {
                    // A new mapping (dlopen, JIT) since the last snapshot: read the maps again,
                    // at most every 200 ms per process.
                    let stale = self
                        .maps_read_at
                        .get(&pid)
                        .is_none_or(|t| t.elapsed().as_millis() >= 200);
                    if !refreshed && stale && matches!(reason, hvprof_symbols::Reason::Unmapped) {
                        refreshed = true;
                        continue;
                    }
                    let dso = maps
                        .find(s.ip)
                        .and_then(|m| m.file_path())
                        .and_then(|p| p.file_name())
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "[unknown]".into());
                    let anonymous = matches!(reason, hvprof_symbols::Reason::AnonymousMemory);
                    return (Symbol::unknown(s.ip, dso, reason.to_string()), anonymous);
                }
            }
        }
    }

    fn guest_symbol(&self, s: &Sample) -> Symbol {
        self.guest.symbol(s)
    }
}

/// The DSO label of a guest symbol from a kallsyms-format map: `[guest.MODULE]`,
/// `[guest.user]` for a user-mode sample, else `[guest.kernel]`.
pub fn guest_dso(module: Option<&str>, cpumode: CpuMode) -> String {
    match (module, cpumode) {
        (Some(m), _) => format!("[guest.{m}]"),
        (None, CpuMode::GuestUser) => "[guest.user]".to_string(),
        (None, _) => "[guest.kernel]".to_string(),
    }
}

/// Guest symbol maps (passive mode): one per VM, and one for every VM without its own.
#[derive(Debug, Default, Clone)]
pub struct GuestMaps {
    per_vm: HashMap<i32, Kallsyms>,
    all: Option<Kallsyms>,
}

impl GuestMaps {
    /// Sets the map of VM `vm` (its VMM pid), or of every VM when `vm` is None.
    pub fn set(&mut self, vm: Option<i32>, syms: Kallsyms) {
        match vm {
            Some(pid) => {
                self.per_vm.insert(pid, syms);
            }
            None => self.all = Some(syms),
        }
    }

    /// True when no map is set.
    pub fn is_empty(&self) -> bool {
        self.per_vm.is_empty() && self.all.is_none()
    }

    /// The symbol of a guest-mode sample (`sample.pid` is the VMM): `[guest.kernel]`,
    /// `[guest.user]` or `[guest.MODULE]` when the VM's map covers the IP, else `[unknown]`
    /// with the guest address and why.
    pub fn symbol(&self, s: &Sample) -> Symbol {
        let Some(k) = self.per_vm.get(&s.pid).or(self.all.as_ref()) else {
            let why = if s.cpumode == CpuMode::GuestUser {
                "guest user code: needs active mode (hvprof-guest) or a guest symbol map"
            } else {
                "no guest symbol map for this VM (--guest-kallsyms)"
            };
            return Symbol::unknown(s.ip, "[guest]", why);
        };
        match k.lookup(s.ip) {
            Some(ks) => Symbol::named(ks.name, guest_dso(ks.module, s.cpumode)),
            None => Symbol::unknown(s.ip, "[guest]", "address outside the guest symbol map"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_symbol_rule() {
        let yes = [
            ("kvm_arch_vcpu_ioctl_run", None),
            ("__kvm_set_memory_region", None),
            ("pvm_do_event_irqoff", None),
            ("vmx_vcpu_run", None),
            ("x86_emulate_insn", None),
            ("paging64_walk_addr_generic", None),
            ("vcpu_enter_guest", None),
            ("handle_exception_nmi", Some("kvm_intel")),
            ("anything", Some("kvm")),
        ];
        for (n, m) in yes {
            assert!(is_kvm_symbol(n, m), "{n}");
        }
        let no = [
            ("__mmu_notifier_invalidate_range_start", None),
            ("em_cpu_get", None),
            ("kvm_sched_clock_read", None),
            ("kvm_steal_clock", None),
            ("schedule", None),
            ("do_syscall_64", None),
            ("emulate_vsyscall", None),
            ("foo", Some("ext4")),
        ];
        for (n, m) in no {
            assert!(!is_kvm_symbol(n, m), "{n}");
        }
    }
}
