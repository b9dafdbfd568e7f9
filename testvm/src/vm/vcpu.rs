//! The vCPU threads: state they share with the controller, and the
//! `KVM_RUN` loop with its exit handling.
//!
//! Input: a configured [`VcpuFd`] per thread and the [`Shared`] state. Output:
//! exit counts per kind, a failure reason if the vCPU hit a fatal exit, and
//! the `exited` flag once the thread has left its loop (after the controller
//! set `stop` and kicked it with [`super::kick_signal`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use super::memory::GuestMemory;
use crate::payload;

/// Per-vCPU state shared between the vCPU thread and the controller.
#[derive(Default)]
pub(super) struct VcpuShared {
    /// `KVM_EXIT_IO` exits handled.
    pub(super) io: AtomicU64,
    /// `KVM_EXIT_HLT` exits handled.
    pub(super) hlt: AtomicU64,
    /// Other non-fatal exits handled.
    pub(super) other: AtomicU64,
    /// Why the vCPU stopped, if it failed.
    pub(super) failure: Mutex<Option<String>>,
    /// Set (Release) once the thread has left its run loop.
    pub(super) exited: AtomicBool,
}

/// State shared by all vCPU threads. Field order matters for drop: the VM
/// fd is closed before guest memory is unmapped.
pub(super) struct Shared {
    pub(super) _vm: VmFd,
    pub(super) mem: GuestMemory,
    /// Set by the controller to end every run loop.
    pub(super) stop: AtomicBool,
    /// Indexed by vCPU.
    pub(super) vcpus: Vec<VcpuShared>,
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

/// Body of the thread of vCPU `index`: reports its tid on `tx`, then runs
/// `KVM_RUN` until `shared.stop` is set or a fatal exit, which it records
/// (with the guest's registers and symbol) in `shared.vcpus[index].failure`.
pub(super) fn vcpu_thread(
    index: usize,
    mut vcpu: VcpuFd,
    shared: &Shared,
    tx: mpsc::Sender<(usize, i32)>,
) {
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
