//! Every `unsafe` of the hvprof-guest crate outside the perf layer (`hvprof-perf`, which owns
//! `perf_event_open(2)`, its ioctls and ring buffers, and `rdtsc`) and the channel
//! (`hvprof-proto`, which owns `poll(2)` and AF_VSOCK sockets): `clock_gettime` and signal
//! handlers.
//!
//! Each block states why it is sound. Everything else in the crate is safe code on top.

use std::sync::atomic::{AtomicBool, Ordering};

/// `clock_gettime(clock)` in ns.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs SIGINT/SIGTERM handlers that set a flag read by [`stop_requested`]; ignores
/// SIGPIPE (a closed channel is seen as an `EPIPE` write error instead).
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is async-signal-safe (one atomic store) and has the
        // `extern "C" fn(c_int)` signature `signal` expects.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    // SAFETY: SIG_IGN is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// True once SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
