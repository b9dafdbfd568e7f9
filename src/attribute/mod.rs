//! Attribution: which domain class each sample belongs to, and which symbol.
//!
//! Stage: records → **attribution** → aggregation. Input: a [`Sample`] and the [`Machines`];
//! output: an [`Attributed`] sample with its [`Class`] and [`Symbol`].
//!
//! [`Attributor::attribute`] is the one place that decides a sample's class: it asks
//! [`Machines::find_for_sample`] which machine's address space the IP is in, then the cpumode
//! and the thread (vCPU, emulator) decide the bucket. The report only turns `landing` samples
//! into [`Class::GuestHidden`] once the whole run shows the host hides guest IPs
//! ([`Class::effective`]).
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

mod class;
mod guest;
mod host;
mod kvm;
mod stack;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hvprof_perf::{CpuMode, Sample};
use hvprof_symbols::{ProcMaps, Symbolized, Symbolizer};

pub use class::{Attributed, Class, Symbol};
pub use guest::{guest_dso, guest_symbol};
pub use host::{HostSymbols, HostSymbolsState};
pub use kvm::{is_kvm_symbol, GUEST_LANDING_SYMBOLS, KVM_MODULES};

use rustc_hash::FxHashMap;

use crate::aggregate::{Aggregator, SymId};
use crate::model::{Address, HostVa, MachineRef, Machines};

/// Attributes samples; owns the host-side caches (ELF files, process maps) and reads the
/// [`Machines`] for everything about VMs.
#[derive(Debug)]
pub struct Attributor {
    host: HostSymbolsState,
    machines: Arc<Machines>,
    maps: HashMap<i32, ProcMaps>,
    symbolizer: Symbolizer,
    proc_root: std::path::PathBuf,
    maps_read_at: HashMap<i32, std::time::Instant>,
    user_cache: HashMap<(i32, u64), (Symbol, bool)>,
    recorded_maps: bool,
    /// [`Attributor::attribute_into`]'s cache: (tid, ip, cpumode) → what the sample counts
    /// as, with its symbol interned in the aggregator `fast_for`.
    fast: FxHashMap<FastKey, Counted>,
    fast_for: u64,
    /// Second level, for IPs not seen before: (space, symbol table, symbol start, cpumode or
    /// vCPU-thread flag) → what a sample there counts as. Guest and host kernel symbols are
    /// found by one binary search; their names are built once per symbol, not per IP.
    by_symbol: FxHashMap<SymbolKey, Counted>,
    /// A stack's caller frames, reused from sample to sample.
    frames: Vec<(Class, SymId)>,
    /// `--call-graph dwarf`: the user stack unwinder and its output buffer.
    unwinder: hvprof_symbols::Unwinder,
    user_ips: Vec<u64>,
    /// The `sample_regs_user` mask the samples were recorded with (which registers
    /// `PERF_SAMPLE_REGS_USER` holds, in bit order).
    regs_user_mask: u64,
}

/// [`Attributor::attribute_into`]'s first-level key: a sample's (thread, IP, cpumode), hashed
/// as two words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FastKey {
    tid: i32,
    ip: u64,
    mode: u8,
}

impl std::hash::Hash for FastKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.ip);
        h.write_u64((self.tid as u32 as u64) << 8 | u64::from(self.mode));
    }
}

/// What a sample counts as in an aggregator: class, landing, interned symbol.
pub(crate) type Counted = (Class, bool, SymId);

/// A symbol found without its name: (space, symbol table address, symbol start, cpumode or
/// vCPU-thread flag).
type SymbolKey = (u8, usize, u64, u8);

/// Entries of [`Attributor::attribute_into`]'s cache before it is cleared.
const FAST_CACHE_MAX: usize = 1 << 20;

/// Entries of the per-(pid, ip) VMM symbol cache before it is cleared.
const USER_CACHE_MAX: usize = 1 << 20;

