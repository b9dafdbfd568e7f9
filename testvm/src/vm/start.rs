//! [`TestVm::start`]: from a [`TestVmConfig`] to a running guest.
//!
//! Input: the configuration and `/dev/kvm`. Output: a [`RunningVm`] whose
//! vCPU threads are all in their run loops. Opens KVM, creates the VM and its
//! memory slot, builds the image and vCPU state ([`super::setup`]), then
//! spawns one thread per vCPU ([`super::vcpu`]) and collects their tids.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

use super::kick::install_kick_handler;
use super::memory::GuestMemory;
use super::running::RunningVm;
use super::setup::{build_image, ioctl, setup_vcpu};
use super::vcpu::{vcpu_thread, Shared, VcpuShared};
use crate::{Error, TestVmConfig};

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
            userspace_addr: mem.host_addr(),
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
