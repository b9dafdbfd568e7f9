//! The process's stop token ([`hvprof::stop::StopToken`]), stopped by SIGINT and SIGTERM.
//!
//! `record`, `stat`, `testvm` and `demo` run under this one token: a signal stops it, and
//! they end early and still print what they collected.

use std::sync::OnceLock;

use hvprof::stop::StopToken;

static TOKEN: OnceLock<StopToken> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(t) = TOKEN.get() {
        t.stop_from_signal();
    }
}

/// Installs the SIGINT and SIGTERM handlers that stop the process's token. Failures are
/// ignored: the default action (exit) then applies.
pub fn install_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let _ = token();
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only reads an initialised OnceLock and stores to atomics
        // (StopToken::stop_from_signal), which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

/// The process's stop token (the one signals stop).
pub fn token() -> StopToken {
    TOKEN.get_or_init(StopToken::new).clone()
}

/// Whether the process's token was stopped (SIGINT or SIGTERM, or a run that ended).
pub fn stop_requested() -> bool {
    TOKEN.get().is_some_and(|t| t.is_stopped())
}
