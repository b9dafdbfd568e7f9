//! Recordings are perf.data files (tools/perf/Documentation/perf.data-file-format.txt):
//! `hvprof record -o FILE` writes one, `hvprof report -i FILE` reads it — or a file perf wrote
//! (`perf record -e cpu-clock:HG -p VMM_PID`, `perf kvm --guest record`).
//!
//! - [`write`] — the data section holds the ring buffers' records as the kernel wrote them,
//!   after COMM/FORK/MMAP2 records synthesized from /proc at the start ([`synth`]), as perf
//!   record's synthesize step does; the feature sections perf reads (HOSTNAME, OSRELEASE,
//!   ARCH, NRCPUS, CMDLINE, EVENT_DESC, BUILD_ID) follow, and hvprof's own section
//!   ([`HvprofSection`], feature bit [`hvprof_perf::perf_data::Feature::HVPROF`], which perf
//!   skips) carries what only hvprof knows.
//! - [`read`] — attribution happens at report time, from the recorded maps and this host's
//!   kernel symbols; without hvprof's section, VMs and vCPUs are rebuilt from COMM records
//!   and thread names.

pub mod read;
pub mod synth;
pub mod write;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::attribute::Attributed;
use crate::model::GuestMachine;
use crate::report::{GuestView, Meta};

pub use read::{replay, Replay};
pub use write::Recorder;

/// Version of [`HvprofSection`] this build writes and reads.
pub const SECTION_VERSION: u32 = 1;

/// hvprof's own feature section (JSON): what a perf.data file cannot say.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HvprofSection {
    /// [`SECTION_VERSION`].
    pub version: u32,
    /// What was measured (`duration_ns` is the collection's).
    pub meta: Option<Meta>,
    /// The VMs profiled: vCPUs (index → thread), threads.
    pub vms: Vec<GuestMachine>,
    /// Guest symbol maps given at record time: VMM pid (None: every VM) and path.
    pub guest_kallsyms: Vec<(Option<i32>, PathBuf)>,
    /// Each profiled thread's time on CPU during the collection, in ns.
    pub on_cpu: Vec<(i32, u64)>,
    /// Notes of the recording session.
    pub notes: Vec<String>,
    /// Whether the host hid guest IPs, and why (None: decided from the data).
    pub hidden: Option<(bool, String)>,
    /// Why guest IPs may be hidden on the recording host (from detection).
    pub hint: Option<String>,
    /// Active mode: the VM whose guest-tagged samples the helper's view replaces (their
    /// attributed form is in `active_samples`), and its guest view.
    pub active_vm: Option<i32>,
    /// Active mode: the merged guest samples, attributed with guest process context.
    pub active_samples: Vec<Attributed>,
    /// Active mode: the guest's own view, per VMM pid.
    pub guest_views: Vec<(i32, GuestView)>,
    /// `hvprof detect`'s result on the recording host (docs/detect.md's JSON).
    #[serde(default)]
    pub detection: Option<serde_json::Value>,
}
