//! The crate's error type.
//!
//! One `#[non_exhaustive]` enum; each variant names the operation and its target, so a message
//! alone says what failed. Messages never repeat their `#[source]`: print the chain
//! (`{:#}` in anyhow, or walk [`std::error::Error::source`]) to see the cause.
//!
//! Failures for a single address (unmapped IP, no symbol, unreadable DSO) are *not* errors:
//! they come back as [`crate::Symbolized::Unknown`] with a [`crate::Reason`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Errors returned by `hvprof-symbols`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `open(2)` of a file failed (missing file, permission, ...).
    #[error("opening {}", path.display())]
    Open {
        /// The file that could not be opened.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading an opened file failed.
    #[error("reading {}", path.display())]
    Read {
        /// The file being read.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `mmap(2)` of a file (or `fstat` before it) failed.
    #[error("mapping {} into memory", path.display())]
    Mmap {
        /// The file being mapped.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A line of a text table (kallsyms, System.map, `/proc/PID/maps`) is malformed.
    #[error("parsing {format}{} line {line}: {reason}", InPath(path.as_deref()))]
    Parse {
        /// The format being parsed: `"kallsyms"` or `"maps"`.
        format: &'static str,
        /// The file, or `None` when parsing text given in memory.
        path: Option<PathBuf>,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line, quoting the offending field.
        reason: String,
    },
    /// A symbol table contains no usable symbol (empty file, or no text symbols at all).
    #[error("no {format} symbols{}", InPath(path.as_deref()))]
    NoSymbols {
        /// The format being parsed: `"kallsyms"`.
        format: &'static str,
        /// The file, or `None` when parsing text given in memory.
        path: Option<PathBuf>,
    },
    /// Every address in a kallsyms file is zero.
    ///
    /// `/proc/kallsyms` prints zeros to readers the kernel does not trust with kernel
    /// addresses: see `kptr_restrict` in the kernel's `Documentation/admin-guide/sysctl/kernel.rst`.
    /// With `kernel.kptr_restrict=1`, readers need `CAP_SYSLOG`; with `2`, nobody sees them.
    #[error(
        "all symbol addresses{} are zero: the kernel hides them (kernel.kptr_restrict; \
         run as root / with CAP_SYSLOG, or set kernel.kptr_restrict=0)",
        InPath(path.as_deref())
    )]
    AddressesHidden {
        /// The file, or `None` when parsing text given in memory.
        path: Option<PathBuf>,
    },
    /// A file is not a usable ELF object (bad magic, truncated headers, not ELF, ...).
    #[error("reading ELF file {}: {reason}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// What is wrong, as reported by the `object` crate or by this crate.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats `" in <path>"`, or nothing for in-memory text.
struct InPath<'a>(Option<&'a Path>);

impl fmt::Display for InPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " in {}", p.display()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_target_and_do_not_repeat_source() {
        let e = Error::Open {
            path: "/nope".into(),
            source: io::Error::from_raw_os_error(2),
        };
        assert_eq!(e.to_string(), "opening /nope");
        let e = Error::Parse {
            format: "kallsyms",
            path: Some("/proc/kallsyms".into()),
            line: 3,
            reason: "bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "parsing kallsyms in /proc/kallsyms line 3: bad"
        );
        let e = Error::AddressesHidden { path: None };
        assert!(e.to_string().contains("kptr_restrict"));
    }
}
