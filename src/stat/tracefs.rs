//! Tracepoints through tracefs: ids, `format` files, and field access in raw payloads.
//!
//! Input: a tracefs directory (`/sys/kernel/tracing`) or the text of one `format` file; output:
//! a [`Tracepoint`] (perf `config` id plus field layout) whose [`Field`]s read values out of
//! the `PERF_SAMPLE_RAW` payload of a sample. Offsets and sizes always come from the format
//! file, never from a compiled-in struct, so a kernel that moves fields is read correctly.
//!
//! ```
//! use hvprof::stat::tracefs::TraceFormat;
//! let text = "name: kvm_pio\nID: 110\nformat:\n\
//!     \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
//!     \tfield:unsigned int port;\toffset:12;\tsize:4;\tsigned:0;\n";
//! let f = TraceFormat::parse(text).unwrap();
//! assert_eq!(f.id, 110);
//! assert_eq!(f.field("port").unwrap().offset, 12);
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;

/// One field of a tracepoint's record, from a `field:` line of its `format` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Field name (`exit_reason`; array suffixes such as `[15]` removed).
    pub name: String,
    /// C type as declared (`unsigned int`, `u64`, `__u8`).
    pub c_type: String,
    /// Byte offset in the raw payload.
    pub offset: usize,
    /// Size in bytes (for arrays: the whole array).
    pub size: usize,
    /// `signed:1`.
    pub signed: bool,
}

impl Field {
    /// Reads the field as an unsigned integer (native endianness) from a raw payload; signed
    /// fields are sign-extended to 64 bits and returned as their two's complement.
    /// `None` when the payload is too short or the size is not 1, 2, 4 or 8.
    pub fn read_u64(&self, raw: &[u8]) -> Option<u64> {
        let b = raw.get(self.offset..self.offset.checked_add(self.size)?)?;
        let v = match self.size {
            1 => {
                if self.signed {
                    i64::from(b[0] as i8) as u64
                } else {
                    u64::from(b[0])
                }
            }
            2 => {
                let v = u16::from_ne_bytes([b[0], b[1]]);
                if self.signed {
                    i64::from(v as i16) as u64
                } else {
                    u64::from(v)
                }
            }
            4 => {
                let v = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                if self.signed {
                    i64::from(v as i32) as u64
                } else {
                    u64::from(v)
                }
            }
            8 => u64::from_ne_bytes(b.try_into().ok()?),
            _ => return None,
        };
        Some(v)
    }

    /// Reads the field and truncates it to 32 bits.
    pub fn read_u32(&self, raw: &[u8]) -> Option<u32> {
        self.read_u64(raw).map(|v| v as u32)
    }

    /// Reads the field as a signed integer (sign-extended when the format says `signed:1`).
    pub fn read_i64(&self, raw: &[u8]) -> Option<i64> {
        self.read_u64(raw).map(|v| v as i64)
    }
}

/// A parsed tracefs `format` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceFormat {
    /// `name:` line (`kvm_exit`).
    pub name: String,
    /// `ID:` line: the perf `config` for `PERF_TYPE_TRACEPOINT`.
    pub id: u64,
    /// Every field, common ones (`common_type`, `common_pid`, ...) included.
    pub fields: Vec<Field>,
}

impl TraceFormat {
    /// Parses the text of a `format` file.
    ///
    /// # Errors
    /// A message naming the line when there is no `ID:` or a `field:` line is malformed.
    pub fn parse(text: &str) -> std::result::Result<TraceFormat, String> {
        let mut name = String::new();
        let mut id = None;
        let mut fields = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if let Some(v) = t.strip_prefix("name:") {
                name = v.trim().to_string();
            } else if let Some(v) = t.strip_prefix("ID:") {
                id = Some(
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("line {}: bad ID {:?}", i + 1, v.trim()))?,
                );
            } else if t.starts_with("field:") {
                fields.push(
                    parse_field(t)
                        .ok_or_else(|| format!("line {}: malformed field line {:?}", i + 1, t))?,
                );
            } else if t.starts_with("print fmt:") {
                break;
            }
        }
        let id = id.ok_or_else(|| "no `ID:` line".to_string())?;
        Ok(TraceFormat { name, id, fields })
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn parse_field(line: &str) -> Option<Field> {
    // "field:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;"
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for part in line.split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim());
        } else if let Some(v) = part.strip_prefix("offset:") {
            offset = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("size:") {
            size = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("signed:") {
            signed = v.trim() == "1";
        }
    }
    let decl = decl?;
    let (c_type, name) = match decl.rfind(|c: char| c.is_whitespace()) {
        Some(p) => (decl[..p].trim(), decl[p..].trim()),
        None => ("", decl),
    };
    let name = name.split('[').next()?.trim_start_matches('*').to_string();
    if name.is_empty() {
        return None;
    }
    Some(Field {
        name,
        c_type: c_type.to_string(),
        offset: offset?,
        size: size?,
        signed,
    })
}

/// A tracepoint found in tracefs: its system, name and layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tracepoint {
    /// Subsystem (`kvm`, `xen`).
    pub system: String,
    /// Event name (`kvm_exit`).
    pub name: String,
    /// The parsed `format` file (its `id` is the perf `config`).
    pub format: TraceFormat,
}

