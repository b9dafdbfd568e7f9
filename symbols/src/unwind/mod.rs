//! DWARF unwinding of user stacks: perf's `--call-graph dwarf`, at report time.
//!
//! Stage: user-space call stacks, before symbolization. Input: one sample's user registers
//! ([`UserRegs`], from `PERF_SAMPLE_REGS_USER` with mask [`UserRegs::PERF_REGS_MASK`]), the copy
//! of its user stack (`PERF_SAMPLE_STACK_USER`: the bytes from `sp` up, `dyn_size` long) and the
//! process's mappings ([`ProcMaps`], from `/proc/PID/maps` or from the recording's `MMAP2`
//! records). Output: the call stack as addresses (AVMAs), leaf first — the input of
//! [`crate::Symbolizer::symbolize_user`].
//!
//! The unwinding itself is [framehop](https://docs.rs/framehop)'s (the unwinder samply uses),
//! x86-64 only: for each frame it finds the DWARF CFI row of the code address in the module's
//! `.eh_frame` (indexed by `.eh_frame_hdr`, or by framehop when that is missing) or
//! `.debug_frame`, and recovers the caller's `rip`, `rsp` and `rbp`. Code with no CFI (JIT code,
//! `[vdso]`, a file that could not be read) falls back to the frame-pointer rule (`rbp` chain).
//!
//! # Caches
//!
//! - Each ELF file is mapped once (`mmap(2)`, never read whole) and its unwind sections found
//!   once, keyed by path, device and inode of the mapping, so a replaced file is a new entry.
//! - Each process (by pid) has a framehop module set, filled lazily with the executable mappings
//!   the stacks actually pass through; a mapping whose range, offset or inode changed at the
//!   same start is replaced. [`Unwinder::invalidate`] drops a process's set.
//! - One framehop rule cache (509 slots, by code address) serves every process.
//!
//! # Limits
//!
//! A file's separate debug file ([`crate::debugfile`]) is searched for `.debug_frame` only when
//! the file has neither `.eh_frame` nor `.debug_frame` ([`Unwinder::with_debug_dirs`]); deleted or replaced files and `/memfd:` mappings get no module (frame pointers only). On
//! overlayfs the inode in `/proc/PID/maps` may differ from `stat(2)`'s, which also leaves the
//! file to frame pointers.
//!
//! # Example
//!
//! ```no_run
//! use hvprof_symbols::{ProcMaps, Symbolizer, Unwinder, UserRegs};
//! # fn main() -> hvprof_symbols::Result<()> {
//! let maps = ProcMaps::read(1234)?;
//! let (regs, stack) = (UserRegs { ip: 0x55d0_c6a0_1234, sp: 0x7ffd_0000_1000, bp: 0 }, [0u8; 8192]);
//! let mut unwinder = Unwinder::new();
//! let mut frames = Vec::new();
//! unwinder.unwind(1234, &maps, regs, &stack, 128, &mut frames);
//! let mut symbolizer = Symbolizer::new();
//! for addr in frames {
//!     println!("{:?}", symbolizer.symbolize_user(&maps, addr));
//! }
//! # Ok(())
//! # }
//! ```

mod module;

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Unwinder as _};

use crate::debugfile::DebugDirs;
use crate::maps::{MapEntry, MapPath, ProcMaps};
use module::{FileUnwindInfo, SectionBytes};

/// The user registers a sample carried (`PERF_SAMPLE_REGS_USER`, x86-64): user virtual
/// addresses of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UserRegs {
    /// `rip`: the sampled instruction.
    pub ip: u64,
    /// `rsp`: the stack pointer; `PERF_SAMPLE_STACK_USER` copies the stack from here up.
    pub sp: u64,
    /// `rbp`: the frame pointer (any value in code built without frame pointers).
    pub bp: u64,
}

