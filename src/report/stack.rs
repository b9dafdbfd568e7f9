//! Call stacks in the [`super::Profile`]: one [`StackRow`] per distinct (thread or guest
//! process, stack), with the frames root first, as folded stacks, flame graphs and pprof need
//! them.
//!
//! Where they come from:
//! - host stacks: `PERF_SAMPLE_CALLCHAIN` (host kernel frames, then user frames after
//!   `PERF_CONTEXT_USER`), with the VMM's user frames unwound from `PERF_SAMPLE_REGS_USER` +
//!   `PERF_SAMPLE_STACK_USER` at report time under `--call-graph dwarf`;
//! - guest stacks (active mode): the in-guest helper's own callchains, resolved through the
//!   guest's symbols ([`StackOrigin::Helper`]);
//! - samples without a callchain (recorded without `-g`, or guest-tagged samples seen by the
//!   host, for which the kernel returns no guest callchain) are one-frame stacks marked
//!   [`StackRow::leaf_only`] — no frame is invented.

use serde::{Deserialize, Serialize};

use crate::attribute::{Class, Symbol};

/// One frame of a stack, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The class of the code the frame is in (hypervisor, VMM, guest kernel, guest user, ...);
    /// a leaf frame's class is the sample's effective class.
    pub class: Class,
    /// The function.
    pub symbol: Symbol,
}

/// Who saw a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StackOrigin {
    /// The host's perf samples of a VMM thread (or of a host CPU in system-wide mode).
    Host,
    /// Active mode: sampled inside the guest by the helper, with the guest's own callchain.
    Helper,
}

/// The guest process a guest stack ran in (active mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuestProc {
    /// Guest pid (None: the helper could not name the process).
    pub pid: Option<u32>,
    /// Guest process name (`comm`).
    pub comm: String,
}

/// One distinct stack of one thread (or guest process) and how often it was sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackRow {
    /// Host thread id of the samples; -1 for stacks sampled inside the guest (active mode) and
    /// for per-CPU losses with no thread.
    pub tid: i32,
    /// The vCPU the samples ran on (the vCPU thread's index, or the guest CPU for helper
    /// samples), None for other threads.
    pub vcpu: Option<u32>,
    /// Host thread name (`comm`), for labels.
    pub thread_name: String,
    /// The guest process, for guest stacks of active mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestProc>,
    /// Who saw the stack.
    pub origin: StackOrigin,
    /// Frames, root (outermost caller) first, leaf last; never empty.
    pub frames: Vec<Frame>,
    /// True when no callchain was available for these samples (recorded without `-g`, or a
    /// guest sample the host kernel gives no guest callchain for): `frames` is the leaf alone.
    pub leaf_only: bool,
    /// Samples.
    pub samples: u64,
    /// Sum of their periods (events; ns for clock events).
    pub period: u64,
}

impl StackRow {
    /// The leaf frame.
    pub fn leaf(&self) -> Option<&Frame> {
        self.frames.last()
    }
}
