//! ELF files: symbol tables, `PT_LOAD` address math, build IDs and DWARF line info.
//!
//! Stage: user-space symbolization. Input: an ELF executable or shared library on disk and a
//! *file offset* in it (from [`crate::MapEntry::file_offset`] or a perf `MMAP2` record's
//! `pgoff`). Output: the containing function ([`ElfSym`]) and its source line ([`SourceLoc`]).
//!
//! # Address spaces
//!
//! Three address spaces meet here, and tests pass by accident when they coincide (samply's
//! `LookupAddress` doc makes the same warning):
//!
//! - **AVMA** — the runtime virtual address in the process (`/proc/PID/maps` range);
//! - **file offset** — `AVMA - map.start + map.offset`;
//! - **SVMA** — "stated virtual memory address": the address the ELF file itself uses for code,
//!   in `st_value`, `p_vaddr` and DWARF.
//!
//! A file offset becomes an SVMA through the `PT_LOAD` program header that maps it
//! (`elf(5)`, "Program header"): for the segment with
//! `p_offset <= off < p_offset + p_filesz`, `svma = p_vaddr + (off - p_offset)`. This works the
//! same for non-PIE executables (`ET_EXEC`, `p_vaddr` absolute, e.g. `0x400000`), PIE
//! executables and shared libraries (`ET_DYN`, `p_vaddr` relative to a load bias chosen at run
//! time): the load bias cancels out, so the caller never needs it.
//!
//! # Symbols
//!
//! Function symbols (`STT_FUNC`, `STT_GNU_IFUNC`, and `STT_NOTYPE` in executable sections) come
//! from `.symtab`, or from `.dynsym` when `.symtab` has none (stripped files) — until
//! [`crate::debugfile::DebugDirs::attach`] adopts the `.symtab` of the file's separate debug
//! file. They are sorted once at [`ElfFile::open`]; version suffixes (`@@GLIBC_2.34`) are dropped
//! and names are demangled at lookup ([`demangle`]). A symbol with `st_size == 0` is taken to
//! extend to the next symbol or the end of its section, whichever comes first.
//!
//! # Example
//!
//! ```no_run
//! # fn main() -> hvprof_symbols::Result<()> {
//! let elf = hvprof_symbols::ElfFile::open("/usr/bin/qemu-system-x86_64")?;
//! let file_offset = 0x2_1234; // from MapEntry::file_offset
//! if let Some(svma) = elf.file_offset_to_svma(file_offset) {
//!     if let Some(sym) = elf.lookup_svma(svma) {
//!         println!("{}+{:#x} at {:?}", sym.name, svma - sym.addr, elf.location(svma));
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::cell::OnceCell;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind, SymbolKind};

use crate::error::{Error, Result};
use crate::mmap::{Mmap, SharedBytes};

/// The gimli reader used for DWARF: a range of the shared file mapping (or of a decompressed
/// section).
type Reader = gimli::EndianReader<gimli::RunTimeEndian, SharedBytes>;

/// The ELF file type, `e_type` (`elf(5)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElfKind {
    /// `ET_EXEC`: a non-PIE executable, linked at absolute addresses.
    Executable,
    /// `ET_DYN`: a shared library or a PIE executable, loaded at a run-time bias.
    Dynamic,
    /// `ET_REL`: a relocatable object (`.o`, kernel module `.ko`); has no `PT_LOAD` segments.
    Relocatable,
    /// `ET_CORE`: a core dump.
    Core,
    /// Any other `e_type`.
    Other,
}

/// One `PT_LOAD` program header (`elf(5)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_offset`: byte offset in the file of the segment's first byte.
    pub file_offset: u64,
    /// `p_filesz`: bytes backed by the file.
    pub file_size: u64,
    /// `p_vaddr`: SVMA of the segment's first byte.
    pub svma: u64,
    /// `p_memsz`: bytes in memory (≥ `file_size`; the rest is zero-filled, e.g. `.bss`).
    pub mem_size: u64,
}