impl Tracepoint {
    /// `system:name`, as perf prints it.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.system, self.name)
    }

    /// Loads `<tracefs>/events/<system>/<name>/format`.
    ///
    /// # Errors
    /// A message saying whether the tracepoint is absent, unreadable, or malformed.
    pub fn load(
        tracefs: &Path,
        system: &str,
        name: &str,
    ) -> std::result::Result<Tracepoint, String> {
        let path = tracefs
            .join("events")
            .join(system)
            .join(name)
            .join("format");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "tracepoint {system}:{name} absent ({} not found)",
                    path.display()
                ))
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let format = TraceFormat::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Tracepoint {
            system: system.to_string(),
            name: name.to_string(),
            format,
        })
    }
}

/// The default tracefs mount point.
pub const DEFAULT_TRACEFS: &str = "/sys/kernel/tracing";
/// The default debugfs mount point.
pub const DEFAULT_DEBUGFS: &str = "/sys/kernel/debug";

/// What [`ensure_mounted`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// The file system was already there.
    Present,
    /// hvprof mounted it (root, default mount point, not mounted before).
    Mounted,
    /// Not there and not mounted; the message says why and what to run.
    Absent(String),
}

/// Makes sure `dir` holds a mounted `fstype` (`tracefs` or `debugfs`), probing `probe` (a path
/// relative to `dir` that exists once mounted, e.g. `events` or `kvm`).
///
/// When it is missing, `dir` is the default mount point of that file system (`/sys/kernel/tracing`,
/// `/sys/kernel/debug`) and we are root, this runs `mount -t <fstype> none <dir>` (as
/// `perf` and `trace-cmd` expect an administrator to); otherwise it reports the command to run.
pub fn ensure_mounted(dir: &Path, fstype: &str, probe: &str) -> MountState {
    if dir.join(probe).exists() {
        return MountState::Present;
    }
    let default = match fstype {
        "tracefs" => DEFAULT_TRACEFS,
        "debugfs" => DEFAULT_DEBUGFS,
        _ => "",
    };
    let hint = format!("mount -t {fstype} none {}", dir.display());
    if dir != Path::new(default) {
        return MountState::Absent(format!(
            "{} has no {probe} (is {fstype} mounted there?)",
            dir.display()
        ));
    }
    if already_mounted(dir, fstype) {
        return MountState::Absent(format!(
            "{fstype} is mounted at {} but has no {probe}",
            dir.display()
        ));
    }
    if effective_uid() != Some(0) {
        return MountState::Absent(format!("{fstype} is not mounted; as root run: {hint}"));
    }
    let out = std::process::Command::new("mount")
        .args(["-t", fstype, "none"])
        .arg(dir)
        .output();
    match out {
        Ok(o) if o.status.success() && dir.join(probe).exists() => MountState::Mounted,
        Ok(o) if o.status.success() => MountState::Absent(format!(
            "mounted {fstype} at {} but it has no {probe}",
            dir.display()
        )),
        Ok(o) => MountState::Absent(format!(
            "{fstype} is not mounted and `{hint}` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => MountState::Absent(format!(
            "{fstype} is not mounted and `{hint}` could not run: {e}"
        )),
    }
}

fn already_mounted(dir: &Path, fstype: &str) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts.lines().any(|l| {
        let mut it = l.split_whitespace();
        let (_, mp, ty) = (it.next(), it.next(), it.next());
        mp.map(PathBuf::from).as_deref() == Some(dir) && ty == Some(fstype)
    })
}

/// The effective uid of this process (`Uid:` line of `/proc/self/status`, 2nd value).
pub fn effective_uid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KVM_EXIT: &str = "name: kvm_exit\nID: 103\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\
\n\
\tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:__u8 insn[15];\toffset:21;\tsize:15;\tsigned:0;\n\
\tfield:bool immediate_exit;\toffset:24;\tsize:1;\tsigned:0;\n\
\n\
print fmt: \"field:fake; offset:1;\"\n";

    #[test]
    fn parse_format() {
        let f = TraceFormat::parse(KVM_EXIT).unwrap();
        assert_eq!(f.name, "kvm_exit");
        assert_eq!(f.id, 103);
        assert_eq!(f.fields.len(), 5);
        let r = f.field("exit_reason").unwrap();
        assert_eq!((r.offset, r.size, r.signed), (8, 4, false));
        assert_eq!(r.c_type, "unsigned int");
        assert_eq!(f.field("insn").unwrap().size, 15);
        assert!(f.field("common_pid").unwrap().signed);
    }

    #[test]
    fn parse_errors() {
        assert!(TraceFormat::parse("name: x\n").is_err());
        assert!(TraceFormat::parse("ID: 1\n\tfield:int x;\toffset:;\tsize:4;\n").is_err());
    }

    #[test]
    fn read_fields() {
        let f = |size, signed| Field {
            name: "x".into(),
            c_type: String::new(),
            offset: 2,
            size,
            signed,
        };
        let raw = [0u8, 0, 0xfc, 0xff, 0xff, 0xff, 1, 0, 0, 0];
        assert_eq!(f(4, false).read_u64(&raw), Some(0xffff_fffc));
        assert_eq!(f(4, true).read_i64(&raw), Some(-4));
        assert_eq!(f(1, true).read_i64(&raw), Some(-4));
        assert_eq!(f(2, false).read_u64(&raw), Some(0xfffc));
        assert_eq!(f(8, false).read_u64(&raw), Some(0x0000_0001_ffff_fffc));
        assert_eq!(f(8, false).read_u64(&raw[..9]), None);
        assert_eq!(f(3, false).read_u64(&raw), None);
    }
}
