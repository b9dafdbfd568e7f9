//! Symbol resolution for hvprof: kernel symbols from kallsyms/System.map, user-space symbols
//! from ELF symbol tables, and source lines from DWARF.
//!
//! # Pipeline
//!
//! ```text
//! kernel IP ──────────────────────────────────────────► Kallsyms::lookup ──► KernelSym
//! user IP (AVMA) ─► ProcMaps::find ─► MapEntry::file_offset
//!                 ─► ElfFile::file_offset_to_svma ─► ElfFile::lookup_svma ──► ElfSym
//!                                                  └─► ElfFile::location ──► SourceLoc
//! ```
//!
//! [`Symbolizer`] runs these steps with a per-file cache and returns [`Symbolized`]: either a
//! symbol or the [`Reason`] there is none. A failure for one address is data, never an `Err`;
//! only whole operations (loading a table, opening a file) return [`Error`].
//!
//! Modules: [`kallsyms`] (kernel tables), [`maps`] (`/proc/PID/maps`), [`elf`] (ELF and
//! DWARF), [`debugfile`] (separate debug files of stripped ELF files), [`error`]. File formats and their sources are described in each module and in
//! `docs/symbols.md`.
//!
//! # Example
//!
//! ```no_run
//! use hvprof_symbols::{ProcMaps, Symbolized, Symbolizer};
//!
//! # fn main() -> hvprof_symbols::Result<()> {
//! let maps = ProcMaps::read(1234)?;
//! let mut symbolizer = Symbolizer::new();
//! match symbolizer.symbolize_user(&maps, 0x55d0_c6a0_1234) {
//!     Symbolized::Sym(s) => println!("{}+{:#x} ({})", s.name, s.offset, s.dso),
//!     Symbolized::Unknown(why) => println!("?? ({why})"),
//! }
//! # Ok(())
//! # }
//! ```

pub mod debugfile;
pub mod elf;
pub mod error;
pub mod kallsyms;
pub mod maps;
mod mmap;
pub mod unwind;

use std::collections::HashMap;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use debugfile::DebugDirs;
pub use elf::{demangle, DebugLink, ElfFile, ElfKind, ElfSym, LoadSegment, SourceLoc};
pub use error::{Error, Result};
pub use kallsyms::{Kallsyms, KernelSym, MAX_SYMBOL_SPAN};
pub use maps::{MapEntry, MapPath, Perms, ProcMaps};
pub use unwind::{Unwinder, UserRegs};

/// The `dso` name [`Symbolizer::symbolize_kernel`] gives core-kernel symbols (perf's name).
pub const KERNEL_DSO: &str = "[kernel.kallsyms]";

/// The outcome of symbolizing one address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Symbolized {
    /// The address is inside a known symbol.
    Sym(SymInfo),
    /// No symbol, and why.
    Unknown(Reason),
}

/// A resolved symbol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SymInfo {
    /// Function name, demangled.
    pub name: String,
    /// The containing object: the file name of an ELF file (`libc.so.6`), a kernel module
    /// name (`kvm_intel`), or [`KERNEL_DSO`].
    pub dso: String,
    /// Bytes from the symbol's start to the address.
    pub offset: u64,
    /// Source file and line, if DWARF is available and source locations are enabled.
    pub location: Option<SourceLoc>,
}

/// Why an address has no symbol. Counted in reports, never an error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No mapping (or, for the kernel, no symbol at all) covers the address.
    Unmapped,
    /// Anonymous memory — typically JIT code: no pathname, `[heap]`, `[stack]`, `[anon:NAME]`,
    /// or a `/memfd:` file.
    AnonymousMemory,
    /// A kernel-provided pseudo mapping with no file behind it: `[vdso]`, `[vsyscall]`,
    /// `[uprobes]`, `anon_inode:...`.
    PseudoMapping {
        /// The pathname column, e.g. `[vdso]`.
        name: String,
    },
    /// The mapped file was deleted or replaced (`(deleted)` in maps); the path may now name a
    /// different file, so it is not read.
    FileDeleted {
        /// File name of the mapping.
        dso: String,
    },
    /// The mapped file could not be opened or parsed as ELF.
    FileUnreadable {
        /// File name of the mapping.
        dso: String,
        /// The error chain, e.g. `opening /usr/lib/x.so: No such file or directory`.
        why: String,
    },
    /// The file offset is not covered by any `PT_LOAD` segment of the file.
    OutsideLoadSegments {
        /// File name of the mapping.
        dso: String,
    },
    /// The file has no function symbols at all (stripped of `.symtab`, empty `.dynsym`).
    NoSymbols {
        /// File name of the mapping.
        dso: String,
    },
    /// The file has symbols, but none contains the address.
    NotInSymbolTable {
        /// File name of the mapping, or the kernel DSO / module name.
        dso: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unmapped => f.write_str("unmapped address"),
            Reason::AnonymousMemory => f.write_str("anonymous memory (JIT?)"),
            Reason::PseudoMapping { name } => write!(f, "pseudo mapping {name}"),
            Reason::FileDeleted { dso } => write!(f, "{dso} was deleted or replaced"),
            Reason::FileUnreadable { dso, why } => write!(f, "{dso} unreadable: {why}"),
            Reason::OutsideLoadSegments { dso } => write!(f, "outside PT_LOAD segments of {dso}"),
            Reason::NoSymbols { dso } => write!(f, "{dso} has no symbols"),
            Reason::NotInSymbolTable { dso } => write!(f, "no symbol in {dso}"),
        }
    }
}