/// A function symbol from an ELF symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSym {
    /// The demangled name (Rust legacy and v0, Itanium C++), or the raw name if it is not
    /// mangled.
    pub name: String,
    /// The symbol's start (`st_value`), an SVMA.
    pub addr: u64,
    /// `st_size` in bytes; 0 when the symbol table does not give one.
    pub size: u64,
}

/// A source location from DWARF line tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceLoc {
    /// The source file path as recorded in DWARF (joined with the compilation directory when
    /// it is relative).
    pub file: String,
    /// 1-based line number; `None` when the line table gives a file but no line.
    pub line: Option<u32>,
}

/// Longest `.gnu_debuglink` file name accepted, in bytes (`NAME_MAX` of Linux file systems).
pub const MAX_DEBUGLINK_NAME_LEN: usize = 255;

/// The contents of a `.gnu_debuglink` section: the debug file's name and its CRC-32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugLink {
    /// A bare file name (no `/`, not `.` or `..`, 1 to [`MAX_DEBUGLINK_NAME_LEN`] bytes).
    pub name: PathBuf,
    /// CRC-32 (IEEE) of the whole debug file, in the stripped file's byte order.
    pub crc: u32,
}

impl DebugLink {
    /// Validates the raw name from `object::Object::gnu_debuglink`. `None` for a name that is
    /// empty, too long, or not a plain file name (it would leave the searched directories).
    pub fn new(name: &[u8], crc: u32) -> Option<DebugLink> {
        if name.is_empty()
            || name.len() > MAX_DEBUGLINK_NAME_LEN
            || name.contains(&b'/')
            || name.contains(&0)
            || name == b"."
            || name == b".."
        {
            return None;
        }
        Some(DebugLink {
            name: PathBuf::from(OsStr::from_bytes(name)),
            crc,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Sym {
    addr: u64,
    /// Exclusive end (SVMA): `addr + st_size`, or estimated for `st_size == 0`.
    end: u64,
    size: u64,
    name_start: u32,
    name_len: u32,
    rank: u8,
}

/// An ELF file mapped into memory, with its function symbols sorted for lookup and its DWARF
/// line information parsed lazily.
///
/// `ElfFile` is `Send` but not `Sync` (the lazily built DWARF context uses a `OnceCell`).
pub struct ElfFile {
    path: PathBuf,
    data: Arc<Mmap>,
    kind: ElfKind,
    little_endian: bool,
    build_id: Option<Vec<u8>>,
    loads: Vec<LoadSegment>,
    syms: Vec<Sym>,
    names: String,
    from_dynsym: bool,
    /// `.symtab` has function symbols (the file is not stripped of them).
    symtab_symbols: bool,
    debuglink: Option<DebugLink>,
    has_debug_info: bool,
    /// The separate debug file whose symbols were adopted ([`ElfFile::adopt_debug_file`]).
    debug_path: Option<PathBuf>,
    /// That debug file, kept only for its DWARF when this file has none.
    debug: Option<Box<ElfFile>>,
    /// Built on the first [`ElfFile::location`]; `None` caches a failure.
    dwarf: OnceCell<Option<addr2line::Context<Reader>>>,
}

impl std::fmt::Debug for ElfFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfFile")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("symbols", &self.syms.len())
            .field("from_dynsym", &self.from_dynsym)
            .field("debug_file", &self.debug_path)
            .field("loads", &self.loads)
            .finish_non_exhaustive()
    }
}

const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<ElfFile>();
};

impl ElfFile {
    /// Maps the file at `path` and reads its ELF header, program headers, build ID and symbol
    /// table. DWARF is not touched until [`ElfFile::location`].
    ///
    /// # Errors
    ///
    /// [`Error::Open`] / [`Error::Mmap`] if the file cannot be opened or mapped, [`Error::Elf`]
    /// if it is not a regular file, not ELF (bad magic, or another object format), or its
    /// headers are truncated or inconsistent.
    pub fn open(path: impl AsRef<Path>) -> Result<ElfFile> {
        let path = path.as_ref();
        let data = Arc::new(Mmap::open(path)?);
        let elf_err = |reason: String| Error::Elf {
            path: path.to_owned(),
            reason,
        };
        match object::FileKind::parse(&**data) {
            Ok(object::FileKind::Elf32 | object::FileKind::Elf64) => {}
            Ok(other) => return Err(elf_err(format!("not an ELF file (looks like {other:?})"))),
            Err(_) => return Err(elf_err("not an ELF file (bad magic)".into())),
        }
        let obj = object::File::parse(&**data).map_err(|e| elf_err(e.to_string()))?;

        let kind = match obj.kind() {
            object::ObjectKind::Executable => ElfKind::Executable,
            object::ObjectKind::Dynamic => ElfKind::Dynamic,
            object::ObjectKind::Relocatable => ElfKind::Relocatable,
            object::ObjectKind::Core => ElfKind::Core,
            _ => ElfKind::Other,
        };
        let loads = load_segments(&obj);
        // A malformed note section just means "no build ID".
        let build_id = obj.build_id().ok().flatten().map(<[u8]>::to_vec);

        let (mut syms, mut names) = collect_symbols(&obj, obj.symbols());
        let symtab_symbols = !syms.is_empty();
        let mut from_dynsym = false;
        if syms.is_empty() {
            (syms, names) = collect_symbols(&obj, obj.dynamic_symbols());
            from_dynsym = !syms.is_empty();
        }
        let has_debug_info = obj
            .section_by_name(".debug_info")
            .is_some_and(|s| s.size() > 0);
        // A malformed or unsafe link just means "no debuglink".
        let debuglink = obj
            .gnu_debuglink()
            .ok()
            .flatten()
            .and_then(|(name, crc)| DebugLink::new(name, crc));

        Ok(ElfFile {
            path: path.to_owned(),
            kind,
            little_endian: obj.is_little_endian(),
            build_id,
            loads,
            syms,
            names,
            from_dynsym,
            symtab_symbols,
            debuglink,
            has_debug_info,
            debug_path: None,
            debug: None,
            dwarf: OnceCell::new(),
            data,
        })
    }

