//! xentrace: running it, its binary records ([`parse`]), and what they say per domain and vCPU
//! ([`runstate`]: runstate times, hypercalls, HVM exits) and per pCPU over time
//! ([`timeline`]).
//!
//! hvprof runs Debian's `xentrace` (package xen-utils) for the span it measures, with the
//! scheduler class (`-e 0x0002f000`), adding HVM (`0x0008f000`) and PV (`0x0020f000`) events
//! when asked, and parses the file it wrote.

pub mod parse;
pub mod runstate;
pub mod timeline;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Result, XenError};

/// `TRC_SCHED` (trace.h): scheduler events (runstate changes, switches).
pub const TRC_SCHED: u32 = 0x0002_f000;
/// `TRC_HVM` (trace.h): VM exits and entries of HVM domains.
pub const TRC_HVM: u32 = 0x0008_f000;
/// `TRC_PV` (trace.h): PV hypercalls and traps.
pub const TRC_PV: u32 = 0x0020_f000;

/// Trace files read at most (bytes); past this the rest is not read and this says so.
pub const MAX_TRACE_BYTES: u64 = 1 << 30;

/// Where xentrace is: on PATH, or Debian's versioned directory.
pub fn xentrace_path() -> Option<PathBuf> {
    let mut c: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("xentrace"))
                .collect()
        })
        .unwrap_or_default();
    for v in ["4.20", "4.19", "4.18", "4.17", "4.16"] {
        c.push(PathBuf::from(format!("/usr/lib/xen-{v}/bin/xentrace")));
    }
    c.into_iter().find(|p| p.is_file())
}

/// Runs `xentrace -D -e MASK -T SECS FILE` and returns the file's bytes (at most
/// [`MAX_TRACE_BYTES`]).
///
/// # Errors
/// xentrace is missing, fails (not root, trace buffers disabled), or its file cannot be read.
pub fn record(mask: u32, duration: Duration, dir: &Path) -> Result<Vec<u8>> {
    let bin = xentrace_path().ok_or_else(|| XenError::Tool {
        tool: "xentrace".into(),
        detail:
            "not found on PATH nor in /usr/lib/xen-*/bin (Debian: apt-get install xen-utils-4.17)"
                .into(),
    })?;
    let file = dir.join(format!("hvprof-xentrace-{}.bin", std::process::id()));
    let secs = duration.as_secs().max(1);
    let out = std::process::Command::new(&bin)
        .args([
            "-D",
            "-e",
            &format!("{mask:#010x}"),
            "-T",
            &secs.to_string(),
        ])
        .arg(&file)
        .output()
        .map_err(|e| XenError::Tool {
            tool: bin.display().to_string(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&file);
        return Err(XenError::Tool {
            tool: bin.display().to_string(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let bytes = read_trace(&file);
    let _ = std::fs::remove_file(&file);
    bytes
}

/// Reads a trace file, at most [`MAX_TRACE_BYTES`].
///
/// # Errors
/// The file cannot be opened or read.
pub fn read_trace(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let err = |source| XenError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut v = Vec::new();
    f.take(MAX_TRACE_BYTES).read_to_end(&mut v).map_err(err)?;
    Ok(v)
}
