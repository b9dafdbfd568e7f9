//! One stop token per run: whatever ends a run — its duration, Ctrl-C, a workload that exits,
//! a caller on another thread — stops the same [`StopToken`], and every loop of the run
//! (`record`, `stat`, active mode's helper wait, the guest helper's loops) watches that one
//! token. [`crate::stop_on_signals`] makes SIGINT and SIGTERM stop it.
//!
//! ```
//! use hvprof_rt::StopToken;
//! let t = StopToken::new();
//! let seen_by_a_worker = t.clone();
//! t.stop("workload ended");
//! assert!(seen_by_a_worker.is_stopped());
//! assert_eq!(t.reason().as_deref(), Some("workload ended"));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cloneable stop flag with the reason of the first stop.
#[derive(Debug, Clone, Default)]
pub struct StopToken {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    by_signal: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl StopToken {
    /// A token not stopped yet.
    pub fn new() -> StopToken {
        StopToken::default()
    }

    /// Stops the run; the first reason given is the one reported.
    pub fn stop(&self, reason: impl Into<String>) {
        {
            let mut r = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_none() && !self.inner.by_signal.load(Ordering::Acquire) {
                *r = Some(reason.into());
            }
        }
        self.inner.stopped.store(true, Ordering::Release);
    }

    /// Stops the run from a signal handler: only atomic stores, async-signal-safe
    /// (signal-safety(7)). The reason reads "interrupted (SIGINT/SIGTERM)".
    pub fn stop_from_signal(&self) {
        self.inner.by_signal.store(true, Ordering::Release);
        self.inner.stopped.store(true, Ordering::Release);
    }

    /// Whether the run was stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Why the run was stopped, if it was.
    pub fn reason(&self) -> Option<String> {
        if !self.is_stopped() {
            return None;
        }
        let r = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
        match (&*r, self.inner.by_signal.load(Ordering::Acquire)) {
            (Some(r), _) => Some(r.clone()),
            (None, true) => Some("interrupted (SIGINT/SIGTERM)".into()),
            (None, false) => Some("stop requested".into()),
        }
    }

    /// Sleeps up to `d`, waking within 20 ms of a stop. Returns whether the run is stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.is_stopped() {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_signals_say_so() {
        let t = StopToken::new();
        assert!(!t.is_stopped() && t.reason().is_none());
        assert!(!t.sleep(Duration::from_millis(1)));
        t.stop("duration reached");
        t.stop("later");
        assert_eq!(t.reason().as_deref(), Some("duration reached"));
        assert!(
            t.sleep(Duration::from_secs(10)),
            "a stopped token does not sleep"
        );
        let s = StopToken::new();
        s.stop_from_signal();
        s.stop("after the signal");
        assert_eq!(s.reason().as_deref(), Some("interrupted (SIGINT/SIGTERM)"));
    }

    #[test]
    fn a_stop_from_another_thread_wakes_a_sleeper() {
        let t = StopToken::new();
        let t2 = t.clone();
        let h = std::thread::spawn(move || t2.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        t.stop("test");
        assert!(h.join().unwrap());
    }
}