    /// The path this file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ELF type (`e_type`).
    pub fn kind(&self) -> ElfKind {
        self.kind
    }

    /// The GNU build ID: the descriptor of the `NT_GNU_BUILD_ID` note (type 3, owner `"GNU"`,
    /// in `.note.gnu.build-id`, written by `ld --build-id`), usually 20 bytes (SHA-1). `None`
    /// if the file has none.
    ///
    /// Debuggers find separate debug info as `/usr/lib/debug/.build-id/xx/yyyy.debug`, where
    /// `xx` is the first byte in hex and `yyyy` the rest; perf keys its cache the same way.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The `PT_LOAD` program headers, in file order.
    pub fn load_segments(&self) -> &[LoadSegment] {
        &self.loads
    }

    /// Converts a byte offset in the file to an SVMA via the `PT_LOAD` segment whose file range
    /// `[p_offset, p_offset + p_filesz)` contains it: `p_vaddr + (off - p_offset)`.
    ///
    /// `None` if no `PT_LOAD` segment maps `off` (e.g. section headers, or an `ET_REL` file).
    pub fn file_offset_to_svma(&self, off: u64) -> Option<u64> {
        self.loads.iter().find_map(|s| {
            let delta = off.checked_sub(s.file_offset)?;
            (delta < s.file_size).then(|| s.svma.wrapping_add(delta))
        })
    }

    /// Number of function symbols available for lookup.
    pub fn symbol_count(&self) -> usize {
        self.syms.len()
    }

    /// All function symbols in address order (one per address), names demangled.
    pub fn symbols(&self) -> impl Iterator<Item = ElfSym> + '_ {
        self.syms.iter().map(|s| self.elf_sym(s))
    }

