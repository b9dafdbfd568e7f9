//! hvprof's built-in test VM: a real KVM guest with known hot functions.
//!
//! [`TestVm::start`] creates a VM through `/dev/kvm` (kvm-ioctls), builds a
//! long-mode environment from the host side (page tables, GDT, TSS, control
//! registers: see [`layout`]), loads a small hand-assembled payload (see
//! [`payload`]) at the unikernel-style text address `0x40_0000` and runs one
//! host thread per vCPU (`vcpu0`, `vcpu1`, ...), each looping on `KVM_RUN`.
//!
//! The payload's time split is known in advance ([`expected_shares`]): even
//! vCPUs spend all their time in `hot_loop_a`; odd vCPUs spend 75 % in
//! `hot_loop_b` and 25 % in `hot_loop_c`. The guest also measures this itself
//! with `rdtsc` ([`RunningVm::measured_shares`]), so a profiler's output can be
//! checked against two independent sources. [`write_kallsyms`] writes the
//! payload's symbol map in `/proc/kallsyms` format.
//!
//! By default the payload runs at CPL 3 ([`Privilege::Ring3`]), which nested
//! PVM-backed KVM executes natively; [`Privilege::Ring0`] runs the same code
//! at CPL 0, which PVM emulates instruction by instruction.
//!
//! ```no_run
//! use hvprof_testvm::{TestVm, TestVmConfig};
//! use std::time::Duration;
//!
//! let vm = TestVm::start(TestVmConfig::default())?;
//! std::thread::sleep(Duration::from_millis(500));
//! println!("vCPU threads: {:?}, rounds on vCPU0: {}", vm.vcpu_tids(), vm.progress(0));
//! let summary = vm.stop()?;
//! assert!(summary.vcpus[1].progress > 0);
//! # Ok::<(), hvprof_testvm::Error>(())
//! ```
//!
//! See `docs/testvm.md` for the full memory layout and entry state.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub mod layout;
pub mod payload;
mod vm;

pub use payload::{expected_shares, symbol_at, symbols, write_kallsyms, GuestSymbol};
pub use vm::{kick_signal, ExitCounts, RunningVm, TestVm, VcpuSummary, VmSummary};

/// What the payload's hot loops do besides computing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Workload {
    /// Pure computation: the guest never exits to the host on its own.
    #[default]
    Compute,
    /// Every hot-loop iteration also executes `out dx, al` to `port`, so
    /// each iteration causes one `KVM_EXIT_IO`, which the host counts in
    /// [`ExitCounts::io`] and resumes. Use it to measure VM-exit costs.
    PortIo {
        /// The I/O port written (any value; nothing is emulated there).
        port: u16,
    },
    /// Every hot-loop iteration executes `hlt`; with no in-kernel irqchip
    /// each causes one `KVM_EXIT_HLT`, counted in [`ExitCounts::hlt`].
    /// Requires [`Privilege::Ring0`] (`hlt` at CPL 3 raises `#GP`).
    Halt,
}

/// The privilege level the payload runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Privilege {
    /// CPL 3: `CS` = user code (DPL 3), `RFLAGS.IOPL` = 3 so port I/O is
    /// allowed. Under PVM this runs natively (fast).
    #[default]
    Ring3,
    /// CPL 0: `CS` = kernel code (DPL 0). Under PVM every instruction is
    /// emulated by the host kernel (slow); shows hypervisor emulation cost.
    Ring0,
}

/// Configuration of a test VM. Build with [`TestVmConfig::default`] and
/// adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestVmConfig {
    /// Number of vCPUs, 1 to [`layout::MAX_VCPUS`] (default 2).
    pub vcpus: usize,
    /// Guest memory in bytes: a multiple of 4096, at least
    /// [`layout::MIN_MEM_BYTES`] (9 MiB, the default) and at most 1 GiB.
    pub mem_bytes: u64,
    /// What the hot loops do (default [`Workload::Compute`]).
    pub workload: Workload,
    /// Privilege level of the payload (default [`Privilege::Ring3`]).
    pub privilege: Privilege,
    /// Hot-loop iterations per share unit; one round of `vcpu_main` is 4
    /// units on every vCPU, after which the progress counter is incremented.
    /// `None` (the default) picks one of [`TestVmConfig::DEFAULT_UNIT_RING3`],
    /// [`TestVmConfig::DEFAULT_UNIT_RING0`] or
    /// [`TestVmConfig::DEFAULT_UNIT_EXITING`] (see
    /// [`TestVmConfig::effective_unit_iterations`]).
    pub unit_iterations: Option<u64>,
    /// The KVM device to open (default `/dev/kvm`).
    pub kvm_path: PathBuf,
}

impl TestVmConfig {
    /// Default iterations per unit for [`Workload::Compute`] at CPL 3: a
    /// round (4 units, 2^19 iterations) takes about 0.5 ms natively (about
    /// 1 ns per iteration measured under PVM on a ~2.6 GHz host).
    pub const DEFAULT_UNIT_RING3: u64 = 1 << 17;
    /// Default iterations per unit for [`Workload::Compute`] at CPL 0, where
    /// PVM emulates every instruction (about 12 µs per iteration measured):
    /// a round takes about 50 ms.
    pub const DEFAULT_UNIT_RING0: u64 = 1 << 10;
    /// Default iterations per unit for [`Workload::PortIo`] and
    /// [`Workload::Halt`], where every iteration is a VM exit (about 65 µs
    /// per exit measured under nested PVM): a round takes about 70 ms.
    pub const DEFAULT_UNIT_EXITING: u64 = 1 << 8;

