//! The records perf record synthesizes at its start (tools/perf/util/synthetic-events.c): a
//! COMM for every thread, a FORK for every thread that is not its process's leader, an MMAP2
//! for every executable mapping (from `/proc/PID/maps`), and the kernel's map as an MMAP of
//! `[kernel.kallsyms]_text` — so perf, and hvprof at report time, can name what the samples
//! hit, even after the VM is gone. Time stamps are 0 (before every sample).

use std::path::Path;

use hvprof_perf::abi;
use hvprof_perf::record::encode::{Encoder, MmapParts};
use hvprof_perf::CpuMode;
use hvprof_symbols::{MapEntry, MapPath, ProcMaps};

/// Appends the synthesized records of processes `pids` (every process under `proc_root`
/// when `None`) and, given the text of `/proc/kallsyms`, of the kernel's map to `out`, with the trailer
/// of `sample_type`. Processes that vanish meanwhile are skipped. Returns the number of
/// processes described.
pub fn synthesize(
    proc_root: &Path,
    pids: Option<&[i32]>,
    kallsyms: Option<&str>,
    sample_type: u64,
    out: &mut Vec<u8>,
) -> usize {
    let enc = Encoder::new(sample_type);
    if let Some(text) = kallsyms {
        kernel_map(&enc, text, out);
    }
    let all: Vec<i32>;
    let pids = match pids {
        Some(p) => p,
        None => {
            all = std::fs::read_dir(proc_root)
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            &all
        }
    };
    pids.iter()
        .filter(|&&pid| process(&enc, proc_root, pid, out))
        .count()
}

/// The kernel's text as `[kernel.kallsyms]_text`: from `_text` (or `_stext`) to the last core
/// kernel text symbol, `pgoff` = `_text` (the relocation reference perf checks against
/// kallsyms), read from `<proc_root>/kallsyms` itself (a symbol table keeps one name per
/// address, and `_text` shares its address with others); nothing when addresses are hidden.
fn kernel_map(enc: &Encoder, text: &str, out: &mut Vec<u8>) {
    let (mut start, mut stext, mut end) = (None, None, 0u64);
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let (Some(addr), Some(ty), Some(sym)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if f.next().is_some() {
            continue; // a module's symbol
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        match sym {
            "_text" => start = Some(addr),
            "_stext" => stext = Some(addr),
            _ => {}
        }
        if matches!(ty, "T" | "t") {
            end = end.max(addr);
        }
    }
    let Some(text) = start.or(stext).filter(|&a| a != 0) else {
        return;
    };
    let m = MmapParts {
        pid: u32::MAX,
        tid: 0,
        addr: text,
        len: end.saturating_sub(text).max(1),
        pgoff: text,
        dev: (0, 0),
        ino: 0,
        prot: 0,
        flags: 0,
        filename: "[kernel.kallsyms]_text",
    };
    enc.mmap(out, CpuMode::Kernel, &m, 0);
}

/// One process: COMM (+ FORK) per thread, MMAP2 per executable mapping. False when it is gone.
fn process(enc: &Encoder, proc_root: &Path, pid: i32, out: &mut Vec<u8>) -> bool {
    let pdir = proc_root.join(pid.to_string());
    let Ok(tasks) = std::fs::read_dir(pdir.join("task")) else {
        return false;
    };
    let mut tids: Vec<i32> = tasks
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    for &tid in &tids {
        let comm =
            std::fs::read_to_string(pdir.join(format!("task/{tid}/comm"))).unwrap_or_default();
        let comm = comm.trim_end_matches('\n');
        if tid != pid {
            enc.fork(out, pid as u32, tid as u32, pid as u32, 0);
        }
        enc.comm(out, pid as u32, tid as u32, comm, 0);
    }
    let Ok(maps) = ProcMaps::read_from(proc_root, pid as u32) else {
        return true;
    };
    for m in maps.iter().filter(|m| m.is_exec()) {
        mapping(enc, pid, m, out);
    }
    true
}

/// Appends the MMAP2 record of mapping `m` of process `pid` (`PROT_*`/`MAP_*` from its
/// permissions).
pub fn mapping(enc: &Encoder, pid: i32, m: &MapEntry, out: &mut Vec<u8>) {
    let name = match &m.path {
        MapPath::File { path, .. } => path.to_string_lossy().into_owned(),
        MapPath::Pseudo(p) => p.clone(),
        MapPath::Anonymous => "//anon".to_string(),
    };
    let prot = libc::PROT_EXEC as u32
        | if m.perms.read {
            libc::PROT_READ as u32
        } else {
            0
        }
        | if m.perms.write {
            libc::PROT_WRITE as u32
        } else {
            0
        };
    let flags = if m.perms.shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    } as u32;
    let parts = MmapParts {
        pid: pid as u32,
        tid: pid as u32,
        addr: m.start,
        len: m.end - m.start,
        pgoff: m.offset,
        dev: m.dev,
        ino: m.inode,
        prot,
        flags,
        filename: &name,
    };
    enc.mmap2(out, CpuMode::User, &parts, 0);
}

/// The attr flags (`sample_type`) the synthesized records are written for.
pub const SAMPLE_TYPE: u64 = abi::HVPROF_SAMPLE_TYPE;
