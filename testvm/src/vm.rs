//! VM creation, vCPU threads, exit handling and stopping.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::thread::JoinHandleExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_fpu, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use crate::layout::{self, ctl_addr, kvm_segment_from_gdt};
use crate::payload::{self, CTL_FLAGS, CTL_PORT, CTL_PROGRESS, CTL_UNIT};
use crate::{Error, Privilege, TestVmConfig, Workload};

/// How long [`RunningVm::stop`] keeps kicking vCPU threads before giving up.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval between kicks of a vCPU thread that has not left its run loop.
const KICK_INTERVAL: Duration = Duration::from_micros(500);

fn ioctl(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |e| Error::Ioctl {
        op,
        source: io::Error::from_raw_os_error(e.errno()),
    }
}

/// The signal used to kick vCPU threads out of `KVM_RUN`: `SIGRTMIN()`, the
/// same choice as cloud-hypervisor and Firecracker.
///
/// [`TestVm::start`] installs a no-op handler for it (without `SA_RESTART`)
/// unless the process already handles it; its default action would kill the
/// process. A signal arriving during `KVM_RUN` makes the ioctl fail with
/// `EINTR` (KVM API doc, `KVM_RUN`).
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

extern "C" fn kick_handler(_signum: libc::c_int) {}

fn install_kick_handler() -> Result<(), Error> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let sig = kick_signal();
    let res = INSTALLED.get_or_init(|| {
        // SAFETY: an all-zero `sigaction` is a valid value (empty mask, no
        // flags, SIG_DFL); it is only read by the kernel below.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying the current action with a null `act` only writes
        // to `old`, a valid `sigaction`.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
            // Someone else handles it already: any handler interrupts KVM_RUN.
            return Ok(());
        }
        // SAFETY: as above, all-zero is a valid `sigaction`.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = kick_handler as *const () as libc::sighandler_t;
        act.sa_flags = 0; // no SA_RESTART, no SA_SIGINFO
                          // SAFETY: `act.sa_mask` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        // SAFETY: `act` is fully initialised and `kick_handler` is an
        // async-signal-safe `extern "C" fn(c_int)` that does nothing.
        if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(())
    });
    res.map_err(|errno| Error::Signal {
        signal: sig,
        source: io::Error::from_raw_os_error(errno),
    })
}

/// Anonymous private mapping backing guest physical memory from GPA 0.
struct GuestMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; all accesses after
// setup go through volatile reads/writes of aligned u64s, which are sound to
// perform from any thread (the guest writes the same memory concurrently, as
// another CPU would).
unsafe impl Send for GuestMemory {}
// SAFETY: see `Send`: shared access only uses volatile aligned u64 accesses.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    fn new(bytes: u64) -> Result<Self, Error> {
        let len = bytes as usize;
        // SAFETY: anonymous mapping request with no address hint; the result
        // is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::Mmap {
                bytes,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| Error::Mmap {
            bytes,
            source: io::Error::other("mmap returned NULL"),
        })?;
        Ok(GuestMemory { ptr, len })
    }

    fn check(&self, gpa: u64, len: usize) {
        assert!(
            gpa as usize <= self.len && len <= self.len - gpa as usize,
            "guest range {gpa:#x}+{len:#x} outside {:#x} bytes of guest memory",
            self.len
        );
    }

    /// Copies `bytes` to guest physical address `gpa`. Only used while
    /// building the image, before any vCPU runs.
    fn write_bytes(&self, gpa: u64, bytes: &[u8]) {
        self.check(gpa, bytes.len());
        // SAFETY: the range was bounds-checked against our mapping, `bytes`
        // cannot overlap it (it is Rust-owned memory), and no vCPU runs yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(gpa as usize),
                bytes.len(),
            )
        };
    }

    fn write_u64(&self, gpa: u64, val: u64) {
        self.check(gpa, 8);
        assert_eq!(gpa % 8, 0);
        // SAFETY: in bounds (checked), 8-aligned (the mapping is page
        // aligned), and volatile because the guest may access it concurrently.
        unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(gpa as usize).cast::<u64>(), val) };
    }

    fn read_u64(&self, gpa: u64) -> u64 {
        self.check(gpa, 8);
        assert_eq!(gpa % 8, 0);
        // SAFETY: in bounds, aligned, volatile as for `write_u64`.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(gpa as usize).cast::<u64>()) }
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mmap returned; no references
        // into it outlive `self` (all accesses copy values out).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Per-vCPU state shared between the vCPU thread and the controller.
#[derive(Default)]
struct VcpuShared {
    io: AtomicU64,
    hlt: AtomicU64,
    other: AtomicU64,
    failure: Mutex<Option<String>>,
    exited: AtomicBool,
}

/// State shared by all vCPU threads. Field order matters for drop: the VM
/// fd is closed before guest memory is unmapped.
struct Shared {
    _vm: VmFd,
    mem: GuestMemory,
    stop: AtomicBool,
    vcpus: Vec<VcpuShared>,
}

/// Number of VM exits a vCPU took, by kind, as counted by its host thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitCounts {
    /// `KVM_EXIT_IO` exits (port `out` and `in`).
    pub io: u64,
    /// `KVM_EXIT_HLT` exits.
    pub hlt: u64,
    /// Any other non-fatal exit (MMIO, unexpected but harmless reasons).
    /// Signal kicks (`KVM_RUN` failing with `EINTR`) are not counted.
    pub other: u64,
}