/// A symbolizer with a cache of opened ELF files.
///
/// Each file is opened once per path; an open failure is cached too, so a missing file is
/// tried once. A file stripped of `.symtab` gets the symbols of its separate debug file when
/// one is found ([`debugfile`], searched under `/` unless [`Symbolizer::with_debug_root`]).
/// Use one `Symbolizer` per address space (host, or one guest), since paths are only
/// meaningful within one.
#[derive(Debug)]
pub struct Symbolizer {
    files: HashMap<PathBuf, std::result::Result<ElfFile, String>>,
    locations: bool,
    debug_dirs: DebugDirs,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    /// An empty symbolizer that looks up source locations.
    pub fn new() -> Self {
        Symbolizer {
            files: HashMap::new(),
            locations: true,
            debug_dirs: DebugDirs::system(),
        }
    }

    /// Looks for separate debug files under `root` (`ROOT/usr/lib/debug/...`) instead of `/`,
    /// with no debuginfod cache: for a sysroot, or a test's temp dir. Set it before the first
    /// lookup; files already cached keep what they found.
    pub fn with_debug_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.debug_dirs = DebugDirs::with_root(root);
        self
    }

    /// Sets where separate debug files are looked for (see [`DebugDirs`]).
    pub fn with_debug_dirs(mut self, dirs: DebugDirs) -> Self {
        self.debug_dirs = dirs;
        self
    }

    /// Enables or disables DWARF source locations in [`SymInfo::location`]. Building a DWARF
    /// context costs time and memory on the first lookup in each file.
    pub fn with_source_locations(mut self, on: bool) -> Self {
        self.locations = on;
        self
    }

    /// Symbolizes a user-space address (AVMA) of the process whose mappings are `maps`.
    pub fn symbolize_user(&mut self, maps: &ProcMaps, addr: u64) -> Symbolized {
        let Some(map) = maps.find(addr) else {
            return Symbolized::Unknown(Reason::Unmapped);
        };
        match &map.path {
            MapPath::Anonymous => Symbolized::Unknown(Reason::AnonymousMemory),
            MapPath::Pseudo(name) => Symbolized::Unknown(classify_pseudo(name)),
            MapPath::File { path, deleted } => {
                // `Path::starts_with` compares whole components: compare bytes.
                if path.as_os_str().as_bytes().starts_with(b"/memfd:") {
                    return Symbolized::Unknown(Reason::AnonymousMemory);
                }
                if *deleted {
                    return Symbolized::Unknown(Reason::FileDeleted {
                        dso: dso_name(path),
                    });
                }
                match map.file_offset(addr) {
                    Some(off) => self.symbolize_file_offset(path, off),
                    None => Symbolized::Unknown(Reason::Unmapped),
                }
            }
        }
    }

    /// Symbolizes a byte offset in the ELF file at `path` (e.g. from a perf `MMAP2` record:
    /// `ip - start + pgoff`).
    pub fn symbolize_file_offset(&mut self, path: &Path, file_offset: u64) -> Symbolized {
        let locations = self.locations;
        let dso = dso_name(path);
        let elf = match self.file(path) {
            Ok(elf) => elf,
            Err(why) => {
                return Symbolized::Unknown(Reason::FileUnreadable {
                    dso,
                    why: why.to_owned(),
                })
            }
        };
        let Some(svma) = elf.file_offset_to_svma(file_offset) else {
            return Symbolized::Unknown(Reason::OutsideLoadSegments { dso });
        };
        if elf.symbol_count() == 0 {
            return Symbolized::Unknown(Reason::NoSymbols { dso });
        }
        let Some(sym) = elf.lookup_svma(svma) else {
            return Symbolized::Unknown(Reason::NotInSymbolTable { dso });
        };
        Symbolized::Sym(SymInfo {
            offset: svma - sym.addr,
            name: sym.name,
            dso,
            location: if locations { elf.location(svma) } else { None },
        })
    }

    /// Symbolizes a kernel virtual address with `kallsyms`. `dso` is the module name or
    /// [`KERNEL_DSO`]; there is no source location.
    pub fn symbolize_kernel(&self, kallsyms: &Kallsyms, addr: u64) -> Symbolized {
        match kallsyms.lookup(addr) {
            Some(s) => Symbolized::Sym(SymInfo {
                name: s.name.to_owned(),
                dso: s.module.unwrap_or(KERNEL_DSO).to_owned(),
                offset: s.offset,
                location: None,
            }),
            None => Symbolized::Unknown(Reason::NotInSymbolTable {
                dso: KERNEL_DSO.to_owned(),
            }),
        }
    }

    /// The cached [`ElfFile`] for `path`, opening it (and, if it has no `.symtab`, its
    /// separate debug file) on first use.
    ///
    /// # Errors
    ///
    /// The cached open failure, rendered with its cause chain. A missing or unusable debug
    /// file is not an error: the file keeps its `.dynsym` symbols.
    pub fn file(&mut self, path: &Path) -> std::result::Result<&ElfFile, &str> {
        let dirs = &self.debug_dirs;
        self.files
            .entry(path.to_owned())
            .or_insert_with(|| {
                let mut elf = ElfFile::open(path).map_err(|e| hvprof_rt::error_chain(&e))?;
                dirs.attach(&mut elf);
                Ok(elf)
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Number of files in the cache, including cached failures.
    pub fn cached_files(&self) -> usize {
        self.files.len()
    }
}

fn classify_pseudo(name: &str) -> Reason {
    if name == "[heap]"
        || name.starts_with("[stack")
        || name.starts_with("[anon:")
        || name.starts_with("[anon_shmem:")
    {
        Reason::AnonymousMemory
    } else {
        Reason::PseudoMapping {
            name: name.to_owned(),
        }
    }
}

/// The file name of `path`, or the whole path if it has none.
fn dso_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_reasons_for_non_file_mappings() {
        let maps = ProcMaps::parse(
            "\
00400000-00401000 r-xp 00000000 00:00 0 
00402000-00403000 r-xp 00000000 00:00 0                          [vdso]
00404000-00405000 r-xp 00000000 00:00 0                          [anon:jit]
00406000-00407000 r-xp 00001000 08:01 77                         /usr/lib/old.so (deleted)
00408000-00409000 r-xp 00000000 00:01 78                         /memfd:jit (deleted)
0040a000-0040b000 r-xp 00000000 08:01 79                         /nonexistent/hvprof/lib x.so
",
        )
        .unwrap();
        let mut s = Symbolizer::new();
        let cases = [
            (0x3f_ffff, Reason::Unmapped),
            (0x40_0010, Reason::AnonymousMemory),
            (
                0x40_2010,
                Reason::PseudoMapping {
                    name: "[vdso]".into(),
                },
            ),
            (0x40_4010, Reason::AnonymousMemory),
            (
                0x40_6010,
                Reason::FileDeleted {
                    dso: "old.so".into(),
                },
            ),
            (0x40_8010, Reason::AnonymousMemory),
        ];
        for (addr, want) in cases {
            assert_eq!(
                s.symbolize_user(&maps, addr),
                Symbolized::Unknown(want),
                "{addr:#x}"
            );
        }
        match s.symbolize_user(&maps, 0x40_a010) {
            Symbolized::Unknown(Reason::FileUnreadable { dso, why }) => {
                assert_eq!(dso, "lib x.so");
                assert!(
                    why.starts_with("opening /nonexistent/hvprof/lib x.so: "),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
        // The failure is cached: one entry, same answer.
        assert_eq!(s.cached_files(), 1);
        assert!(matches!(
            s.symbolize_user(&maps, 0x40_a020),
            Symbolized::Unknown(Reason::FileUnreadable { .. })
        ));
        assert_eq!(s.cached_files(), 1);
    }

    #[test]
    fn kernel_symbols() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffffc0001000 t vmx_vcpu_run\t[kvm_intel]\n",
        )
        .unwrap();
        let s = Symbolizer::new();
        assert_eq!(
            s.symbolize_kernel(&k, 0xffff_ffff_c000_1004),
            Symbolized::Sym(SymInfo {
                name: "vmx_vcpu_run".into(),
                dso: "kvm_intel".into(),
                offset: 4,
                location: None
            })
        );
        match s.symbolize_kernel(&k, 0xffff_ffff_8100_0001) {
            Symbolized::Sym(i) => assert_eq!(i.dso, KERNEL_DSO),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.symbolize_kernel(&k, 0x1000),
            Symbolized::Unknown(Reason::NotInSymbolTable {
                dso: KERNEL_DSO.into()
            })
        );
    }
}
