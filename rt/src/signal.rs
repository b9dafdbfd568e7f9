//! SIGINT and SIGTERM stop the process's [`StopToken`] (sigaction(2); the handler only stores to
//! atomics, which signal-safety(7) allows).

use std::sync::OnceLock;

use crate::StopToken;

static TOKEN: OnceLock<StopToken> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(t) = TOKEN.get() {
        t.stop_from_signal();
    }
}

/// The process's stop token: the one [`stop_on_signals`] makes signals stop.
pub fn process_token() -> StopToken {
    TOKEN.get_or_init(StopToken::new).clone()
}

/// Makes SIGINT and SIGTERM stop [`process_token`] instead of killing the process, and, when
/// `ignore_sigpipe`, ignores SIGPIPE (a closed channel is then an `EPIPE` write error).
///
/// # Errors
/// The errno of the first `sigaction(2)` that fails; the default action then stays.
pub fn stop_on_signals(ignore_sigpipe: bool) -> std::io::Result<StopToken> {
    let token = process_token();
    let handler: extern "C" fn(libc::c_int) = on_signal;
    let mut set = [
        (libc::SIGINT, handler as libc::sighandler_t),
        (libc::SIGTERM, handler as libc::sighandler_t),
    ]
    .to_vec();
    if ignore_sigpipe {
        set.push((libc::SIGPIPE, libc::SIG_IGN));
    }
    for (sig, disposition) in set {
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags) that we then
        // fill in; the handler is async-signal-safe (an initialised OnceLock read and atomic
        // stores) and has the `extern "C" fn(c_int)` signature sa_handler expects.
        let r = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = disposition;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_stops_the_process_token() {
        let t = stop_on_signals(false).expect("sigaction");
        assert!(!t.is_stopped());
        // SAFETY: raise(3) delivers SIGTERM to this thread; the handler installed above runs.
        unsafe {
            libc::raise(libc::SIGTERM);
        }
        assert!(t.is_stopped());
        assert_eq!(t.reason().as_deref(), Some("interrupted (SIGINT/SIGTERM)"));
    }
}
