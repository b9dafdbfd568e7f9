//! The process's stop token, stopped by SIGINT and SIGTERM (`hvprof_rt::stop_on_signals`).
//!
//! `record`, `stat`, `testvm` and `demo` run under this one token: a signal stops it, and
//! they end early and still print what they collected.

use hvprof::rt::StopToken;

/// Installs the SIGINT and SIGTERM handlers that stop the process's token. A failure leaves
/// the default action (exit).
pub fn install_handlers() {
    let _ = hvprof::rt::stop_on_signals(false);
}

/// The process's stop token (the one signals stop).
pub fn token() -> StopToken {
    hvprof::rt::process_token()
}

/// Whether the process's token was stopped (SIGINT or SIGTERM, or a run that ended).
pub fn stop_requested() -> bool {
    token().is_stopped()
}