    /// The iterations per unit this configuration runs with: the explicit
    /// [`TestVmConfig::unit_iterations`], else [`Self::DEFAULT_UNIT_EXITING`]
    /// for exiting workloads, else the privilege level's compute default.
    pub fn effective_unit_iterations(&self) -> u64 {
        self.unit_iterations
            .unwrap_or(match (self.workload, self.privilege) {
                (Workload::PortIo { .. } | Workload::Halt, _) => Self::DEFAULT_UNIT_EXITING,
                (Workload::Compute, Privilege::Ring3) => Self::DEFAULT_UNIT_RING3,
                (Workload::Compute, Privilege::Ring0) => Self::DEFAULT_UNIT_RING0,
            })
    }

    /// Checks the configuration without touching KVM.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        if self.vcpus == 0 || self.vcpus > layout::MAX_VCPUS {
            return bad(format!(
                "vcpus = {}: must be 1..={}",
                self.vcpus,
                layout::MAX_VCPUS
            ));
        }
        if self.mem_bytes < layout::MIN_MEM_BYTES
            || self.mem_bytes % 4096 != 0
            || self.mem_bytes > 1 << 30
        {
            return bad(format!(
                "mem_bytes = {}: must be a multiple of 4096 between {} and {}",
                self.mem_bytes,
                layout::MIN_MEM_BYTES,
                1u64 << 30
            ));
        }
        if self.workload == Workload::Halt && self.privilege != Privilege::Ring0 {
            return bad("Workload::Halt needs Privilege::Ring0: hlt at CPL 3 raises #GP".into());
        }
        let unit = self.effective_unit_iterations();
        if unit == 0 || unit > 1 << 40 {
            return bad(format!("unit_iterations = {unit}: must be 1..=2^40"));
        }
        Ok(())
    }
}

impl Default for TestVmConfig {
    fn default() -> Self {
        TestVmConfig {
            vcpus: 2,
            mem_bytes: layout::MIN_MEM_BYTES,
            workload: Workload::Compute,
            privilege: Privilege::Ring3,
            unit_iterations: None,
            kvm_path: PathBuf::from("/dev/kvm"),
        }
    }
}

/// Errors of the test VM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The KVM device could not be opened.
    #[error(
        "cannot open KVM device {path}: /dev/kvm missing or not permitted \
         (is the kvm module loaded and do you have read/write access?)"
    )]
    NoKvm {
        /// The path that was opened ([`TestVmConfig::kvm_path`]).
        path: PathBuf,
        /// The error from `open(2)`.
        #[source]
        source: io::Error,
    },
    /// A KVM ioctl failed.
    #[error("KVM ioctl {op} failed")]
    Ioctl {
        /// The ioctl's name as in the KVM API doc, e.g. `KVM_SET_SREGS`.
        op: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid test VM configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// Mapping guest memory failed.
    #[error("mmap of {bytes} bytes of guest memory failed")]
    Mmap {
        /// Requested size in bytes.
        bytes: u64,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Installing the vCPU kick signal handler failed.
    #[error("installing the handler for vCPU kick signal {signal} failed")]
    Signal {
        /// The signal number ([`kick_signal`]).
        signal: i32,
        /// The errno from `sigaction(2)`.
        #[source]
        source: io::Error,
    },
    /// Spawning a vCPU thread failed.
    #[error("spawning the thread for vCPU {vcpu} failed")]
    Thread {
        /// The vCPU index.
        vcpu: usize,
        /// The error from `pthread_create`.
        #[source]
        source: io::Error,
    },
    /// A vCPU stopped on a fatal exit (`KVM_EXIT_SHUTDOWN`,
    /// `KVM_EXIT_FAIL_ENTRY`, `KVM_EXIT_INTERNAL_ERROR`, an unexpected exit
    /// or a failing `KVM_RUN`).
    #[error("vCPU {vcpu} failed: {reason}")]
    VcpuFailed {
        /// The vCPU index.
        vcpu: usize,
        /// What happened, including the guest RIP where known.
        reason: String,
    },
    /// Some vCPU threads did not leave `KVM_RUN` after being kicked.
    #[error("vCPUs {vcpus:?} did not stop within {waited:?}")]
    StopTimeout {
        /// Indexes of the vCPUs still running (their threads are detached).
        vcpus: Vec<usize>,
        /// How long [`RunningVm::stop`] kept kicking them.
        waited: Duration,
    },
    /// Writing a file (the kallsyms map) failed.
    #[error("cannot write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Runs a test VM in the calling thread's foreground until `duration` has
/// passed (if given), `stop` becomes true, or a vCPU fails; then stops it and
/// returns the summary. Prints nothing.
///
/// If `kallsyms_out` is given, the payload's symbol map is written there
/// first (see [`write_kallsyms`]). `stop` is polled every 10 ms, so a CLI can
/// set it from a signal handler.
///
/// # Errors
///
/// Any error of [`write_kallsyms`], [`TestVm::start`] or [`RunningVm::stop`]
/// (including [`Error::VcpuFailed`] if a vCPU failed).
pub fn run_foreground(
    cfg: TestVmConfig,
    duration: Option<Duration>,
    kallsyms_out: Option<&Path>,
    stop: &AtomicBool,
) -> Result<VmSummary, Error> {
    if let Some(path) = kallsyms_out {
        write_kallsyms(path)?;
    }
    let vm = TestVm::start(cfg)?;
    let t0 = Instant::now();
    loop {
        if stop.load(Ordering::Acquire) || vm.any_failed() {
            break;
        }
        let tick = Duration::from_millis(10);
        match duration {
            Some(d) => {
                let elapsed = t0.elapsed();
                if elapsed >= d {
                    break;
                }
                std::thread::sleep(tick.min(d - elapsed));
            }
            None => std::thread::sleep(tick),
        }
    }
    vm.stop()
}
