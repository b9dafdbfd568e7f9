//! Process memory maps: `/proc/PID/maps`.
//!
//! Stage: user-space normalization. Input: the text of `/proc/PID/maps`. Output: [`ProcMaps`],
//! which finds the mapping containing a user virtual address and turns the address into an
//! offset in the mapped file ([`MapEntry::file_offset`]) — the input of
//! [`crate::ElfFile::file_offset_to_svma`].
//!
//! # Format
//!
//! From `proc(5)` ("/proc/pid/maps") and `fs/proc/task_mmu.c` (`show_map_vma`), one mapping per
//! line:
//!
//! ```text
//! 55d0c6a00000-55d0c6a2b000 r-xp 00002000 fd:01 1835021                    /usr/bin/qemu-system-x86_64
//! 7ffd5a1f0000-7ffd5a1f2000 r-xp 00000000 00:00 0                          [vdso]
//! 7f0000000000-7f0000021000 rw-p 00000000 00:00 0
//! ```
//!
//! Fields: `START-END` (hex user virtual addresses, `END` exclusive), `PERMS` (`rwx` then `p`
//! private or `s` shared), `OFFSET` (hex byte offset in the file of `START`), `DEV`
//! (`major:minor` in hex), `INODE` (decimal, 0 for none), then space padding and an optional
//! `PATHNAME` that runs to the end of the line. It may be empty (anonymous memory), a pseudo
//! name such as `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, `[anon:NAME]`, `anon_inode:...`, or a
//! file path, which may contain spaces and gets a ` (deleted)` suffix once unlinked. The kernel
//! escapes a newline in a path as `\012` and nothing else, so such paths stay escaped here.
//!
//! # Example
//!
//! ```no_run
//! # fn main() -> hvprof_symbols::Result<()> {
//! let maps = hvprof_symbols::ProcMaps::read(std::process::id())?;
//! let ip = 0x55d0_c6a0_1234;
//! if let Some(m) = maps.find(ip) {
//!     println!("{:?} at file offset {:?}", m.path, m.file_offset(ip));
//! }
//! # Ok(())
//! # }
//! ```

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const FORMAT: &str = "maps";

/// The parsed mappings of one process, sorted by start address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcMaps {
    entries: Vec<MapEntry>,
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First address of the mapping (user virtual address, page-aligned).
    pub start: u64,
    /// One past the last address (user virtual address, exclusive).
    pub end: u64,
    /// Access permissions.
    pub perms: Perms,
    /// Byte offset in the mapped file that `start` maps (0 for anonymous memory).
    pub offset: u64,
    /// Device of the mapped file as `(major, minor)`; `(0, 0)` for none.
    pub dev: (u32, u32),
    /// Inode of the mapped file; 0 for none.
    pub inode: u64,
    /// What is mapped.
    pub path: MapPath,
}

/// The permission column of a mapping (`r-xp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Perms {
    /// `r`: readable.
    pub read: bool,
    /// `w`: writable.
    pub write: bool,
    /// `x`: executable.
    pub exec: bool,
    /// `s` (shared) rather than `p` (private, copy-on-write).
    pub shared: bool,
}

/// The pathname column of a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MapPath {
    /// No pathname: anonymous memory (heap from `mmap`, JIT code, ...).
    Anonymous,
    /// A file, by the absolute path the process saw when mapping it.
    File {
        /// The path, without the ` (deleted)` suffix.
        path: PathBuf,
        /// Whether the kernel marked the path ` (deleted)`: the file was unlinked (or replaced
        /// by rename, as package upgrades do), so `path` may now name a different file.
        deleted: bool,
    },
    /// A pseudo name that is not a path: `[heap]`, `[stack]`, `[vdso]`, `[vvar]`,
    /// `[vsyscall]`, `[anon:NAME]`, `anon_inode:[perf_event]`, ...
    Pseudo(String),
}

impl MapEntry {
    /// Whether the mapping is executable (`x`): only such mappings hold code.
    pub fn is_exec(&self) -> bool {
        self.perms.exec
    }

