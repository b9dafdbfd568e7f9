//! Where detection reads from: the live system or a captured tree, and the kernel log.
//!
//! Every path the detector reads is an absolute path of the live system (`/sys/...`,
//! `/proc/...`) joined onto [`Source::root`]. A captured tree is a directory laid out like `/`:
//! `DIR/sys/hypervisor/type`, `DIR/proc/cpuinfo`, `DIR/dmesg` (or `DIR/dmesg.txt`), and
//! `DIR/cpuid.txt` (see [`crate::CpuidDump`]) because CPUID cannot be read from a file tree.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What to inspect: the running system, or a captured tree.
///
/// Construct with [`Source::live`] or [`Source::tree`]; add a saved kernel log with
/// [`Source::with_dmesg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Directory that stands for `/`: `"/"` for the live system, the capture directory for a tree.
    pub root: PathBuf,
    /// A saved kernel log (`dmesg` output) to use instead of the one found under `root`
    /// (`root/dmesg`, `root/dmesg.txt`) or, when live, `/dev/kmsg`.
    pub dmesg: Option<PathBuf>,
    /// `true`: also use what only the running system has: the `CPUID` instruction, `/dev/kmsg`,
    /// opening `/dev/kvm`, the caller's effective uid. `false`: read only files under `root`.
    pub live: bool,
}

impl Source {
    /// The running system: root `/`, live CPUID and kernel log.
    pub fn live() -> Self {
        Source {
            root: PathBuf::from("/"),
            dmesg: None,
            live: true,
        }
    }

    /// A captured tree at `root`; CPUID comes from `root/cpuid.txt`, the kernel log from
    /// `root/dmesg` or `root/dmesg.txt`.
    pub fn tree(root: impl Into<PathBuf>) -> Self {
        Source {
            root: root.into(),
            dmesg: None,
            live: false,
        }
    }

    /// Use the saved kernel log at `path` (e.g. `dmesg > boot.log`) instead of any other.
    pub fn with_dmesg(mut self, path: impl Into<PathBuf>) -> Self {
        self.dmesg = Some(path.into());
        self
    }
}

/// An input that exists but could not be used: unreadable, or not in the expected format.
///
/// Missing optional files are not problems (their absence is itself evidence, e.g. no
/// `/sys/hypervisor` on KVM); they appear here only when they were needed for a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputProblem {
    /// The path as the live system names it (e.g. `/sys/hypervisor/properties/features`), or
    /// `kernel log` / `cpuid`.
    pub path: String,
    /// What went wrong, e.g. `permission denied`, `not hexadecimal: "zz"`.
    pub problem: String,
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadFail {
    /// No such file or directory.
    Missing,
    /// Any other error, with its description (permission denied, EPERM from lockdown, ...).
    Failed(String),
}

/// Reads files under a root, remembering problems.
pub(crate) struct Fs {
    root: PathBuf,
    pub(crate) problems: Vec<InputProblem>,
}

impl Fs {
    pub(crate) fn new(root: &Path) -> Self {
        Fs {
            root: root.to_path_buf(),
            problems: Vec::new(),
        }
    }

    /// `abs` (a live-system absolute path) under the root.
    pub(crate) fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Read a file; invalid UTF-8 is replaced, not an error.
    pub(crate) fn try_read(&self, abs: &str) -> Result<String, ReadFail> {
        match fs::read(self.path(abs)) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ReadFail::Missing),
            Err(e) if e.raw_os_error() == Some(20) => Err(ReadFail::Missing), // ENOTDIR
            Err(e) => Err(ReadFail::Failed(describe_io(&e))),
        }
    }

    /// Read a file, recording anything but "missing" as a problem.
    pub(crate) fn read(&mut self, abs: &str) -> Option<String> {
        match self.try_read(abs) {
            Ok(s) => Some(s),
            Err(ReadFail::Missing) => None,
            Err(ReadFail::Failed(why)) => {
                self.problem(abs, why);
                None
            }
        }
    }

    /// [`Fs::read`], trimmed.
    pub(crate) fn read_trim(&mut self, abs: &str) -> Option<String> {
        self.read(abs).map(|s| s.trim().to_string())
    }

    /// Record a problem with `abs`.
    pub(crate) fn problem(&mut self, abs: &str, problem: impl Into<String>) {
        self.problems.push(InputProblem {
            path: abs.to_string(),
            problem: problem.into(),
        });
    }

    /// Whether anything (file, directory, symlink, device) exists at `abs`.
    pub(crate) fn exists(&self, abs: &str) -> bool {
        fs::symlink_metadata(self.path(abs)).is_ok()
    }

    /// Names in directory `abs`, sorted; empty if it is missing or unreadable.
    pub(crate) fn list(&self, abs: &str) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(self.path(abs)) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Last component of the target of symlink `abs` (e.g. a device's `driver` link).
    pub(crate) fn link_name(&self, abs: &str) -> Option<String> {
        let target = fs::read_link(self.path(abs)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Open `abs` for reading and writing (used for `/dev/kvm`), reporting the error text.
    pub(crate) fn open_rw(&self, abs: &str) -> Result<(), String> {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(abs))
            .map(drop)
            .map_err(|e| describe_io(&e))
    }
}

/// A short description of an I/O error: `permission denied (EACCES)`, ...
pub(crate) fn describe_io(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(1) => "operation not permitted (EPERM)".to_string(),
        Some(13) => "permission denied (EACCES)".to_string(),
        Some(2) => "no such file or directory (ENOENT)".to_string(),
        Some(6) => "no such device or address (ENXIO)".to_string(),
        Some(19) => "no such device (ENODEV)".to_string(),
        _ => e.to_string(),
    }
}

