//! The process-wide stop flag, set by SIGINT and SIGTERM.
//!
//! `record`, `stat`, `testvm` and `demo` poll [`stop_requested`] to end early and still
//! print what they collected.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs the SIGINT and SIGTERM handlers that set the stop flag. Failures are ignored: the
/// default action (exit) then applies.
pub fn install_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

/// Whether SIGINT or SIGTERM has arrived since [`install_handlers`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