impl Attributor {
    /// An attributor over `machines`, reading process maps under `proc_root` (normally /proc).
    pub fn new(host: HostSymbols, proc_root: &Path, machines: Arc<Machines>) -> Attributor {
        Attributor::with_host_state(HostSymbolsState::Ready(host), proc_root, machines)
    }

    /// An attributor whose host symbols may still be loading ([`HostSymbolsState`]).
    pub fn with_host_state(
        host: HostSymbolsState,
        proc_root: &Path,
        machines: Arc<Machines>,
    ) -> Attributor {
        Attributor {
            host,
            machines,
            maps: HashMap::new(),
            // Reports name functions, not source lines: no DWARF line tables to parse.
            symbolizer: Symbolizer::new().with_source_locations(false),
            proc_root: proc_root.to_path_buf(),
            maps_read_at: HashMap::new(),
            user_cache: HashMap::new(),
            recorded_maps: false,
            fast: FxHashMap::default(),
            fast_for: 0,
            by_symbol: FxHashMap::default(),
            frames: Vec::new(),
            unwinder: hvprof_symbols::Unwinder::new(),
            user_ips: Vec::new(),
            regs_user_mask: crate::counters::CallGraph::REGS_USER_MASK,
        }
    }

    /// Replaces the machines (VMs that started or exited during a live run).
    pub fn set_machines(&mut self, machines: Arc<Machines>) {
        self.machines = machines;
        self.fast.clear();
        self.by_symbol.clear();
    }

    /// The machines samples are attributed to.
    pub fn machines(&self) -> &Arc<Machines> {
        &self.machines
    }

    /// Report time: process mappings come only from the recording's MMAP/MMAP2 records
    /// ([`Attributor::add_mapping`]), never from this host's /proc.
    pub fn use_recorded_maps(&mut self) {
        self.recorded_maps = true;
    }

    /// A mapping of process `pid` (from an MMAP/MMAP2 record): replaces what it overlaps.
    pub fn add_mapping(&mut self, pid: i32, e: hvprof_symbols::MapEntry) {
        self.maps.entry(pid).or_default().insert(e);
        self.unwinder.invalidate(pid);
        self.fast.clear();
        if !self.user_cache.is_empty() {
            self.user_cache.retain(|(p, _), _| *p != pid);
        }
    }

    /// The `sample_regs_user` mask of the recording's attr (perf's own `--call-graph dwarf`
    /// files dump every register; hvprof's only BP, SP and IP).
    pub fn set_regs_user_mask(&mut self, mask: u64) {
        self.regs_user_mask = mask;
    }

    /// Makes sure process `pid`'s mappings are known: from /proc on a live run (once), never on
    /// a recording (its MMAP records are the truth).
    pub(crate) fn ensure_maps(&mut self, pid: i32) {
        if !self.recorded_maps && !self.maps.contains_key(&pid) {
            self.snapshot_maps(pid);
        }
    }

    /// Reads `/proc/PID/maps` now (at start, before the VM can go away).
    pub fn snapshot_maps(&mut self, pid: i32) {
        if let Ok(m) = ProcMaps::read_from(&self.proc_root, pid as u32) {
            self.maps.insert(pid, m);
            self.maps_read_at.insert(pid, std::time::Instant::now());
        }
    }

    /// The host kernel symbols (waiting for them if they are still loading).
    pub fn host(&mut self) -> &HostSymbols {
        self.host.get()
    }

    /// Attributes one sample and adds it to `agg`: the per-sample path of a session and of a
    /// report. A (thread, IP, cpumode) seen before costs one hash lookup; the first sight goes
    /// through [`Attributor::attribute`] (or a per-symbol cache for guest and kernel IPs).
    pub fn attribute_into(&mut self, s: &Sample, agg: &mut Aggregator) {
        let (class, landing, sym) = self.resolve(s, agg);
        agg.add_interned(s, class, landing, sym);
    }