/// Final (or snapshot) state of one vCPU.
#[derive(Debug, Clone, PartialEq)]
pub struct VcpuSummary {
    /// vCPU index (the value the guest got in `rdi`).
    pub index: usize,
    /// Host thread id (`gettid`) of the vCPU thread `vcpu<index>`.
    pub tid: i32,
    /// Completed rounds of `vcpu_main` (guest-written counter).
    pub progress: u64,
    /// Exits handled by the host thread.
    pub exits: ExitCounts,
    /// Guest-measured TSC ticks per hot function over the whole run, as
    /// `(name, ticks)` for `hot_loop_a`, `hot_loop_b`, `hot_loop_c`. Raw
    /// sums: they include time the vCPU thread was descheduled on the host.
    pub function_tsc: Vec<(&'static str, u64)>,
    /// Guest-measured time split, see [`RunningVm::measured_shares`].
    pub measured_shares: Vec<(&'static str, f64)>,
    /// Why the vCPU stopped early, if it failed.
    pub failure: Option<String>,
}

/// Fewest undisturbed rounds [`robust_shares`] needs.
const MIN_ROUNDS: usize = 16;

/// Shares from the round history: rounds whose total TSC exceeds 1.5 × the
/// median round are dropped (the vCPU thread was descheduled or the host
/// stalled in them; the TSC kept counting), the rest are summed per call slot.
fn robust_shares(vcpu: usize, rounds: &[[u64; 2]]) -> Option<Vec<(&'static str, f64)>> {
    if rounds.len() < MIN_ROUNDS {
        return None;
    }
    let mut totals: Vec<u64> = rounds.iter().map(|r| r[0] + r[1]).collect();
    totals.sort_unstable();
    let limit = totals[totals.len() / 2].saturating_mul(3) / 2;
    let kept: Vec<&[u64; 2]> = rounds.iter().filter(|r| r[0] + r[1] <= limit).collect();
    if kept.len() < MIN_ROUNDS {
        return None;
    }
    let sums = [
        kept.iter().map(|r| r[0]).sum::<u64>(),
        kept.iter().map(|r| r[1]).sum::<u64>(),
    ];
    let total = sums[0] + sums[1];
    if total == 0 {
        return None;
    }
    Some(
        payload::expected_shares(vcpu)
            .iter()
            .zip(sums)
            .map(|((name, _), t)| (*name, t as f64 / total as f64))
            .collect(),
    )
}

fn shares_from_tsc(vcpu: usize, tsc: &[(&'static str, u64)]) -> Vec<(&'static str, f64)> {
    let expected = payload::expected_shares(vcpu);
    let ticks = |name: &str| tsc.iter().find(|(n, _)| *n == name).map_or(0, |(_, t)| *t);
    let total: u64 = expected.iter().map(|(n, _)| ticks(n)).sum();
    expected
        .iter()
        .map(|(n, _)| {
            let share = if total == 0 {
                0.0
            } else {
                ticks(n) as f64 / total as f64
            };
            (*n, share)
        })
        .collect()
}

/// What a test VM did, returned by [`RunningVm::stop`] and
/// [`crate::run_foreground`].
#[derive(Debug, Clone, PartialEq)]
pub struct VmSummary {
    /// The configuration it ran with.
    pub config: TestVmConfig,
    /// Wall-clock time from the vCPU threads being started to them having
    /// stopped (or to the snapshot).
    pub elapsed: Duration,
    /// Per-vCPU results, indexed by vCPU.
    pub vcpus: Vec<VcpuSummary>,
}

/// Entry point: creates and starts test VMs.
#[derive(Debug)]
pub struct TestVm;

impl TestVm {
    /// Creates the VM described by `cfg`, loads the payload, and starts one
    /// thread per vCPU (named `vcpu0`, `vcpu1`, ...). Returns once every
    /// thread has started and reported its thread id; the guest is running.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidConfig`] if `cfg` does not [validate](TestVmConfig::validate)
    ///   or asks for more vCPUs than KVM supports.
    /// - [`Error::NoKvm`] if [`TestVmConfig::kvm_path`] cannot be opened.
    /// - [`Error::Ioctl`] if any KVM ioctl fails (`KVM_CREATE_VM`,
    ///   `KVM_SET_USER_MEMORY_REGION`, `KVM_GET_SUPPORTED_CPUID`,
    ///   `KVM_CREATE_VCPU`, `KVM_SET_CPUID2`, `KVM_GET_SREGS`,
    ///   `KVM_SET_SREGS`, `KVM_SET_REGS`, `KVM_SET_FPU`).
    /// - [`Error::Mmap`], [`Error::Signal`], [`Error::Thread`] for host
    ///   resource failures.
    pub fn start(cfg: TestVmConfig) -> Result<RunningVm, Error> {
        cfg.validate()?;
        let path = CString::new(cfg.kvm_path.as_os_str().as_bytes()).map_err(|_| {
            Error::InvalidConfig {
                reason: format!("kvm_path {:?} contains a NUL byte", cfg.kvm_path),
            }
        })?;
        let kvm = Kvm::new_with_path(&path).map_err(|e| Error::NoKvm {
            path: cfg.kvm_path.clone(),
            source: io::Error::from_raw_os_error(e.errno()),
        })?;
        let max = kvm.get_max_vcpus();
        if cfg.vcpus > max {
            return Err(Error::InvalidConfig {
                reason: format!("vcpus = {}: KVM supports at most {max}", cfg.vcpus),
            });
        }
        install_kick_handler()?;

        let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        let mem = GuestMemory::new(cfg.mem_bytes)?;
        build_image(&mem, &cfg);
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: cfg.mem_bytes,
            userspace_addr: mem.ptr.as_ptr() as u64,
        };
        // SAFETY: the region is our own anonymous mapping of exactly
        // `mem_bytes` bytes. It moves into `Shared` next to the VM fd, which is
        // declared first and so closed first; vCPU fds live in threads that
        // hold an `Arc<Shared>`, so the memory outlives every running vCPU.
        // On the early-return paths below no vCPU has run yet, so nothing
        // touches the slot after the mapping is dropped.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;

        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        let mut vcpu_fds = Vec::with_capacity(cfg.vcpus);
        for index in 0..cfg.vcpus {
            let vcpu = vm
                .create_vcpu(index as u64)
                .map_err(ioctl("KVM_CREATE_VCPU"))?;
            setup_vcpu(&vcpu, index, &cfg, &cpuid)?;
            vcpu_fds.push(vcpu);
        }

        let shared = Arc::new(Shared {
            _vm: vm,
            mem,
            stop: AtomicBool::new(false),
            vcpus: (0..cfg.vcpus).map(|_| VcpuShared::default()).collect(),
        });
        let mut running = RunningVm {
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(cfg.vcpus),
            tids: vec![0; cfg.vcpus],
            started: Instant::now(),
            cfg,
        };
        let (tx, rx) = mpsc::channel::<(usize, i32)>();
        for (index, vcpu) in vcpu_fds.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let tx = tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || vcpu_thread(index, vcpu, &shared, tx))
                .map_err(|source| Error::Thread {
                    vcpu: index,
                    source,
                });
            match handle {
                Ok(h) => running.threads.push(Some(h)),
                // Dropping `running` stops the threads already started.
                Err(e) => return Err(e),
            }
        }
        drop(tx);
        for _ in 0..running.cfg.vcpus {
            match rx.recv() {
                Ok((index, tid)) => running.tids[index] = tid,
                Err(_) => break, // a thread died before reporting; stop() reports it
            }
        }
        running.started = Instant::now();
        Ok(running)
    }
}

/// Writes page tables, GDT, TSS, text and control blocks into guest memory.
fn build_image(mem: &GuestMemory, cfg: &TestVmConfig) {
    for (addr, table) in layout::page_tables() {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_bytes(addr, &bytes);
    }
    let gdt: Vec<u8> = layout::gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_bytes(layout::GDT_ADDR, &gdt);
    mem.write_bytes(layout::TSS_ADDR, &layout::tss());
    mem.write_bytes(payload::TEXT_BASE, &payload::text_image());
    let (flags, port) = match cfg.workload {
        Workload::Compute => (0, 0),
        Workload::PortIo { port } => (payload::FLAG_OUT, u64::from(port)),
        Workload::Halt => (payload::FLAG_HLT, 0),
    };
    for index in 0..cfg.vcpus {
        let ctl = ctl_addr(index);
        mem.write_u64(ctl + CTL_FLAGS, flags);
        mem.write_u64(ctl + CTL_PORT, port);
        mem.write_u64(ctl + CTL_UNIT, cfg.effective_unit_iterations());
        mem.write_u64(ctl + payload::CTL_HIST, layout::hist_addr(index));
    }
}

/// Sets CPUID, special registers (long mode, segments), general registers
/// and FPU state of vCPU `index` so that it starts at `vcpu_main`.
fn setup_vcpu(vcpu: &VcpuFd, index: usize, cfg: &TestVmConfig, cpuid: &CpuId) -> Result<(), Error> {
    let mut cpuid = cpuid.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            // Initial APIC ID in CPUID.1:EBX[31:24] (Intel SDM Vol. 2A, CPUID).
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | ((index as u32 & 0xff) << 24),
            // x2APIC ID in CPUID.0BH/1FH:EDX.
            0xb | 0x1f => e.edx = index as u32,
            _ => {}
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;

    let mut sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    let gdt = layout::gdt();
    let (code, data) = match cfg.privilege {
        Privilege::Ring3 => (
            kvm_segment_from_gdt(gdt[4], layout::SEL_USER_CS),
            kvm_segment_from_gdt(gdt[3], layout::SEL_USER_DS),
        ),
        Privilege::Ring0 => (
            kvm_segment_from_gdt(gdt[1], layout::SEL_KERNEL_CS),
            kvm_segment_from_gdt(gdt[2], layout::SEL_KERNEL_DS),
        ),
    };
    sregs.cs = code;
    sregs.ss = data;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.tr = kvm_segment_from_gdt(gdt[5], layout::SEL_TSS);
    sregs.ldt.selector = 0;
    sregs.ldt.unusable = 1;
    sregs.ldt.present = 0;
    sregs.gdt.base = layout::GDT_ADDR;
    sregs.gdt.limit = layout::GDT_LIMIT;
    // No IDT: any exception escalates to a triple fault (KVM_EXIT_SHUTDOWN).
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = layout::CR0;
    sregs.cr3 = layout::PML4_ADDR;
    sregs.cr4 = layout::CR4;
    sregs.efer = layout::EFER;
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))?;

    let regs = kvm_bindings::kvm_regs {
        rip: payload::VCPU_MAIN,
        rsp: layout::stack_top(index),
        rdi: index as u64,
        rsi: ctl_addr(index),
        rflags: match cfg.privilege {
            Privilege::Ring3 => layout::RFLAGS_RING3,
            Privilege::Ring0 => layout::RFLAGS_RING0,
        },
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))?;
    Ok(())
}