    /// Whether the symbols come from `.dynsym` because `.symtab` has no function symbols
    /// (a stripped file: only exported functions are named).
    pub fn symbols_from_dynsym(&self) -> bool {
        self.from_dynsym
    }

    /// Whether DWARF for [`ElfFile::location`] is available: a non-empty `.debug_info` section
    /// in this file or in its adopted debug file.
    pub fn has_debug_info(&self) -> bool {
        self.has_debug_info || self.debug.is_some()
    }

    /// Whether `.symtab` has function symbols. `false` for a stripped file, even after a debug
    /// file's symbols were adopted.
    pub fn has_symtab_symbols(&self) -> bool {
        self.symtab_symbols
    }

    /// The `.gnu_debuglink` section (`objcopy --add-gnu-debuglink`), if present and naming a
    /// plain file.
    pub fn debuglink(&self) -> Option<&DebugLink> {
        self.debuglink.as_ref()
    }

    /// Whether a separate debug file should be looked for: `.symtab` has no function symbols
    /// and none has been adopted yet. See [`crate::debugfile`].
    pub fn wants_debug_file(&self) -> bool {
        !self.symtab_symbols && self.debug_path.is_none()
    }

    /// The separate debug file whose symbols this file uses, if one was adopted.
    pub fn debug_file(&self) -> Option<&Path> {
        self.debug_path.as_deref()
    }

    /// The whole mapped file.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The shared mapping of the whole file (for zero-copy section readers).
    pub(crate) fn mapping(&self) -> &Arc<Mmap> {
        &self.data
    }

    /// Takes over the `.symtab` symbols of `debug`, a checked separate debug file of this file
    /// (same SVMAs), and keeps it for its DWARF if this file has none. The caller
    /// ([`crate::debugfile::DebugDirs::attach`]) has verified build ID / CRC.
    pub(crate) fn adopt_debug_file(&mut self, mut debug: ElfFile) {
        self.syms = std::mem::take(&mut debug.syms);
        self.names = std::mem::take(&mut debug.names);
        self.from_dynsym = false;
        self.debug_path = Some(debug.path.clone());
        // Dropping an unneeded debug file unmaps it.
        self.debug = (!self.has_debug_info && debug.has_debug_info).then(|| Box::new(debug));
    }

    /// The function containing `svma`, by binary search over the sorted symbols.
    ///
    /// Returns `None` if `svma` is before the first symbol or past the end of the closest symbol
    /// below it. Where several symbols share an address, one with a size wins, then global over
    /// weak over local, then the first in the table.
    pub fn lookup_svma(&self, svma: u64) -> Option<ElfSym> {
        let idx = self.syms.partition_point(|s| s.addr <= svma);
        let s = self.syms.get(idx.checked_sub(1)?)?;
        (svma < s.end).then(|| self.elf_sym(s))
    }

    fn elf_sym(&self, s: &Sym) -> ElfSym {
        let start = s.name_start as usize;
        ElfSym {
            name: demangle(&self.names[start..start + s.name_len as usize]),
            addr: s.addr,
            size: s.size,
        }
    }

    /// The source file and line of the instruction at `svma`, from the DWARF line tables
    /// (via `addr2line`; for inlined code, the innermost location).
    ///
    /// The DWARF context is built on the first call and cached; a failure to build it
    /// (no DWARF, corrupt sections) is cached too, and every later call returns `None` at once.
    pub fn location(&self, svma: u64) -> Option<SourceLoc> {
        if let (false, Some(debug)) = (self.has_debug_info, &self.debug) {
            return debug.location(svma);
        }
        let ctx = self
            .dwarf
            .get_or_init(|| self.build_dwarf().ok())
            .as_ref()?;
        let loc = ctx.find_location(svma).ok()??;
        Some(SourceLoc {
            file: loc.file?.to_owned(),
            line: loc.line,
        })
    }