    /// What sample `s` counts as in `agg` — class, landing, interned symbol — through the
    /// caches: the per-sample path of [`Attributor::attribute_into`] and of every frame of a
    /// stack.
    pub(crate) fn resolve(&mut self, s: &Sample, agg: &mut Aggregator) -> Counted {
        if self.fast_for != agg.identity() {
            self.fast.clear();
            self.by_symbol.clear();
            self.fast_for = agg.identity();
        }
        let key = FastKey {
            tid: s.tid,
            ip: s.ip,
            mode: s.cpumode as u8,
        };
        if let Some(&hit) = self.fast.get(&key) {
            return hit;
        }
        let sym_key = self.symbol_key(s);
        let hit = sym_key.and_then(|k| self.by_symbol.get(&k).copied());
        let (class, landing, sym, known) = match hit {
            Some((class, landing, sym)) => (class, landing, sym, true),
            None => {
                let a = self.attribute(s);
                let sym = agg.intern(&a.symbol);
                // Unresolved IPs are cached too when nothing can resolve them later: guest and
                // kernel ones, and any once the maps come only from a recording (a new
                // mapping clears the caches). A live VMM's maps may still grow (dlopen, JIT).
                let known =
                    a.symbol.addr.is_none() || s.cpumode != CpuMode::User || self.recorded_maps;
                if let (Some(k), true) = (sym_key, known) {
                    self.by_symbol.insert(k, (a.class, a.landing, sym));
                }
                (a.class, a.landing, sym, known)
            }
        };
        if known {
            if self.fast.len() >= FAST_CACHE_MAX {
                self.fast.clear();
            }
            self.fast.insert(key, (class, landing, sym));
        }
        (class, landing, sym)
    }

    /// The symbol a guest-mode or host-kernel sample falls in, as a cache key, found without
    /// building its name: (space, symbol table address, symbol start, cpumode / vCPU flag).
    /// `None` for host user space (its symbols come from ELF files, per process).
    fn symbol_key(&mut self, s: &Sample) -> Option<SymbolKey> {
        match s.cpumode {
            CpuMode::GuestKernel | CpuMode::GuestUser => {
                let machines = Arc::clone(&self.machines);
                let vm = match machines.find_for_sample(s) {
                    MachineRef::Guest(g) => Some(g),
                    _ => None,
                };
                let k = machines.guest_kernel_symbols(vm)?;
                let start = k.lookup(s.ip)?.addr;
                Some((1, k as *const _ as usize, start, s.cpumode as u8))
            }
            CpuMode::Kernel => {
                let vcpu = self
                    .machines
                    .thread(s.tid)
                    .and_then(|(_, t)| t)
                    .is_some_and(|t| t.vcpu.is_some());
                let k = self.host.get().kallsyms.as_ref()?;
                let start = k.lookup(s.ip)?.addr;
                Some((0, k as *const _ as usize, start, u8::from(vcpu)))
            }
            _ => None,
        }
    }