    /// Whether `addr` (user virtual address) lies in `[start, end)`.
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// The byte offset in the mapped file of user virtual address `addr`:
    /// `addr - start + offset`. `None` if `addr` is outside the mapping (or the sum overflows).
    ///
    /// This is meaningful only for [`MapPath::File`]; it is the input of
    /// [`crate::ElfFile::file_offset_to_svma`].
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        if !self.contains(addr) {
            return None;
        }
        (addr - self.start).checked_add(self.offset)
    }

    /// The mapped file's path, if this is a file mapping (deleted or not).
    pub fn file_path(&self) -> Option<&Path> {
        match &self.path {
            MapPath::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl ProcMaps {
    /// A table from mappings learnt elsewhere (perf's MMAP/MMAP2 records): later entries that
    /// overlap earlier ones replace them, as a new `mmap(2)` over an old range does.
    pub fn from_entries(entries: impl IntoIterator<Item = MapEntry>) -> Self {
        let mut m = ProcMaps::default();
        for e in entries {
            m.insert(e);
        }
        m
    }

    /// Adds a mapping, replacing the parts of older ones it overlaps, keeping the table sorted.
    pub fn insert(&mut self, e: MapEntry) {
        if e.start >= e.end {
            return;
        }
        let mut kept = Vec::with_capacity(self.entries.len() + 2);
        for old in self.entries.drain(..) {
            if old.end <= e.start || old.start >= e.end {
                kept.push(old);
                continue;
            }
            if old.start < e.start {
                kept.push(MapEntry {
                    end: e.start,
                    ..old.clone()
                });
            }
            if old.end > e.end {
                let cut = e.end - old.start;
                kept.push(MapEntry {
                    start: e.end,
                    offset: old.offset.saturating_add(cut),
                    ..old
                });
            }
        }
        let at = kept.partition_point(|m| m.start < e.start);
        kept.insert(at, e);
        self.entries = kept;
    }

    /// Parses the text of `/proc/PID/maps` (format in the [module docs](self)).
    ///
    /// Empty text gives an empty table (a zombie or kernel thread has no mappings).
    ///
    /// # Errors
    ///
    /// [`Error::Parse`] (1-based line, `path: None`) for a line with a malformed range,
    /// permission, offset, device or inode field, or with `START > END`.
    pub fn parse(text: &str) -> Result<Self> {
        parse_bytes(text.as_bytes(), None)
    }

    /// Reads `/proc/<pid>/maps` of the live system.
    ///
    /// # Errors
    ///
    /// As [`ProcMaps::read_from`] with root `/proc`.
    pub fn read(pid: u32) -> Result<Self> {
        Self::read_from(Path::new("/proc"), pid)
    }

    /// Reads `<root>/<pid>/maps`, where `root` is a procfs mount or a fake proc tree in tests.
    ///
    /// Paths are kept byte-exact (non-UTF-8 file names survive).
    ///
    /// # Errors
    ///
    /// [`Error::Read`] naming the file if it cannot be read (no such process, permission: reading
    /// another user's maps needs `PTRACE_MODE_READ`), then [`Error::Parse`] with the path.
    pub fn read_from(root: &Path, pid: u32) -> Result<Self> {
        let path = root.join(pid.to_string()).join("maps");
        let bytes = std::fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        parse_bytes(&bytes, Some(&path))
    }

    /// The mapping containing `addr` (user virtual address), by binary search.
    pub fn find(&self, addr: u64) -> Option<&MapEntry> {
        let idx = self.entries.partition_point(|e| e.start <= addr);
        let e = self.entries.get(idx.checked_sub(1)?)?;
        e.contains(addr).then_some(e)
    }

    /// All mappings, sorted by start address.
    pub fn entries(&self) -> &[MapEntry] {
        &self.entries
    }

    /// Iterates over the mappings in address order.
    pub fn iter(&self) -> std::slice::Iter<'_, MapEntry> {
        self.entries.iter()
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no mappings.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<MapEntry> for ProcMaps {
    /// Builds a table from entries in any order (e.g. from perf `MMAP2` records); they are
    /// sorted by start address.
    fn from_iter<I: IntoIterator<Item = MapEntry>>(iter: I) -> Self {
        let mut entries: Vec<MapEntry> = iter.into_iter().collect();
        entries.sort_by_key(|e| e.start);
        ProcMaps { entries }
    }
}

fn parse_bytes(text: &[u8], path: Option<&Path>) -> Result<ProcMaps> {
    let mut entries = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry = parse_line(line).map_err(|reason| Error::Parse {
            format: FORMAT,
            path: path.map(Path::to_owned),
            line: i + 1,
            reason,
        })?;
        entries.push(entry);
    }
    // The kernel prints in address order; sort anyway for hand-made input.
    entries.sort_by_key(|e| e.start);
    Ok(ProcMaps { entries })
}

fn hex(field: &[u8], what: &str) -> std::result::Result<u64, String> {
    let s = std::str::from_utf8(field).unwrap_or("");
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "malformed {what} {:?}",
            String::from_utf8_lossy(field)
        ));
    }
    u64::from_str_radix(s, 16).map_err(|e| format!("{what}: {e}"))
}