/// Owned summary of one `KVM_RUN` outcome (so the `VcpuExit` borrow of the
/// vCPU ends before we inspect registers).
enum Outcome {
    Io,
    Hlt,
    Other,
    Interrupted,
    Fatal(String),
}

fn vcpu_thread(index: usize, mut vcpu: VcpuFd, shared: &Shared, tx: mpsc::Sender<(usize, i32)>) {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    // The receiver may be gone if start() failed; then stop is already set.
    let _ = tx.send((index, tid));
    drop(tx);
    let st = &shared.vcpus[index];
    let failure = loop {
        if shared.stop.load(Ordering::Acquire) {
            break None;
        }
        let outcome = match vcpu.run() {
            Ok(VcpuExit::IoOut(..)) => Outcome::Io,
            Ok(VcpuExit::IoIn(_, data)) => {
                data.fill(0xff); // nothing is emulated: read all-ones
                Outcome::Io
            }
            Ok(VcpuExit::Hlt) => Outcome::Hlt,
            Ok(VcpuExit::MmioRead(_, data)) => {
                data.fill(0xff);
                Outcome::Other
            }
            Ok(VcpuExit::MmioWrite(..)) | Ok(VcpuExit::IrqWindowOpen) | Ok(VcpuExit::Intr) => {
                Outcome::Other
            }
            Ok(VcpuExit::Shutdown) => {
                Outcome::Fatal("KVM_EXIT_SHUTDOWN (guest triple fault)".into())
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => Outcome::Fatal(format!(
                "KVM_EXIT_FAIL_ENTRY: hardware_entry_failure_reason {reason:#x} on host cpu {cpu}"
            )),
            Ok(VcpuExit::InternalError) => Outcome::Fatal("KVM_EXIT_INTERNAL_ERROR".into()),
            Ok(other) => Outcome::Fatal(format!("unexpected exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Outcome::Interrupted,
            Err(e) => Outcome::Fatal(format!("KVM_RUN failed: {e}")),
        };
        match outcome {
            Outcome::Io => {
                st.io.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Hlt => {
                st.hlt.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Other => {
                st.other.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Interrupted => {}
            Outcome::Fatal(mut reason) => {
                if reason == "KVM_EXIT_INTERNAL_ERROR" {
                    // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so the
                    // kernel filled the `internal` member of the union.
                    let internal = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal };
                    reason.push_str(&format!(
                        " (suberror {}, data {:x?})",
                        internal.suberror,
                        &internal.data[..(internal.ndata as usize).min(internal.data.len())]
                    ));
                }
                if let Ok(regs) = vcpu.get_regs() {
                    let sym = payload::symbol_at(regs.rip)
                        .map(|s| format!(" <{}+{:#x}>", s.name, regs.rip - s.addr))
                        .unwrap_or_default();
                    reason.push_str(&format!(
                        " at rip {:#x}{sym}, rsp {:#x}, rflags {:#x}",
                        regs.rip, regs.rsp, regs.rflags
                    ));
                }
                break Some(reason);
            }
        }
    };
    if let Some(reason) = failure {
        if let Ok(mut f) = st.failure.lock() {
            *f = Some(reason);
        }
    }
    st.exited.store(true, Ordering::Release);
}

/// A started test VM. Dropping it stops it (like [`RunningVm::stop`], but
/// discarding the summary and errors).
pub struct RunningVm {
    shared: Arc<Shared>,
    /// `None` once joined or detached.
    threads: Vec<Option<JoinHandle<()>>>,
    tids: Vec<i32>,
    started: Instant,
    cfg: TestVmConfig,
}

impl std::fmt::Debug for RunningVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningVm")
            .field("pid", &self.pid())
            .field("tids", &self.tids)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RunningVm {
    /// The VMM's process id: the current process (`getpid`).
    pub fn pid(&self) -> i32 {
        std::process::id() as i32
    }

    /// Host thread ids of the vCPU threads, indexed by vCPU. All threads have
    /// started by the time [`TestVm::start`] returns, so this never blocks.
    /// An entry is 0 only if that thread died before reporting (see
    /// [`RunningVm::failure`]).
    pub fn vcpu_tids(&self) -> Vec<i32> {
        self.tids.clone()
    }

    /// The configuration the VM was started with.
    pub fn config(&self) -> &TestVmConfig {
        &self.cfg
    }

    /// Number of vCPUs.
    pub fn vcpus(&self) -> usize {
        self.cfg.vcpus
    }

    fn ctl(&self, vcpu: usize) -> u64 {
        assert!(
            vcpu < self.cfg.vcpus,
            "vCPU {vcpu} out of range (VM has {})",
            self.cfg.vcpus
        );
        ctl_addr(vcpu)
    }

    /// Completed rounds of `vcpu_main` on vCPU `vcpu`, read from the
    /// guest's progress counter (control block offset
    /// [`payload::CTL_PROGRESS`]).
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn progress(&self, vcpu: usize) -> u64 {
        self.shared.mem.read_u64(self.ctl(vcpu) + CTL_PROGRESS)
    }

    /// Exits handled so far for vCPU `vcpu`.
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn exits(&self, vcpu: usize) -> ExitCounts {
        self.ctl(vcpu);
        let s = &self.shared.vcpus[vcpu];
        ExitCounts {
            io: s.io.load(Ordering::Relaxed),
            hlt: s.hlt.load(Ordering::Relaxed),
            other: s.other.load(Ordering::Relaxed),
        }
    }

    /// Guest-measured TSC ticks spent in each hot function on vCPU `vcpu`
    /// (accumulated by the guest's `timed_call`), as `(name, ticks)`.
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn function_tsc(&self, vcpu: usize) -> Vec<(&'static str, u64)> {
        let ctl = self.ctl(vcpu);
        vec![
            (
                "hot_loop_a",
                self.shared.mem.read_u64(ctl + payload::CTL_TSC_A),
            ),
            (
                "hot_loop_b",
                self.shared.mem.read_u64(ctl + payload::CTL_TSC_B),
            ),
            (
                "hot_loop_c",
                self.shared.mem.read_u64(ctl + payload::CTL_TSC_C),
            ),
        ]
    }

    /// The completed rounds still in vCPU `vcpu`'s history ring (up to
    /// [`payload::HIST_LEN`] − 1, oldest first), each as the TSC ticks of the
    /// round's two hot-function calls: `[a, 0]` on even vCPUs, `[b, c]` on odd
    /// ones. Rounds the guest overwrote while they were being read are left
    /// out.
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn round_tsc(&self, vcpu: usize) -> Vec<[u64; 2]> {
        let ctl = self.ctl(vcpu);
        let hist = layout::hist_addr(vcpu);
        let mem = &self.shared.mem;
        let p1 = mem.read_u64(ctl + CTL_PROGRESS);
        let raw: Vec<[u64; 2]> = (0..payload::HIST_LEN)
            .map(|slot| {
                let e = hist + slot * payload::HIST_ENTRY;
                [mem.read_u64(e), mem.read_u64(e + 8)]
            })
            .collect();
        let p2 = mem.read_u64(ctl + CTL_PROGRESS);
        // Round r lives in slot r % HIST_LEN and is complete once progress > r;
        // rounds p1..=p2 may have been written during the copy, which
        // clobbers rounds r with r + HIST_LEN <= p2.
        let lo = (p2 + 1).saturating_sub(payload::HIST_LEN);
        (lo..p1)
            .map(|r| raw[(r % payload::HIST_LEN) as usize])
            .collect()
    }

    /// The guest-measured time split of vCPU `vcpu` over the functions of
    /// [`crate::expected_shares`]`(vcpu)`, as fractions summing to 1.
    ///
    /// Computed from [`RunningVm::round_tsc`], ignoring rounds longer than
    /// 1.5 × the median round (the host descheduled the vCPU thread during
    /// them, and the TSC kept counting). With fewer than 16 usable rounds it
    /// falls back to the raw [`RunningVm::function_tsc`] sums; all 0 before
    /// the first measured call completes.
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn measured_shares(&self, vcpu: usize) -> Vec<(&'static str, f64)> {
        robust_shares(vcpu, &self.round_tsc(vcpu))
            .unwrap_or_else(|| shares_from_tsc(vcpu, &self.function_tsc(vcpu)))
    }

    /// Why vCPU `vcpu` stopped, if it failed (it then no longer runs).
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn failure(&self, vcpu: usize) -> Option<String> {
        self.ctl(vcpu);
        self.shared.vcpus[vcpu]
            .failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether any vCPU has failed.
    pub fn any_failed(&self) -> bool {
        (0..self.cfg.vcpus).any(|v| self.failure(v).is_some())
    }

    /// A snapshot of every vCPU's state while the VM keeps running.
    pub fn summary(&self) -> VmSummary {
        VmSummary {
            config: self.cfg.clone(),
            elapsed: self.started.elapsed(),
            vcpus: (0..self.cfg.vcpus)
                .map(|v| VcpuSummary {
                    index: v,
                    tid: self.tids[v],
                    progress: self.progress(v),
                    exits: self.exits(v),
                    function_tsc: self.function_tsc(v),
                    measured_shares: self.measured_shares(v),
                    failure: self.failure(v),
                })
                .collect(),
        }
    }

    /// Stops all vCPUs and returns what they did.
    ///
    /// Sets the shared stop flag, then sends [`kick_signal`] to every vCPU
    /// thread still in its run loop every 0.5 ms until all have left it (a
    /// kick landing just before a thread re-enters `KVM_RUN` is lost, the next
    /// one is not), and joins them. Typically returns within a few
    /// milliseconds, even for [`crate::Workload::Compute`], which never exits
    /// on its own.
    ///
    /// # Errors
    ///
    /// - [`Error::VcpuFailed`] for the lowest-numbered vCPU that failed
    ///   (the summary is then lost; use [`RunningVm::summary`] before
    ///   stopping to keep it).
    /// - [`Error::StopTimeout`] if some thread did not stop within 2 s.
    pub fn stop(mut self) -> Result<VmSummary, Error> {
        self.shutdown()?;
        let summary = self.summary();
        if let Some(v) = summary.vcpus.iter().find(|v| v.failure.is_some()) {
            return Err(Error::VcpuFailed {
                vcpu: v.index,
                reason: v.failure.clone().unwrap_or_default(),
            });
        }
        Ok(summary)
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        if self.threads.iter().all(Option::is_none) {
            return Ok(());
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        loop {
            let pending: Vec<usize> = (0..self.threads.len())
                .filter(|&i| {
                    self.threads[i].is_some()
                        && !self.shared.vcpus[i].exited.load(Ordering::Acquire)
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            if t0.elapsed() >= STOP_TIMEOUT {
                for &i in &pending {
                    self.threads[i] = None; // detach; it keeps its Arc<Shared>
                }
                self.join_all();
                return Err(Error::StopTimeout {
                    vcpus: pending,
                    waited: t0.elapsed(),
                });
            }
            for &i in &pending {
                if let Some(h) = &self.threads[i] {
                    // SAFETY: the pthread_t comes from a JoinHandle that has
                    // not been joined or detached, so the thread's descriptor
                    // is still valid even if the thread has just returned.
                    unsafe { libc::pthread_kill(h.as_pthread_t(), kick_signal()) };
                }
            }
            std::thread::sleep(KICK_INTERVAL);
        }
        self.join_all();
        Ok(())
    }

    fn join_all(&mut self) {
        for (i, slot) in self.threads.iter_mut().enumerate() {
            if let Some(h) = slot.take() {
                if h.join().is_err() {
                    if let Ok(mut f) = self.shared.vcpus[i].failure.lock() {
                        f.get_or_insert_with(|| "vCPU thread panicked".into());
                    }
                }
            }
        }
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
