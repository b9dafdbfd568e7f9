//! The Xen backend's error type: the leaf of `src/xen` that every other file of it returns.

use std::path::PathBuf;

/// Errors of the Xen dom0 backend. Each names the operation and its target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XenError {
    /// A Xen tools library (libxenctrl, libxenstore) could not be loaded: not a Xen host, or
    /// the package (Debian: `libxenmisc4.17`, `libxenstore4`) is not installed.
    #[error("cannot load {lib} (is this a Xen dom0 with the Xen tools installed?)")]
    LibraryMissing {
        /// The library's file names tried, e.g. `libxenctrl.so.4.17`.
        lib: String,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// A symbol was missing from a loaded Xen library (a version hvprof does not know).
    #[error("{lib} has no symbol {symbol}")]
    SymbolMissing {
        /// The library.
        lib: String,
        /// The C function.
        symbol: &'static str,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// A libxenctrl/libxenstore call failed (errno kept).
    #[error("{call} failed")]
    Call {
        /// The call and its target, e.g. `xc_vcpu_getcontext(domain 1, vCPU 0)`.
        call: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// Not in dom0: no xenstore, or `/proc/xen/capabilities` does not say `control_d`.
    #[error("not running in a Xen dom0: {0}")]
    NotDom0(String),
    /// No domain matched `--domain`.
    #[error("no Xen domain {0:?} (see `hvprof vms`)")]
    NoSuchDomain(String),
    /// Reading a file (a trace file, a fixture tree) failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A tool hvprof runs (xentrace) could not be started or failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The program.
        tool: String,
        /// What happened (exit status, stderr).
        detail: String,
    },
}

/// The Xen backend's result.
pub type Result<T> = std::result::Result<T, XenError>;