/// How the kernel log was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelLogStatus {
    /// Read, with at least one line.
    Read,
    /// Found but empty.
    Empty,
    /// No saved log in the tree (`dmesg`, `dmesg.txt`) and none given.
    NotFound,
    /// Exists but could not be read (`dmesg_restrict`, permissions, a missing `--dmesg` file).
    NotReadable,
}

/// The kernel log as used for detection; see [`KernelLog`] for the lines themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelLogInfo {
    /// Where it came from: a file path, or `/dev/kmsg`; `None` when nothing was found.
    pub origin: Option<String>,
    /// Whether it could be used.
    pub status: KernelLogStatus,
    /// Number of lines read.
    pub lines: usize,
    /// Whether the log reaches back to boot (has the `Linux version` banner or a
    /// `[    0.000000]` timestamp). When `false` the ring buffer wrapped or the capture was cut,
    /// and the *absence* of a boot message is not evidence of anything.
    pub starts_at_boot: bool,
    /// Why it could not be read, or what limits it (e.g. `dmesg_restrict=1`).
    pub note: Option<String>,
}

/// Kernel log lines with the `[timestamp]` and `<priority>` prefixes removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLog {
    /// One entry per line, prefix removed, trailing white space removed; continuation lines
    /// (which start with white space in `dmesg` output) are kept as they are, trimmed.
    pub lines: Vec<String>,
}

impl KernelLog {
    /// Parse `dmesg` output (with or without `[   12.345678]` timestamps).
    pub fn parse(text: &str) -> Self {
        KernelLog {
            lines: text.lines().map(strip_prefix).collect(),
        }
    }

    /// First line containing `needle`, with its 1-based line number.
    pub fn find(&self, needle: &str) -> Option<(usize, &str)> {
        self.lines
            .iter()
            .enumerate()
            .find(|(_, l)| l.contains(needle))
            .map(|(i, l)| (i + 1, l.as_str()))
    }

    /// All lines containing `needle`, with their 1-based line numbers.
    pub fn find_all<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = (usize, &'a str)> + 'a {
        self.lines
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.contains(needle))
            .map(|(i, l)| (i + 1, l.as_str()))
    }

    /// Whether the log reaches back to boot; see [`KernelLogInfo::starts_at_boot`].
    pub fn starts_at_boot(&self, raw_first_lines: &str) -> bool {
        self.lines.iter().any(|l| l.starts_with("Linux version "))
            || raw_first_lines.contains("[    0.000000]")
    }
}

/// Remove `<6>` and `[    0.000000] ` prefixes.
fn strip_prefix(line: &str) -> String {
    let mut s = line;
    if s.starts_with('<') {
        if let Some(end) = s.find('>') {
            if s[1..end].chars().all(|c| c.is_ascii_digit()) {
                s = &s[end + 1..];
            }
        }
    }
    let t = s.trim_start();
    if t.starts_with('[') {
        if let Some(end) = t.find(']') {
            let inner = t[1..end].trim();
            if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return t[end + 1..].trim().to_string();
            }
        }
    }
    s.trim().to_string()
}

/// `O_NONBLOCK` from Linux `include/uapi/asm-generic/fcntl.h` (`00004000`), the value on x86
/// and arm64; used so reading `/dev/kmsg` stops with `EAGAIN` at the end of the buffer instead
/// of waiting for new messages.
const O_NONBLOCK: i32 = 0o4000;

/// Upper bound on records read from `/dev/kmsg` (the ring buffer holds far fewer).
const KMSG_MAX_RECORDS: usize = 1_000_000;