impl UserRegs {
    /// The `sample_regs_user` mask that dumps exactly these registers: `PERF_REG_X86_BP` (6),
    /// `PERF_REG_X86_SP` (7) and `PERF_REG_X86_IP` (8) of `enum perf_event_x86_regs`
    /// (arch/x86/include/uapi/asm/perf_regs.h, Linux 6.x). The kernel dumps them in bit order:
    /// `bp`, `sp`, `ip`.
    pub const PERF_REGS_MASK: u64 = (1 << 6) | (1 << 7) | (1 << 8);
}

/// The identity of a cached ELF file: the mapping's path, device and inode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileKey {
    path: PathBuf,
    dev: (u32, u32),
    inode: u64,
}

/// What a process's module set holds for the mapping at one start address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeenMapping {
    end: u64,
    offset: u64,
    inode: u64,
    /// Whether a framehop module was added for it (to remove it again).
    module: bool,
}

/// One process: its framehop module set.
struct Process {
    unwinder: UnwinderX86_64<SectionBytes>,
    seen: HashMap<u64, SeenMapping>,
}

/// A DWARF (`.eh_frame`, `.eh_frame_hdr`, `.debug_frame`) unwinder of one host's processes.
///
/// It caches each ELF file's unwind sections (keyed by path, device and inode) and each
/// process's framehop module set; see the [module docs](self). Use one per host (paths and pids
/// are only meaningful there). Unwinding never fails as a whole: a stack ends where it can go
/// no further.
pub struct Unwinder {
    files: HashMap<FileKey, Option<Arc<FileUnwindInfo>>>,
    processes: HashMap<i32, Process>,
    cache: CacheX86_64,
    /// Where the `.debug_frame` of a file without `.eh_frame` may be found.
    debug_dirs: DebugDirs,
}

// The session may move the unwinder to its consuming thread.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Unwinder>();
};

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("files", &self.files.len())
            .field("processes", &self.processes.len())
            .finish_non_exhaustive()
    }
}

impl Default for Unwinder {
    fn default() -> Self {
        Self::new()
    }
}

impl Unwinder {
    /// An unwinder with empty caches that looks for separate debug files in the host's
    /// directories ([`DebugDirs::system`]).
    pub fn new() -> Unwinder {
        Unwinder {
            files: HashMap::new(),
            processes: HashMap::new(),
            cache: CacheX86_64::new(),
            debug_dirs: DebugDirs::system(),
        }
    }

    /// Sets where the separate debug file of an ELF file without `.eh_frame` is looked for
    /// (its `.debug_frame` is then used). Set it before the first unwind.
    pub fn with_debug_dirs(mut self, dirs: DebugDirs) -> Unwinder {
        self.debug_dirs = dirs;
        self
    }

    /// Unwinds one sample's user stack of process `pid` whose mappings are `maps`.
    ///
    /// `stack` is the `PERF_SAMPLE_STACK_USER` copy (its `dyn_size` bytes), starting at
    /// `regs.sp`. `out` is cleared, then gets the stack leaf first: `out[0] = regs.ip`, then
    /// each caller's return address, at most `max_frames` entries in all (none if it is 0).
    ///
    /// The walk stops, keeping what it has, at: the end of the copied stack (a read outside
    /// `stack` fails), a code address outside every executable mapping (that return address is
    /// not pushed), a frame that does not move the stack pointer up (so it cannot loop), a null
    /// return address, or framehop's end of stack. Code without CFI (anonymous or pseudo
    /// executable mappings such as JIT code or `[vdso]`, unreadable files) falls back to the
    /// frame-pointer rule. Recursion may repeat a return address; the rising stack pointer and
    /// `max_frames` bound the walk.
    pub fn unwind(
        &mut self,
        pid: i32,
        maps: &ProcMaps,
        regs: UserRegs,
        stack: &[u8],
        max_frames: usize,
        out: &mut Vec<u64>,
    ) {
        out.clear();
        if max_frames == 0 {
            return;
        }
        out.push(regs.ip);
        let Unwinder {
            files,
            processes,
            cache,
            debug_dirs,
        } = self;
        let process = processes.entry(pid).or_insert_with(|| Process {
            unwinder: UnwinderX86_64::new(),
            seen: HashMap::new(),
        });
        let mut read_stack = |addr: u64| read_u64(stack, regs.sp, addr);
        let mut fh_regs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut address = FrameAddress::from_instruction_pointer(regs.ip);
        while out.len() < max_frames {
            let Some(map) = code_mapping(maps, address.address_for_lookup()) else {
                return;
            };
            process.add_mapping(files, debug_dirs, map);
            let sp = fh_regs.sp();
            let Ok(Some(ra)) =
                process
                    .unwinder
                    .unwind_frame(address, &mut fh_regs, cache, &mut read_stack)
            else {
                return;
            };
            if fh_regs.sp() <= sp {
                return;
            }
            let Some(next) = FrameAddress::from_return_address(ra) else {
                return;
            };
            if code_mapping(maps, next.address_for_lookup()).is_none() {
                return;
            }
            out.push(ra);
            address = next;
        }
    }

