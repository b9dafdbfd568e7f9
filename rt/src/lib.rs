//! # hvprof-rt — process plumbing shared by the `hvprof` and `hvprof-guest` binaries
//!
//! - [`StopToken`] — the one stop of a run, with the reason of the first stop;
//! - [`stop_on_signals`] — SIGINT and SIGTERM stop the process's token;
//! - [`error_chain`] — an error with its causes on one line.

mod signal;
mod stop;

pub use signal::{process_token, stop_on_signals};
pub use stop::StopToken;

/// Formats an error with its chain of causes on one line: `outer: inner: innermost`.
///
/// ```
/// let e = std::io::Error::other("disk full");
/// assert_eq!(hvprof_rt::error_chain(&e), "disk full");
/// ```
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
