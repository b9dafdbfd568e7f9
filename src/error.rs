//! The hvprof library's error type.
//!
//! One `#[non_exhaustive]` enum for the whole crate; each variant names the operation and its
//! target so that a message alone tells the user what failed. Problems with single samples
//! (an unmapped IP, a lost record) are never errors: they are counted in the report.

use std::io;
use std::path::PathBuf;

/// Errors returned by hvprof's library functions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `perf_event_open(2)` failed for one thread or CPU.
    #[error("perf_event_open for {target} (event {event}) failed")]
    PerfEventOpen {
        /// What was being opened, e.g. `tid 1234` or `cpu 1`.
        target: String,
        /// The perf event name, e.g. `cpu-clock`.
        event: String,
        /// The errno returned by the kernel.
        #[source]
        source: io::Error,
    },
    /// An ioctl on a perf event fd failed (`PERF_EVENT_IOC_ENABLE`, ...).
    #[error("ioctl {op} on perf event fd failed")]
    PerfIoctl {
        /// The ioctl's name.
        op: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Mapping a perf ring buffer failed.
    #[error("mmap of a {bytes}-byte perf ring buffer for {target} failed")]
    RingMmap {
        /// What the buffer belongs to.
        target: String,
        /// Total mapping size in bytes (1 + 2^n pages).
        bytes: usize,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The ring buffer page did not have the expected layout.
    #[error("perf ring buffer for {target} is unusable: {reason}")]
    RingLayout {
        /// What the buffer belongs to.
        target: String,
        /// What was wrong.
        reason: String,
    },
    /// An event name given by the user is not known.
    #[error("unknown event '{name}': {hint}")]
    UnknownEvent {
        /// The name as given.
        name: String,
        /// Which names are accepted.
        hint: String,
    },
    /// A bad option value.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The PID given is not a running process.
    #[error("no process with pid {pid}")]
    NoSuchProcess {
        /// The PID.
        pid: i32,
    },
    /// The PID given is a process, but it holds no KVM VM.
    #[error("pid {pid} ({comm}) is not a KVM VM: it holds no anon_inode:kvm-vm file descriptor")]
    NotAVm {
        /// The PID.
        pid: i32,
        /// Its command name.
        comm: String,
    },
    /// Reading a file (proc, sysfs, a symbol file, a recording) failed.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A symbol file could not be loaded.
    #[error("cannot load symbols from {path}")]
    Symbols {
        /// The path.
        path: PathBuf,
        /// The symbol crate's error.
        #[source]
        source: hvprof_symbols::Error,
    },
    /// A recording file is corrupt or of an unknown version.
    #[error("recording {path} is unusable at line {line}: {reason}")]
    CorruptRecording {
        /// The path.
        path: PathBuf,
        /// 1-based line number in the file.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Active mode: the guest helper channel failed.
    #[error("active mode")]
    Active(#[from] crate::active::error::ActiveError),
    /// A perf.data file could not be read or written (the message names the file and, for a
    /// malformed one, the byte offset).
    #[error(transparent)]
    PerfData(#[from] hvprof_perf::perf_data::Error),
    /// A system call failed.
    #[error("{op} failed")]
    Sys {
        /// The call.
        op: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
}

impl From<hvprof_perf::Error> for Error {
    /// Maps the perf layer's errors onto the variants callers match for hints
    /// (perf_event_paranoid, the mlock limit, ...), keeping the errno.
    fn from(e: hvprof_perf::Error) -> Error {
        use hvprof_perf::Error as P;
        match e {
            P::Open {
                target,
                event,
                source,
            } => Error::PerfEventOpen {
                target: target.to_string(),
                event,
                source,
            },
            P::Fd { op, source, .. } => Error::PerfIoctl { op, source },
            P::RingMmap {
                target,
                bytes,
                source,
            } => Error::RingMmap {
                target: target.to_string(),
                bytes,
                source,
            },
            other @ (P::RingLayout { .. } | P::CorruptHead { .. }) => Error::RingLayout {
                target: match &other {
                    P::RingLayout { target, .. } | P::CorruptHead { target, .. } => {
                        target.to_string()
                    }
                    _ => String::new(),
                },
                reason: other.to_string(),
            },
            other => Error::RingLayout {
                target: String::new(),
                reason: other.to_string(),
            },
        }
    }
}

/// Result type of the hvprof library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
