//! The perf layer's error type.

use std::io;

use crate::fd::Target;

/// Errors of the perf layer. Each variant names the operation and its target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `perf_event_open(2)` failed: `EACCES`/`EPERM` for `kernel.perf_event_paranoid` or a
    /// missing CAP_PERFMON, `ENOENT`/`EOPNOTSUPP` for an event the hardware lacks, `ESRCH` for a
    /// thread that is gone, `EINVAL` for an attr the kernel rejects.
    #[error("perf_event_open for {target} (event {event}) failed")]
    Open {
        /// What was being opened.
        target: Target,
        /// The event's name, e.g. `cpu-clock`.
        event: String,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// An ioctl, `read(2)` or `dup(2)` on a perf event fd failed.
    #[error("{op} on the perf event fd of {target} failed")]
    Fd {
        /// The operation, e.g. `PERF_EVENT_IOC_ENABLE`.
        op: &'static str,
        /// The event's target.
        target: Target,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// `mmap(2)` of a ring buffer failed (often `EPERM`: the per-user `perf_event_mlock_kb`).
    #[error("mmap of a {bytes}-byte perf ring buffer for {target} failed")]
    RingMmap {
        /// The event's target.
        target: Target,
        /// Size of the mapping in bytes (1 + 2^n pages).
        bytes: usize,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The ring buffer cannot be used: a page count that is not a power of two, or a metadata
    /// page whose `data_offset`/`data_size` lie outside the mapping.
    #[error("perf ring buffer for {target} is unusable: {reason}")]
    RingLayout {
        /// The event's target.
        target: Target,
        /// What is wrong.
        reason: String,
    },
    /// `data_head - data_tail` exceeded the data area: the kernel's or a corrupted page's
    /// `data_head` cannot be trusted. The ring was resynchronised (tail moved to head) and the
    /// bytes in between were dropped; [`crate::RingBuffer::corrupt_heads`] counts these.
    #[error("perf ring buffer for {target}: data_head {head} is {} bytes past data_tail {tail}, more than the {size}-byte data area; resynchronised, those bytes dropped", head.wrapping_sub(*tail))]
    CorruptHead {
        /// The event's target.
        target: Target,
        /// `data_head` as read.
        head: u64,
        /// `data_tail` before resynchronising.
        tail: u64,
        /// Size of the data area in bytes.
        size: usize,
    },
}

impl Error {
    /// The errno behind this error, if a system call failed.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Open { source, .. }
            | Error::Fd { source, .. }
            | Error::RingMmap { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Open { source, .. }
            | Error::Fd { source, .. }
            | Error::RingMmap { source, .. } => source.kind(),
            Error::RingLayout { .. } => io::ErrorKind::InvalidInput,
            Error::CorruptHead { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// Result type of the perf layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
