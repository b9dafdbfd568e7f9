//! The pipeline's vocabulary, in the spirit of perf's `machines` (tools/perf/util/machine.h):
//! which machine a sample belongs to, and which address space an address is in.
//!
//! - [`addr`] — address newtypes ([`HostVa`], [`GuestVa`], [`FileOffset`]) and [`Address`],
//!   so the compiler knows which space an address is in where it crosses a module boundary;
//! - [`machines`] — [`Machines`] `{ host, guests }` keyed by [`VmId`] (a VMM pid on KVM, a
//!   domain id on Xen): each guest machine knows its vCPUs (index → thread), its threads and its
//!   guest symbol source; [`Machines::find_for_sample`] is the one place that decides a sample's
//!   machine, as `machines__find_for_cpumode` does in perf.
//!
//! This module imports nothing else of the crate: every stage may use it.

pub mod addr;
pub mod machines;

pub use addr::{Address, FileOffset, GuestVa, HostVa};
pub use machines::{GuestMachine, MachineRef, Machines, Thread, Vcpu, VmId};