    /// Attributes one sample: its machine, then its class and symbol.
    pub fn attribute(&mut self, s: &Sample) -> Attributed {
        let machines = Arc::clone(&self.machines);
        let thread = machines.thread(s.tid).and_then(|(_, t)| t);
        let vcpu_thread = thread.is_some_and(|t| t.vcpu.is_some());
        // Translated guest code runs on a TCG vCPU thread: one named so, or any thread of an
        // emulated VM whose threads QEMU did not name (the sample itself says it: anonymous
        // executable memory, QEMU's code_gen_buffer).
        let tcg_thread = thread.is_some_and(|t| t.tcg)
            || machines.owner_of(s).is_some_and(|vm| {
                vm.emulated && thread.is_none_or(|t| t.vcpu.is_some() || !vm.has_named_vcpus())
            });
        let (class, symbol, landing) = match (machines.find_for_sample(s), Address::of_sample(s)) {
            (MachineRef::Guest(vm), Address::Guest(ip)) => (
                guest_class(s.cpumode),
                guest_symbol(&machines, Some(vm), ip, s.cpumode),
                false,
            ),
            (MachineRef::UnknownGuest, Address::Guest(ip)) => (
                guest_class(s.cpumode),
                guest_symbol(&machines, None, ip, s.cpumode),
                false,
            ),
            (_, addr) => {
                let ip = HostVa(addr.raw());
                match s.cpumode {
                    CpuMode::Kernel => self.host_kernel(ip, vcpu_thread),
                    CpuMode::User => {
                        let (sym, anonymous) = self.host_user(s);
                        if anonymous && tcg_thread {
                            (
                                Class::Emulation,
                                Symbol::named("[tcg translated code]", "[jit]"),
                                false,
                            )
                        } else {
                            (Class::Vmm, sym, false)
                        }
                    }
                    CpuMode::Hypervisor => (
                        Class::HypervisorXen,
                        Symbol::unknown(ip.0, "[hypervisor]", "no hypervisor symbols"),
                        false,
                    ),
                    CpuMode::Unknown | CpuMode::GuestKernel | CpuMode::GuestUser => (
                        Class::Unknown,
                        Symbol::unknown(ip.0, "[unknown]", "cpumode unknown"),
                        false,
                    ),
                }
            }
        };
        Attributed {
            sample: *s,
            class,
            symbol,
            landing,
        }
    }

    /// A host kernel IP: KVM or the rest of the host kernel; `landing` when a vCPU thread's
    /// sample sits in the guest-interrupt path.
    fn host_kernel(&mut self, ip: HostVa, vcpu_thread: bool) -> (Class, Symbol, bool) {
        let host = self.host.get();
        let Some(k) = &host.kallsyms else {
            let why = host
                .kallsyms_error
                .clone()
                .unwrap_or_else(|| "no host kallsyms".into());
            return (
                Class::HypervisorKernel,
                Symbol::unknown(ip.0, "[kernel.kallsyms]", why),
                false,
            );
        };
        match k.lookup(ip.0) {
            Some(ks) => {
                let class = if is_kvm_symbol(ks.name, ks.module) {
                    Class::HypervisorKvm
                } else {
                    Class::HypervisorKernel
                };
                let dso = match ks.module {
                    Some(m) => format!("[{m}]"),
                    None => "[kernel.kallsyms]".to_string(),
                };
                let landing = vcpu_thread && GUEST_LANDING_SYMBOLS.contains(&ks.name);
                (class, Symbol::named(ks.name, dso), landing)
            }
            None => (
                Class::HypervisorKernel,
                Symbol::unknown(ip.0, "[kernel.kallsyms]", "address outside host kallsyms"),
                false,
            ),
        }
    }

    /// The VMM symbol of a host-user sample, and whether it fell in anonymous memory; cached
    /// per (pid, ip) since hot loops repeat the same IPs. Unknown results are not cached, so a
    /// mapping that appears later is still found.
    fn host_user(&mut self, s: &Sample) -> (Symbol, bool) {
        // Host user space: `s.ip` is a host VA of process `s.pid`.
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
            if !self.recorded_maps && (!self.maps.contains_key(&pid) || refreshed) {
                if let Ok(m) = ProcMaps::read_from(&self.proc_root, pid as u32) {
                    self.maps.insert(pid, m);
                }
                self.maps_read_at.insert(pid, std::time::Instant::now());
            }
            let Some(maps) = self.maps.get(&pid) else {
                let why = if self.recorded_maps {
                    "no mapping of this process in the recording"
                } else {
                    "process maps unavailable (process gone)"
                };
                let sym = Symbol::unknown(s.ip, "[unknown]", why);
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
                    if !self.recorded_maps
                        && !refreshed
                        && stale
                        && matches!(reason, hvprof_symbols::Reason::Unmapped)
                    {
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
}

/// The class of a guest-tagged sample.
fn guest_class(cpumode: CpuMode) -> Class {
    if cpumode == CpuMode::GuestUser {
        Class::GuestUser
    } else {
        Class::GuestKernel
    }
}