/// Find and read the kernel log for `src`.
pub(crate) fn load_kernel_log(src: &Source, fs: &Fs) -> (Option<KernelLog>, KernelLogInfo) {
    let from_text = |origin: String, text: String| {
        let log = KernelLog::parse(&text);
        let head: String = text.lines().take(3).collect::<Vec<_>>().join("\n");
        let starts = log.starts_at_boot(&head);
        let n = log.lines.len();
        let info = KernelLogInfo {
            origin: Some(origin),
            status: if n == 0 {
                KernelLogStatus::Empty
            } else {
                KernelLogStatus::Read
            },
            lines: n,
            starts_at_boot: starts,
            note: if n == 0 {
                Some("kernel log is empty: no evidence from it".to_string())
            } else if !starts {
                Some(
                    "kernel log does not reach back to boot (no 'Linux version' banner): the \
                     ring buffer wrapped or the capture was cut, so missing boot messages prove \
                     nothing"
                        .to_string(),
                )
            } else {
                None
            },
        };
        (if n == 0 { None } else { Some(log) }, info)
    };
    let not_readable = |origin: String, why: String| {
        (
            None,
            KernelLogInfo {
                origin: Some(origin),
                status: KernelLogStatus::NotReadable,
                lines: 0,
                starts_at_boot: false,
                note: Some(why),
            },
        )
    };

    if let Some(p) = &src.dmesg {
        return match fs::read(p) {
            Ok(b) => from_text(
                p.display().to_string(),
                String::from_utf8_lossy(&b).into_owned(),
            ),
            Err(e) => not_readable(
                p.display().to_string(),
                format!("kernel log not readable: {}", describe_io(&e)),
            ),
        };
    }
    if !src.live {
        for name in ["/dmesg", "/dmesg.txt"] {
            match fs.try_read(name) {
                Ok(text) => return from_text(fs.path(name).display().to_string(), text),
                Err(ReadFail::Missing) => continue,
                Err(ReadFail::Failed(why)) => {
                    return not_readable(
                        fs.path(name).display().to_string(),
                        format!("kernel log not readable: {why}"),
                    )
                }
            }
        }
        return (
            None,
            KernelLogInfo {
                origin: None,
                status: KernelLogStatus::NotFound,
                lines: 0,
                starts_at_boot: false,
                note: Some(
                    "no kernel log in the tree (dmesg or dmesg.txt) and none given with --dmesg"
                        .to_string(),
                ),
            },
        );
    }
    let restrict = fs
        .try_read("/proc/sys/kernel/dmesg_restrict")
        .ok()
        .map(|s| s.trim().to_string());
    match read_kmsg(&fs.path("/dev/kmsg")) {
        Ok(text) => from_text("/dev/kmsg".to_string(), text),
        Err(e) => {
            let mut why = format!("kernel log not readable: /dev/kmsg: {}", describe_io(&e));
            if let Some(r) = restrict {
                why.push_str(&format!(
                    " (kernel.dmesg_restrict={r}; pass a saved log with --dmesg)"
                ));
            }
            not_readable("/dev/kmsg".to_string(), why)
        }
    }
}

/// Read every record currently in the kernel ring buffer from `/dev/kmsg`, without blocking,
/// and format it like `dmesg`: `[seconds.micros] message`.
///
/// Record format (Linux `Documentation/ABI/testing/dev-kmsg`):
/// `priority,sequence,timestamp_us,flags[,...];message\n` followed by continuation lines
/// ` KEY=value\n`. One `read` returns one record; `EAGAIN` means the end; `EPIPE` means a
/// record was overwritten while reading and the next read continues.
fn read_kmsg(path: &Path) -> io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    let mut out = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..KMSG_MAX_RECORDS {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                let Some((head, rest)) = rec.split_once(';') else {
                    continue;
                };
                let msg = rest.split('\n').next().unwrap_or("");
                let ts_us: u64 = head
                    .split(',')
                    .nth(2)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                out.push_str(&format!(
                    "[{:5}.{:06}] {}\n",
                    ts_us / 1_000_000,
                    ts_us % 1_000_000,
                    msg
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if out.is_empty() {
                    return Err(e);
                }
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_timestamps_and_priorities() {
        assert_eq!(
            strip_prefix("[    0.000000] Booting paravirtualized kernel on Xen"),
            "Booting paravirtualized kernel on Xen"
        );
        assert_eq!(
            strip_prefix("<6>[    1.5] xen: PV spinlocks enabled"),
            "xen: PV spinlocks enabled"
        );
        assert_eq!(
            strip_prefix(" unplug emulated NICs."),
            "unplug emulated NICs."
        );
        assert_eq!(strip_prefix("[ bracket text] x"), "[ bracket text] x");
        assert_eq!(strip_prefix("[unterminated"), "[unterminated");
        assert_eq!(strip_prefix("<x>"), "<x>");
    }
}
