//! What the helper reads from the guest's `/proc` and `/sys`: identity (kernel release, boot
//! id, host name), CPUs, kallsyms, modules, and a snapshot of processes (names, executable
//! maps) for the tasks that existed before the sideband stream started.
//!
//! Stage: guest procfs → **snapshot** → wire. Input: a proc root (`/proc` normally); output:
//! plain values. Parsers are pure functions on text so they are tested without a guest.

use std::path::{Path, PathBuf};

use hvprof_proto::Module;

/// One executable file mapping from `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapLine {
    /// Start (VA).
    pub start: u64,
    /// End (VA, exclusive).
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// PROT_* bits from the permission column.
    pub prot: u32,
    /// Device major.
    pub dev_major: u32,
    /// Device minor.
    pub dev_minor: u32,
    /// Inode.
    pub inode: u64,
    /// Path (may end in ` (deleted)`).
    pub path: String,
}

/// Parses one `/proc/PID/maps` line.
pub fn parse_map_line(line: &str) -> Option<MapLine> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let off = it.next()?;
    let dev = it.next()?;
    let inode = it.next()?;
    let path = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    let (maj, min) = dev.split_once(':')?;
    let p = perms.as_bytes();
    let mut prot = 0;
    if p.first() == Some(&b'r') {
        prot |= libc::PROT_READ as u32;
    }
    if p.get(1) == Some(&b'w') {
        prot |= libc::PROT_WRITE as u32;
    }
    if p.get(2) == Some(&b'x') {
        prot |= libc::PROT_EXEC as u32;
    }
    Some(MapLine {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        offset: u64::from_str_radix(off, 16).ok()?,
        prot,
        dev_major: u32::from_str_radix(maj, 16).ok()?,
        dev_minor: u32::from_str_radix(min, 16).ok()?,
        inode: inode.parse().ok()?,
        path,
    })
}

/// Parses `/proc/modules` (`name size refcount deps state address [taint]`).
pub fn parse_modules(text: &str) -> Vec<Module> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f.first()?.to_string();
            let size = f.get(1)?.parse().ok()?;
            let addr = f.get(5)?.trim_start_matches("0x");
            let base = u64::from_str_radix(addr, 16).ok()?;
            Some(Module { name, base, size })
        })
        .collect()
}

/// Parses a CPU list such as `0-3,5,7-8` (`/sys/devices/system/cpu/online`).
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    if b >= a && b - a < 65536 {
                        v.extend(a..=b);
                    }
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    v.push(a);
                }
            }
        }
    }
    v
}

/// True when every address in a kallsyms text is zero (hidden by `kptr_restrict`).
pub fn kallsyms_hidden(text: &str) -> bool {
    let mut any = false;
    for l in text.lines().take(1000) {
        if let Some(a) = l.split(' ').next() {
            any = true;
            if a.bytes().any(|c| c != b'0') {
                return false;
            }
        }
    }
    any
}

/// The guest's proc filesystem, rooted at `root` (`/proc`).
#[derive(Debug, Clone)]
pub struct Proc {
    /// Where proc is mounted.
    pub root: PathBuf,
}

impl Default for Proc {
    fn default() -> Proc {
        Proc {
            root: PathBuf::from("/proc"),
        }
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// A process found in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// pid.
    pub pid: u32,
    /// Threads: (tid, comm).
    pub threads: Vec<(u32, String)>,
    /// Executable file maps.
    pub maps: Vec<MapLine>,
}

impl Proc {
    /// `sys/kernel/osrelease`.
    pub fn kernel_release(&self) -> String {
        read_trim(&self.root.join("sys/kernel/osrelease")).unwrap_or_default()
    }

    /// `sys/kernel/random/boot_id`.
    pub fn boot_id(&self) -> String {
        read_trim(&self.root.join("sys/kernel/random/boot_id")).unwrap_or_default()
    }

    /// `sys/kernel/hostname`.
    pub fn hostname(&self) -> String {
        read_trim(&self.root.join("sys/kernel/hostname")).unwrap_or_default()
    }

