//! [`ProtoError`]: every way a frame can violate the protocol.

use crate::limits::{MAGIC, VERSION};

/// A protocol violation. The host drops the connection on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The frame does not start with [`MAGIC`].
    #[error("bad frame magic {found:#010x} (expected {MAGIC:#010x}): not an hvprof-guest stream, or out of sync")]
    BadMagic {
        /// The 4 bytes found, as a LE u32.
        found: u32,
    },
    /// A version this decoder does not speak.
    #[error("unsupported protocol version {found} (this host speaks {VERSION})")]
    BadVersion {
        /// The version in the frame.
        found: u16,
    },
    /// The payload length exceeds [`Limits::max_payload`](crate::Limits::max_payload).
    #[error("frame of type {kind} announces {len} payload bytes, more than the limit of {max}")]
    TooLong {
        /// Message type.
        kind: u16,
        /// Announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// An unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u16),
    /// The payload ended before a field.
    #[error("{msg} message truncated: {field} needs {need} bytes, {left} left")]
    Truncated {
        /// Message name.
        msg: &'static str,
        /// Field being read.
        field: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        left: usize,
    },
    /// A string or byte field longer than allowed.
    #[error("{msg} message: {field} of {len} bytes exceeds the limit of {max}")]
    FieldTooLong {
        /// Message name.
        msg: &'static str,
        /// Field.
        field: &'static str,
        /// Length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes left after the last field.
    #[error("{msg} message has {extra} trailing bytes")]
    Trailing {
        /// Message name.
        msg: &'static str,
        /// Extra bytes.
        extra: usize,
    },
    /// A field value outside its domain.
    #[error("{msg} message: invalid {field} ({value})")]
    Invalid {
        /// Message name.
        msg: &'static str,
        /// Field.
        field: &'static str,
        /// The value.
        value: u64,
    },
}
