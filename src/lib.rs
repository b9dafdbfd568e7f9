//! # hvprof — where the CPU time of virtual machines goes
//!
//! A hypervisor-side profiler for KVM hosts (and, by design, Xen dom0), in the tradition of
//! Xenoprof. The pipeline, one module per stage:
//!
//! 1. [`discover`] — find VMs (`anon_inode:kvm-vm` fds) and their vCPU threads;
//! 2. [`counters`] — open perf events (`perf_event_open(2)`) per vCPU thread or per host CPU;
//! 3. [`ring`] — read each counter's mmap ring buffer (`data_head`/`data_tail`);
//! 4. [`record`] — decode PERF_RECORD_SAMPLE, LOST, THROTTLE, EXIT;
//! 5. [`collect`] — reader threads woken by poll(2), batches over crossbeam channels;
//! 6. [`attribute`] — class (hypervisor, VMM, guest kernel, guest user) and symbol of each sample;
//! 7. [`report`] — per VM → vCPU → class → symbol, as text, JSON and flame graphs.
//!
//! [`session`] runs the pipeline end to end; [`recording`] stores and replays a session.
//! Symbol resolution lives in the `hvprof-symbols` crate, the built-in test VM in
//! `hvprof-testvm`, virtualization detection in `hvprof-detect`.

pub mod active;
pub mod aggregate;
pub mod attribute;
pub mod collect;
pub mod counters;
pub mod discover;
pub mod error;
pub mod model;
pub mod output;
pub mod recording;
pub mod report;
pub mod session;
pub mod stat;
pub mod stop;

pub use error::{Error, Result};
/// The one perf layer (ABI, fds, ring buffers, record decoder), from the `hvprof-perf` crate.
pub use hvprof_perf as perf;

/// Formats an error with its chain of causes: `outer: inner: innermost`.
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