    /// `kallsyms` text.
    ///
    /// # Errors
    /// The read error.
    pub fn kallsyms(&self) -> std::io::Result<String> {
        std::fs::read_to_string(self.root.join("kallsyms"))
    }

    /// Tries to set `kernel.kptr_restrict` to 0 (root in the guest); returns whether it worked.
    pub fn allow_kallsyms(&self) -> bool {
        std::fs::write(self.root.join("sys/kernel/kptr_restrict"), "0").is_ok()
    }

    /// Kernel modules.
    pub fn modules(&self) -> Vec<Module> {
        std::fs::read_to_string(self.root.join("modules"))
            .map(|t| parse_modules(&t))
            .unwrap_or_default()
    }

    /// Every process with its threads' names and executable file maps. Processes that vanish
    /// while being read are skipped.
    pub fn snapshot(&self) -> Vec<ProcInfo> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let dir = e.path();
            let mut threads = Vec::new();
            if let Ok(td) = std::fs::read_dir(dir.join("task")) {
                for t in td.flatten() {
                    if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                        if let Some(c) = read_trim(&t.path().join("comm")) {
                            threads.push((tid, c));
                        }
                    }
                }
            }
            if threads.is_empty() {
                match read_trim(&dir.join("comm")) {
                    Some(c) => threads.push((pid, c)),
                    None => continue,
                }
            }
            threads.sort();
            let maps = std::fs::read_to_string(dir.join("maps"))
                .map(|t| {
                    t.lines()
                        .filter_map(parse_map_line)
                        .filter(|m| m.prot & libc::PROT_EXEC as u32 != 0)
                        .collect()
                })
                .unwrap_or_default();
            out.push(ProcInfo { pid, threads, maps });
        }
        out.sort_by_key(|p| p.pid);
        out
    }
}

/// Online CPUs of the guest (`/sys/devices/system/cpu/online`), else `0..sysconf`.
pub fn online_cpus() -> Vec<u32> {
    let v = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|s| parse_cpu_list(&s))
        .unwrap_or_default();
    if !v.is_empty() {
        return v;
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines() {
        let m = parse_map_line(
            "7f3c1a428000-7f3c1a5bd000 r-xp 00028000 08:01 1048602                    /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f3c1a428000);
        assert_eq!(m.offset, 0x28000);
        assert_eq!(m.prot, 5);
        assert_eq!(m.dev_major, 8);
        assert_eq!(m.inode, 1048602);
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        let m = parse_map_line(
            "7ffd5d5f1000-7ffd5d5f3000 r-xp 00000000 00:00 0                          [vdso]",
        )
        .unwrap();
        assert_eq!(m.path, "[vdso]");
        let m = parse_map_line("55d0-55e0 r--p 00000000 00:00 0").unwrap();
        assert_eq!(m.path, "");
        assert!(parse_map_line("garbage").is_none());
    }

    #[test]
    fn modules_and_cpus() {
        let m = parse_modules(
            "virtio_console 45056 0 - Live 0xffffffffc0345000\nbad line\nkvm 1 2 - Live 0xffffffffc0000000 (E)\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "virtio_console");
        assert_eq!(m[0].base, 0xffffffffc0345000);
        assert_eq!(m[0].size, 45056);
        assert_eq!(parse_cpu_list("0-3,5,7-8\n"), vec![0, 1, 2, 3, 5, 7, 8]);
        assert_eq!(parse_cpu_list("0"), vec![0]);
        assert_eq!(parse_cpu_list("5-1,x"), Vec::<u32>::new());
    }

    #[test]
    fn hidden_kallsyms() {
        assert!(kallsyms_hidden(
            "0000000000000000 T a\n0000000000000000 t b\n"
        ));
        assert!(!kallsyms_hidden("ffffffff81000000 T a\n"));
        assert!(!kallsyms_hidden(""));
    }

    #[test]
    fn snapshot_of_self() {
        let p = Proc::default();
        let snap = p.snapshot();
        let me = std::process::id();
        let mine = snap.iter().find(|p| p.pid == me).expect("own process");
        assert!(!mine.threads.is_empty());
        assert!(mine.maps.iter().any(|m| m.path.contains("hvprof_guest")));
    }
}
