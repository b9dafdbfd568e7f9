//! # hvprof — where the CPU time of virtual machines goes
//!
//! A hypervisor-side profiler for KVM hosts (and, by design, Xen dom0), in the tradition of
//! Xenoprof. The pipeline, one module per stage (docs/design.md follows one sample through it):
//!
//! 1. [`discover`] — find VMs (`anon_inode:kvm-vm` fds, QEMU TCG) and their vCPU threads;
//! 2. [`counters`] — open perf events per vCPU thread or per host CPU, through the one perf
//!    layer ([`perf`], the `hvprof-perf` crate: ABI, fds, ring buffers, record decoder);
//! 3. [`collect`] — reader threads woken by poll(2) copy each ring's records out;
//! 4. [`attribute`] — machine ([`model::Machines`]), class (hypervisor, VMM, guest kernel,
//!    guest user, emulation) and symbol of each sample;
//! 5. [`aggregate`] — one aggregator, snapshots into the [`report::Profile`] tree;
//! 6. [`output`] — text, JSON, folded stacks and flame graphs.
//!
//! [`session`] runs the pipeline for `hvprof record` (stopped by one [`rt::StopToken`]);
//! [`recording`] stores and replays a session; [`stat`] measures the hypervisor's own costs;
//! [`active`] adds the in-guest helper's view. Symbols live in `hvprof-symbols`, the wire
//! protocol in `hvprof-proto`, virtualization detection in `hvprof-detect`.

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
pub mod xen;

pub use error::{Error, Result};
/// The one perf layer (ABI, fds, ring buffers, record decoder), from the `hvprof-perf` crate.
pub use hvprof_perf as perf;

/// The one stop of a run ([`rt::StopToken`]) and the signals that stop it, from `hvprof-rt`.
pub use hvprof_rt as rt;
/// Formats an error with its chain of causes: `outer: inner: innermost` (from `hvprof-rt`).
pub use hvprof_rt::error_chain;