fn parse_line(line: &[u8]) -> std::result::Result<MapEntry, String> {
    let mut rest = line;
    let mut field = || {
        let i = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let f = &rest[..i];
        rest = rest.get(i + 1..).unwrap_or(&[]);
        f
    };
    let range = field();
    let perms = field();
    let offset = field();
    let dev = field();
    let inode = field();

    let dash = range.iter().position(|&b| b == b'-').ok_or_else(|| {
        format!(
            "address range {:?} has no '-'",
            String::from_utf8_lossy(range)
        )
    })?;
    let start = hex(&range[..dash], "start address")?;
    let end = hex(&range[dash + 1..], "end address")?;
    if start > end {
        return Err(format!("start {start:#x} is above end {end:#x}"));
    }

    let perms = match perms {
        &[r, w, x, s]
            if matches!(r, b'r' | b'-')
                && matches!(w, b'w' | b'-')
                && matches!(x, b'x' | b'-')
                && matches!(s, b'p' | b's') =>
        {
            Perms {
                read: r == b'r',
                write: w == b'w',
                exec: x == b'x',
                shared: s == b's',
            }
        }
        _ => {
            return Err(format!(
                "malformed permissions {:?}",
                String::from_utf8_lossy(perms)
            ))
        }
    };
    let offset = hex(offset, "file offset")?;

    let colon = dev.iter().position(|&b| b == b':');
    let dev = colon
        .and_then(|c| {
            let major = u32::try_from(hex(&dev[..c], "").ok()?).ok()?;
            let minor = u32::try_from(hex(&dev[c + 1..], "").ok()?).ok()?;
            Some((major, minor))
        })
        .ok_or_else(|| format!("malformed device {:?}", String::from_utf8_lossy(dev)))?;

    let inode = std::str::from_utf8(inode)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("malformed inode {:?}", String::from_utf8_lossy(inode)))?;

    let name = {
        let i = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        &rest[i..]
    };
    let path = if name.is_empty() {
        MapPath::Anonymous
    } else if name.first() == Some(&b'/') {
        let (name, deleted) = match name.strip_suffix(b" (deleted)") {
            Some(n) => (n, true),
            None => (name, false),
        };
        MapPath::File {
            path: PathBuf::from(OsStr::from_bytes(name)),
            deleted,
        }
    } else {
        MapPath::Pseudo(String::from_utf8_lossy(name).into_owned())
    };

    Ok(MapEntry {
        start,
        end,
        perms,
        offset,
        dev,
        inode,
        path,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn insert_replaces_what_a_new_mapping_covers() {
        let e = |start, end, offset, name: &str| MapEntry {
            start,
            end,
            perms: Perms::default(),
            offset,
            dev: (0, 0),
            inode: 0,
            path: MapPath::Pseudo(name.into()),
        };
        let mut m = ProcMaps::from_entries([e(0x1000, 0x5000, 0, "a"), e(0x8000, 0x9000, 0, "c")]);
        m.insert(e(0x2000, 0x3000, 0, "b"));
        let got: Vec<_> = m
            .iter()
            .map(|x| (x.start, x.end, x.offset, x.path.clone()))
            .collect();
        let p = |n: &str| MapPath::Pseudo(n.into());
        assert_eq!(
            got,
            vec![
                (0x1000, 0x2000, 0, p("a")),
                (0x2000, 0x3000, 0, p("b")),
                (0x3000, 0x5000, 0x2000, p("a")),
                (0x8000, 0x9000, 0, p("c")),
            ]
        );
        assert_eq!(m.find(0x3500).map(|x| x.offset), Some(0x2000));
        m.insert(e(0x5000, 0x5000, 0, "empty"));
        assert_eq!(m.len(), 4);
    }

    use super::*;

    const FIXTURE: &str = "\
55d0c6a00000-55d0c6a02000 r--p 00000000 fd:01 1835021                    /usr/bin/qemu-system-x86_64
55d0c6a02000-55d0c6a2b000 r-xp 00002000 fd:01 1835021                    /usr/bin/qemu-system-x86_64
55d0c7000000-55d0c7100000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000021000 rwxp 00000000 00:00 0 
7f1000000000-7f1000010000 r-xp 00010000 103:02 42                         /opt/My Apps/lib foo.so (deleted)
7f2000000000-7f2000001000 rw-s 00000000 00:0f 1234                       anon_inode:[perf_event]
7f3000000000-7f3000001000 r--p 00000000 00:00 0                          [anon:glibc malloc]
7ffd5a1f0000-7ffd5a1f2000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_fixture() {
        let m = ProcMaps::parse(FIXTURE).unwrap();
        assert_eq!(m.len(), 9);
        let text = m.find(0x55d0_c6a0_2010).unwrap();
        assert!(text.is_exec());
        assert_eq!(text.file_offset(0x55d0_c6a0_2010), Some(0x2010));
        assert_eq!(text.dev, (0xfd, 1));
        assert_eq!(text.inode, 1_835_021);
        assert_eq!(
            text.file_path(),
            Some(Path::new("/usr/bin/qemu-system-x86_64"))
        );

        let heap = m.find(0x55d0_c700_0000).unwrap();
        assert_eq!(heap.path, MapPath::Pseudo("[heap]".into()));
        assert!(!heap.is_exec());

        let anon = m.find(0x7f00_0000_1000).unwrap();
        assert_eq!(anon.path, MapPath::Anonymous);
        assert!(anon.perms.exec && anon.perms.write && !anon.perms.shared);

        let del = m.find(0x7f10_0000_0008).unwrap();
        assert_eq!(
            del.path,
            MapPath::File {
                path: "/opt/My Apps/lib foo.so".into(),
                deleted: true
            }
        );
        assert_eq!(del.dev, (0x103, 2));
        assert_eq!(del.file_offset(0x7f10_0000_0008), Some(0x1_0008));

        let perf = m.find(0x7f20_0000_0000).unwrap();
        assert!(perf.perms.shared);
        assert_eq!(perf.path, MapPath::Pseudo("anon_inode:[perf_event]".into()));
        assert_eq!(
            m.find(0x7f30_0000_0000).unwrap().path,
            MapPath::Pseudo("[anon:glibc malloc]".into())
        );
        assert_eq!(
            m.find(0x7ffd_5a1f_0000).unwrap().path,
            MapPath::Pseudo("[vdso]".into())
        );
        let vsys = m.find(0xffff_ffff_ff60_0000).unwrap();
        assert!(vsys.perms.exec && !vsys.perms.read);
    }

    #[test]
    fn find_boundaries() {
        let m = ProcMaps::parse(FIXTURE).unwrap();
        assert!(m.find(0).is_none());
        assert!(m.find(0x55d0_c69f_ffff).is_none());
        assert_eq!(m.find(0x55d0_c6a0_1fff).unwrap().start, 0x55d0_c6a0_0000);
        assert_eq!(m.find(0x55d0_c6a0_2000).unwrap().start, 0x55d0_c6a0_2000);
        assert!(m.find(0x55d0_c6a2_b000).is_none()); // end is exclusive
        assert!(m.find(u64::MAX).is_none());
        let e = m.find(0x55d0_c6a0_2000).unwrap();
        assert_eq!(e.file_offset(e.end), None);
    }

    #[test]
    fn empty_text_is_empty_table() {
        assert!(ProcMaps::parse("").unwrap().is_empty());
        assert!(ProcMaps::parse("\n").unwrap().is_empty());
    }

    #[test]
    fn malformed_lines_are_line_numbered() {
        let good = "00400000-00401000 r-xp 00000000 08:01 1 /bin/x\n";
        let cases = [
            ("00400000 r-xp 00000000 08:01 1 /bin/x", "no '-'"),
            (
                "0040z000-00401000 r-xp 00000000 08:01 1 /bin/x",
                "start address",
            ),
            (
                "00402000-00401000 r-xp 00000000 08:01 1 /bin/x",
                "above end",
            ),
            (
                "00400000-00401000 rxp 00000000 08:01 1 /bin/x",
                "permissions",
            ),
            (
                "00400000-00401000 r-xq 00000000 08:01 1 /bin/x",
                "permissions",
            ),
            (
                "00400000-00401000 r-xp 0000g000 08:01 1 /bin/x",
                "file offset",
            ),
            ("00400000-00401000 r-xp 00000000 0801 1 /bin/x", "device"),
            ("00400000-00401000 r-xp 00000000 08:01 x1 /bin/x", "inode"),
            ("00400000-00401000 r-xp", "file offset"),
        ];
        for (bad, reason) in cases {
            let text = format!("{good}{bad}\n");
            match ProcMaps::parse(&text) {
                Err(Error::Parse {
                    line: 2,
                    reason: r,
                    format: "maps",
                    ..
                }) => {
                    assert!(r.contains(reason), "{bad:?}: {r}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn from_iter_sorts() {
        let m = ProcMaps::parse(FIXTURE).unwrap();
        let rev: ProcMaps = m.iter().rev().cloned().collect();
        assert_eq!(rev, m);
    }
}