    fn build_dwarf(&self) -> std::result::Result<addr2line::Context<Reader>, String> {
        if !self.has_debug_info {
            return Err("no .debug_info".into());
        }
        let obj = object::File::parse(&**self.data).map_err(|e| e.to_string())?;
        let endian = if self.little_endian {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let whole = SharedBytes::Mapped(Arc::clone(&self.data));
        let empty = SharedBytes::Owned(Arc::from(&[][..]));
        let base = self.data.as_ptr() as usize;
        let len = self.data.len();
        let load = |id: gimli::SectionId| -> std::result::Result<Reader, String> {
            let Some(section) = obj.section_by_name(id.name()) else {
                return Ok(Reader::new(empty.clone(), endian));
            };
            let bytes = section
                .uncompressed_data()
                .map_err(|e| format!("{}: {e}", id.name()))?;
            match bytes {
                Cow::Borrowed(b) => {
                    // Sections of an uncompressed file are sub-slices of the mapping: share it.
                    let start = (b.as_ptr() as usize).wrapping_sub(base);
                    if start <= len && b.len() <= len - start {
                        Ok(Reader::new(whole.clone(), endian).range(start..start + b.len()))
                    } else {
                        Ok(Reader::new(SharedBytes::Owned(Arc::from(b)), endian))
                    }
                }
                Cow::Owned(v) => Ok(Reader::new(SharedBytes::Owned(Arc::from(v)), endian)),
            }
        };
        let dwarf = gimli::Dwarf::load(load)?;
        addr2line::Context::from_dwarf(dwarf).map_err(|e| e.to_string())
    }
}

/// Gathers function symbols from one symbol table, sorted and deduplicated by address, with
/// names in one arena.
fn collect_symbols<'data, 'file>(
    obj: &'file object::File<'data>,
    iter: object::SymbolIterator<'data, 'file>,
) -> (Vec<Sym>, String) {
    // Executable sections by flag, not kind: in a separate debug file `.text` is `SHT_NOBITS`,
    // which `object` classifies as uninitialized data.
    let exec = u64::from(object::elf::SHF_ALLOC | object::elf::SHF_EXECINSTR);
    let text_sections: Vec<object::SectionIndex> = obj
        .sections()
        .filter(|s| {
            s.kind() == SectionKind::Text
                || matches!(s.flags(), SectionFlags::Elf { sh_flags } if sh_flags & exec == exec)
        })
        .map(|s| s.index())
        .collect();
    let mut syms = Vec::new();
    let mut names = String::new();
    for sym in iter {
        let Some(section) = sym.section_index() else {
            continue; // undefined, absolute, common
        };
        let is_code = match sym.kind() {
            SymbolKind::Text => true,
            SymbolKind::Unknown => text_sections.contains(&section),
            _ => false,
        };
        let addr = sym.address();
        let Ok(name) = sym.name() else { continue };
        let name = strip_symbol_version(name);
        // `$x`/`$d` are ARM mapping symbols, not functions.
        if !is_code || addr == 0 || name.is_empty() || name.starts_with('$') {
            continue;
        }
        let (Ok(name_start), Ok(name_len)) =
            (u32::try_from(names.len()), u32::try_from(name.len()))
        else {
            break;
        };
        names.push_str(name);
        let size = sym.size();
        // Sizeless symbols end at the next symbol (below), but never past their section:
        // otherwise `_init` in `.init` would swallow the `.plt` after it.
        let end = if size > 0 {
            addr.saturating_add(size)
        } else {
            obj.section_by_index(section)
                .map_or(addr.saturating_add(1), |s| {
                    s.address().saturating_add(s.size())
                })
        };
        let scope = if sym.is_global() && !sym.is_weak() {
            0
        } else if sym.is_weak() {
            1
        } else {
            2
        };
        syms.push(Sym {
            addr,
            end,
            size,
            name_start,
            name_len,
            rank: u8::from(size == 0) * 4 + scope,
        });
    }
    syms.sort_by_key(|s| (s.addr, s.rank));
    syms.dedup_by_key(|s| s.addr);
    for i in 0..syms.len() {
        if syms[i].size == 0 {
            if let Some(next) = syms.get(i + 1).map(|n| n.addr) {
                syms[i].end = syms[i].end.min(next);
            }
        }
    }
    (syms, names)
}

/// Drops a symbol-version suffix from a `.symtab` name: `__libc_start_main@@GLIBC_2.34` (the
/// default version) and `__libc_start_main@GLIBC_2.2.5` (an older one) become
/// `__libc_start_main`, the name `.dynsym` gives (versions live in `.gnu.version` there). The
/// suffix comes from the assembler's `.symver` directive (binutils `as` manual, "`.symver`");
/// ELF names have no other use for `@`.
fn strip_symbol_version(name: &str) -> &str {
    match name.find('@') {
        Some(at) if at > 0 => &name[..at],
        _ => name,
    }
}

/// Demangles a symbol name: Rust (legacy `_ZN…17h<hash>E` and v0 `_R…`, printed without the
/// hash) via `rustc-demangle`, then Itanium C++ (`_Z…`) via `cpp_demangle`. Returns the input
/// unchanged if it is not mangled or does not demangle.
pub fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(name) {
            if let Ok(s) = sym.demangle(&cpp_demangle::DemangleOptions::default()) {
                return s;
            }
        }
    }
    name.to_owned()
}