    /// Forgets the cached modules of `pid` (its mappings changed, or it exited). Cached files
    /// stay, for other processes and a later module set.
    pub fn invalidate(&mut self, pid: i32) {
        self.processes.remove(&pid);
    }

    /// Number of ELF files in the cache, including files that could not be used.
    pub fn cached_files(&self) -> usize {
        self.files.len()
    }

    /// Number of processes with a module set.
    pub fn cached_processes(&self) -> usize {
        self.processes.len()
    }
}

impl Process {
    /// Makes sure the executable mapping `map` is in the module set (once per mapping),
    /// replacing mappings it overlaps that were seen before.
    fn add_mapping(
        &mut self,
        files: &mut HashMap<FileKey, Option<Arc<FileUnwindInfo>>>,
        debug_dirs: &DebugDirs,
        map: &MapEntry,
    ) {
        let seen = |module| SeenMapping {
            end: map.end,
            offset: map.offset,
            inode: map.inode,
            module,
        };
        if let Some(old) = self.seen.get(&map.start) {
            if *old == seen(old.module) {
                return;
            }
        }
        let stale: Vec<u64> = self
            .seen
            .iter()
            .filter(|(start, s)| **start < map.end && map.start < s.end)
            .map(|(start, _)| *start)
            .collect();
        for start in stale {
            if self.seen.remove(&start).is_some_and(|s| s.module) {
                self.unwinder.remove_module(start);
            }
        }
        let module = file_info(files, debug_dirs, map).and_then(|info| info.module(map));
        let added = module.is_some();
        if let Some(module) = module {
            self.unwinder.add_module(module);
        }
        self.seen.insert(map.start, seen(added));
    }
}

/// The cached unwind info of the file `map` maps, opening it on first use; `None` for
/// non-file, deleted, `/memfd:` and unreadable files, and for a path that now names another
/// inode than the mapping's.
fn file_info(
    files: &mut HashMap<FileKey, Option<Arc<FileUnwindInfo>>>,
    debug_dirs: &DebugDirs,
    map: &MapEntry,
) -> Option<Arc<FileUnwindInfo>> {
    let MapPath::File {
        path,
        deleted: false,
    } = &map.path
    else {
        return None;
    };
    if path.as_os_str().as_bytes().starts_with(b"/memfd:") {
        return None;
    }
    let key = FileKey {
        path: path.clone(),
        dev: map.dev,
        inode: map.inode,
    };
    files
        .entry(key)
        .or_insert_with(|| {
            if map.inode != 0 && std::fs::metadata(path).ok()?.ino() != map.inode {
                return None;
            }
            FileUnwindInfo::open(path, debug_dirs).ok().map(Arc::new)
        })
        .clone()
}

/// The executable mapping containing `addr`, if any.
fn code_mapping(maps: &ProcMaps, addr: u64) -> Option<&MapEntry> {
    maps.find(addr).filter(|m| m.is_exec())
}

/// The little-endian `u64` at user address `addr` of a stack copy that starts at `sp`; `Err`
/// outside the copy.
fn read_u64(stack: &[u8], sp: u64, addr: u64) -> Result<u64, ()> {
    let at = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
    let bytes = stack.get(at..at.checked_add(8).ok_or(())?).ok_or(())?;
    Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
}

#[cfg(test)]
mod tests;
