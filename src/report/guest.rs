//! The guest's own view of a VM in active mode, as the [`super::Profile`] carries it: what
//! the helper said about the guest, how the channel went, and per guest process rows.

use serde::{Deserialize, Serialize};

use super::{ClassRow, SymbolRow};

/// What the guest said about itself and how the session went, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestSummary {
    /// VMM pid.
    pub vm_pid: i32,
    /// Guest kernel release.
    pub kernel_release: String,
    /// Guest boot id.
    pub boot_id: String,
    /// Guest host name.
    pub hostname: String,
    /// Guest CPUs.
    pub cpus: u32,
    /// Helper version.
    pub helper_version: String,
    /// Helper sampling frequency (0: none).
    pub sampling_hz: u32,
    /// Clock relation, in words.
    pub clock: String,
    /// Its error bound in ns.
    pub clock_error_ns: Option<u64>,
    /// Guest kernel symbols received.
    pub kallsyms_symbols: usize,
    /// Guest symbol tables received.
    pub symbol_tables: usize,
    /// Guest processes known.
    pub processes: usize,
    /// Counters.
    pub stats: ModelStats,
    /// Channel status.
    pub channel: ConnStatus,
    /// Where guest samples came from: `host` (host-tagged, merged) or `helper`.
    pub samples_from: String,
}

/// Counters of what was received and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStats {
    /// Helper sessions (hellos) seen.
    pub sessions: u64,
    /// Messages applied.
    pub messages: u64,
    /// Samples received.
    pub samples: u64,
    /// Samples dropped over the budget.
    pub samples_dropped: u64,
    /// Switch records received.
    pub switches: u64,
    /// Switch records dropped over the budget.
    pub switches_dropped: u64,
    /// Records the guest kernel or helper reported lost.
    pub lost_sideband: u64,
    /// Samples the guest kernel reported lost.
    pub lost_samples: u64,
    /// Records the helper dropped itself (while disconnected).
    pub lost_helper: u64,
    /// Symbol tables complete.
    pub tables: u64,
    /// Symbols in them.
    pub symbols: u64,
    /// Maps received.
    pub maps: u64,
    /// Messages ignored (before a hello, for an unknown table).
    pub ignored: u64,
}

/// The receiver's state, for progress and errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStatus {
    /// Connections made or accepted.
    pub connections: u32,
    /// Connected now.
    pub connected: bool,
    /// Frames decoded.
    pub frames: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Bytes skipped to find a frame start before a hello (joining a virtio-serial stream).
    pub skipped_bytes: u64,
    /// Why the last connection was dropped.
    pub last_error: Option<String>,
    /// The helper's last bye reason.
    pub bye: Option<String>,
    /// The receiver thread ended.
    pub finished: bool,
}

/// One guest process of one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestProcessReport {
    /// VMM pid (the VM).
    pub vm_pid: i32,
    /// Guest pid, None for samples whose guest thread is unknown.
    pub guest_pid: Option<u32>,
    /// Process name (the most frequent process `comm` among its samples).
    pub comm: String,
    /// Samples.
    pub samples: u64,
    /// Sum of periods (ns for cpu-clock).
    pub period: u64,
    /// Percent of the VM's guest samples (0–100).
    pub percent: f64,
    /// Threads: `(guest tid, comm, samples)`, most samples first.
    pub threads: Vec<(u32, String, u64)>,
    /// Class split (guest kernel / guest user), percent of this process's samples.
    pub classes: Vec<ClassRow>,
    /// Top symbols, percent of this process's samples.
    pub top_symbols: Vec<SymbolRow>,
}