/// The PT_LOAD segments of `obj` (`object` yields only those as ELF segments).
pub(crate) fn load_segments<'d>(obj: &impl object::Object<'d>) -> Vec<LoadSegment> {
    use object::ObjectSegment;
    obj.segments()
        .map(|s| {
            let (file_offset, file_size) = s.file_range();
            LoadSegment {
                file_offset,
                file_size,
                svma: s.address(),
                mem_size: s.size(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debuglink_names_are_plain_file_names() {
        assert_eq!(
            DebugLink::new(b"libc.so.6.debug", 7),
            Some(DebugLink {
                name: "libc.so.6.debug".into(),
                crc: 7
            })
        );
        for bad in [&b""[..], b".", b"..", b"../etc/passwd", b"a/b", b"a\0b"] {
            assert_eq!(DebugLink::new(bad, 0), None, "{bad:?}");
        }
        assert!(DebugLink::new(&[b'a'; MAX_DEBUGLINK_NAME_LEN], 0).is_some());
        assert!(DebugLink::new(&[b'a'; MAX_DEBUGLINK_NAME_LEN + 1], 0).is_none());
    }

    #[test]
    fn demangles_rust_cpp_and_plain() {
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(demangle("_RNvCs1234_7mycrate3foo"), "mycrate::foo");
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(demangle("_Z3addii"), "add(int, int)");
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("_Zgarbage"), "_Zgarbage");
    }

    #[test]
    fn symbol_versions_are_dropped() {
        assert_eq!(
            strip_symbol_version("__libc_start_main@@GLIBC_2.34"),
            "__libc_start_main"
        );
        assert_eq!(
            strip_symbol_version("pthread_kill@GLIBC_2.2.5"),
            "pthread_kill"
        );
        assert_eq!(strip_symbol_version("start_thread"), "start_thread");
        assert_eq!(strip_symbol_version("@odd"), "@odd");
    }

    #[test]
    fn garbage_is_an_elf_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("garbage");
        std::fs::write(&p, b"this is not an ELF file at all").unwrap();
        assert!(matches!(ElfFile::open(&p), Err(Error::Elf { .. })));
        let p = dir.path().join("truncated");
        std::fs::write(&p, b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0").unwrap();
        let e = ElfFile::open(&p).unwrap_err();
        assert!(matches!(e, Error::Elf { .. }), "{e:?}");
        let p = dir.path().join("empty");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(ElfFile::open(&p), Err(Error::Elf { .. })));
    }
}
