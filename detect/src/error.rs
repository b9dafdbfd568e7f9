//! The crate's error type.
//!
//! [`crate::detect`] never fails as a whole: a missing or malformed input becomes an
//! [`crate::InputProblem`] or an evidence item. [`Error`] is returned only by the public
//! parsers ([`crate::CpuidDump::parse`], [`crate::decode_xen_features`]) that a caller may use
//! directly.

/// Errors returned by the parsers of `hvprof-detect`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line of a CPUID dump (`cpuid.txt`, see [`crate::CpuidDump`]) is not in the documented
    /// format.
    #[error("parsing CPUID dump line {line}: {reason}")]
    CpuidDump {
        /// 1-based line number in the dump.
        line: usize,
        /// What was wrong with it.
        reason: String,
    },
    /// `/sys/hypervisor/properties/features` is not a hexadecimal bitmap.
    #[error("parsing Xen feature bitmap {text:?}: {reason}")]
    XenFeatures {
        /// The text as read (trimmed).
        text: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
