//! The perf.data container (tools/perf/Documentation/perf.data-file-format.txt, Linux 6.1):
//! a file header, the attrs with their event ids, a data section holding records exactly as
//! the kernel writes them into ring buffers (decoded by [`crate::record`]), and feature sections
//! after the data (`HEADER_HOSTNAME`, `HEADER_EVENT_DESC`, ...; tools/perf/util/header.h).
//!
//! [`PerfDataWriter`] writes what `perf report`, `perf script` and `perf kvm` read;
//! [`PerfData`] reads files from perf or hvprof, bounding every offset and size by the file:
//! a corrupt file gives an [`Error`] naming the byte offset, a data section cut short is read up
//! to the cut ([`PerfData::truncated`]), never a panic.
//!
//! Only native-endian (little-endian on x86-64) files with the `PERFILE2` magic are read; the
//! pipe format (`PERFILE2` + a 16-byte header) is refused with a message.

mod feature;
mod read;
mod write;

pub use feature::{Feature, FeatureWriter};
pub use read::{AttrInfo, PerfData};
pub use write::{attr_to_bytes, PerfDataWriter};

/// `PERFILE2` as a little-endian u64: the magic of a native-endian perf.data file.
pub const MAGIC: u64 = u64::from_le_bytes(*b"PERFILE2");
/// Size of `struct perf_file_header` in bytes: magic, size, attr_size, three
/// `perf_file_section`s (attrs, data, event_types) and a 256-bit feature bitmap.
pub const HEADER_SIZE: usize = 104;
/// `HEADER_FEAT_BITS`: bits in the feature bitmap.
pub const FEAT_BITS: usize = 256;

/// Errors reading or writing a perf.data file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, mapped, read or written.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done (`open`, `write`, ...).
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bytes at `offset` do not form what the format requires there.
    #[error("{path} is not a usable perf.data file at byte {offset}: {reason}")]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// Byte offset in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
