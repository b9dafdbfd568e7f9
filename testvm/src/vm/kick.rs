//! The signal that kicks vCPU threads out of `KVM_RUN`, and its no-op
//! handler.
//!
//! Input: nothing. Output: a process-wide handler for [`kick_signal`],
//! installed once by [`install_kick_handler`] (from `TestVm::start`), so that
//! `pthread_kill(vcpu_thread, kick_signal())` makes a blocked `KVM_RUN` fail
//! with `EINTR` instead of killing the process.

use std::io;
use std::sync::OnceLock;

use crate::Error;

/// The signal used to kick vCPU threads out of `KVM_RUN`: `SIGRTMIN()`, the
/// same choice as cloud-hypervisor and Firecracker.
///
/// [`TestVm::start`](crate::TestVm::start) installs a no-op handler for it
/// (without `SA_RESTART`) unless the process already handles it; its default
/// action would kill the process. A signal arriving during `KVM_RUN` makes
/// the ioctl fail with `EINTR` (KVM API doc, `KVM_RUN`).
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

extern "C" fn kick_handler(_signum: libc::c_int) {}

/// Installs [`kick_handler`] for [`kick_signal`] once per process, unless the
/// signal already has a handler (any handler interrupts `KVM_RUN`).
///
/// # Errors
///
/// [`Error::Signal`] if `sigaction(2)` fails (the result is remembered: later
/// calls return the same error).
pub(super) fn install_kick_handler() -> Result<(), Error> {
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
