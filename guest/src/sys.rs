//! Every `unsafe` of the hvprof-guest crate outside the perf layer (`hvprof-perf`, which owns
//! `perf_event_open(2)`, its ioctls and ring buffers, and `rdtsc`) and the channel
//! (`hvprof-proto`, which owns `poll(2)` and AF_VSOCK sockets), and the signal handlers
//! (`hvprof-rt`): `clock_gettime`.
//!
//! Each block states why it is sound. Everything else in the crate is safe code on top.

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
