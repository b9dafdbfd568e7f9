//! VM creation, vCPU threads, exit handling and stopping.
//!
//! One job per module:
//! - [`kick`]: the signal that interrupts `KVM_RUN`, and its handler;
//! - [`memory`]: the host mapping behind guest physical memory;
//! - [`setup`]: the memory image and each vCPU's long-mode entry state;
//! - [`vcpu`]: the state vCPU threads share and their `KVM_RUN` loop;
//! - [`start`]: [`TestVm::start`], which ties the above together;
//! - [`running`]: the [`RunningVm`] handle (readings, stop, drop);
//! - [`summary`]: [`VmSummary`], [`VcpuSummary`], [`ExitCounts`] and the
//!   share computation.
//!
//! The foreground runner is [`crate::run_foreground`].

mod kick;
mod memory;
mod running;
mod setup;
mod start;
mod summary;
mod vcpu;

pub use kick::kick_signal;
pub use running::RunningVm;
pub use start::TestVm;
pub use summary::{ExitCounts, VcpuSummary, VmSummary};
