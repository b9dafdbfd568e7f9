//! One ELF file's unwind sections, and where a mapping of it puts them in a process.
//!
//! Input: the path of a mapped ELF file. Output: [`FileUnwindInfo`] — the file mapping, the
//! SVMA ranges of `.text`, `.got`, `.eh_frame`, `.eh_frame_hdr` and the bytes of those sections
//! (plus `.debug_frame` when there is no `.eh_frame`: the file's own, or else its separate debug
//! file's, found by [`DebugDirs::find`]), as zero-copy ranges of the mappings — from which
//! [`FileUnwindInfo::module`] builds a framehop [`Module`] for one executable mapping.
//!
//! # Addresses
//!
//! framehop works in *relative addresses*: `avma - base_avma == svma - base_svma`. As samply
//! does (`samply-object`'s `relative_address_base` and `linux_shared/svma_file_range.rs`),
//! `base_svma` is the `p_vaddr` of the file's first `PT_LOAD` header, and `base_avma` follows
//! from the mapping: the `PT_LOAD` segment whose file range contains the mapping's file range
//! (or is contained in it — a mapping is page-rounded and may be larger than its segment) gives
//! the bias `avma - svma`, which is the same for every segment of a loaded image.

use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;

use object::{CompressionFormat, Object, ObjectSection};

use crate::debugfile::DebugDirs;
use crate::elf::{DebugLink, LoadSegment};
use crate::error::{Error, Result};
use crate::maps::MapEntry;
use crate::mmap::{Mmap, SharedBytes};

/// A section's bytes: a range of the shared file mapping (or of a decompressed copy). Cloning
/// bumps a refcount; the range is checked against the bytes when it is made.
#[derive(Debug, Clone)]
pub(crate) struct SectionBytes {
    bytes: SharedBytes,
    range: Range<usize>,
}

impl Deref for SectionBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // The range was checked in `SectionBytes::new`; an empty slice is the safe answer anyway.
        self.bytes.get(self.range.clone()).unwrap_or(&[])
    }
}

impl SectionBytes {
    /// `len` bytes of `bytes` from `offset`; `None` if that is not inside `bytes`.
    fn new(bytes: SharedBytes, offset: u64, len: u64) -> Option<SectionBytes> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        bytes.get(start..end)?;
        Some(SectionBytes {
            bytes,
            range: start..end,
        })
    }
}

/// One section: its SVMA range and its bytes.
#[derive(Debug, Clone)]
struct Section {
    svma: Range<u64>,
    bytes: SectionBytes,
}

/// The unwind-relevant parts of one ELF file, shared by every process that maps it.
#[derive(Debug)]
pub(crate) struct FileUnwindInfo {
    /// The path, for framehop's module name (debugging only).
    name: String,
    /// `p_vaddr` of the first `PT_LOAD` header (0 for most PIEs and shared libraries).
    base_svma: u64,
    /// The `PT_LOAD` headers, in file order.
    loads: Vec<LoadSegment>,
    text: Option<Section>,
    got: Option<Range<u64>>,
    eh_frame: Option<Section>,
    eh_frame_hdr: Option<Section>,
    /// Only read when there is no `.eh_frame` (framehop prefers `.eh_frame`).
    debug_frame: Option<SectionBytes>,
}

impl FileUnwindInfo {
    /// Maps the ELF file at `path` and finds its `PT_LOAD` headers and unwind sections. A file
    /// with neither `.eh_frame` (or an empty one) nor `.debug_frame` takes the `.debug_frame` of
    /// its separate debug file, looked for in `debug_dirs` (same SVMAs; stripping removes
    /// `.debug_frame` but keeps `.eh_frame`, so this is rare).
    ///
    /// # Errors
    ///
    /// [`Error::Open`] / [`Error::Mmap`] if the file cannot be opened or mapped, [`Error::Elf`]
    /// if it is not a regular file or not a parsable ELF file. A file without any unwind section
    /// is not an error: its modules fall back to frame pointers.
    pub(crate) fn open(path: &Path, debug_dirs: &DebugDirs) -> Result<FileUnwindInfo> {
        let map = Arc::new(Mmap::open(path)?);
        let elf_err = |reason: String| Error::Elf {
            path: path.to_owned(),
            reason,
        };
        match object::FileKind::parse(&**map) {
            Ok(object::FileKind::Elf32 | object::FileKind::Elf64) => {}
            Ok(other) => return Err(elf_err(format!("not an ELF file (looks like {other:?})"))),
            Err(_) => return Err(elf_err("not an ELF file (bad magic)".into())),
        }
        let obj = object::File::parse(&**map).map_err(|e| elf_err(e.to_string()))?;
        let shared = SharedBytes::Mapped(map.clone());
        let loads = crate::elf::load_segments(&obj);
        let section = |name: &str| -> Option<Section> {
            let s = obj.section_by_name(name)?;
            let svma = s.address()..s.address().checked_add(s.size())?;
            Some(Section {
                svma,
                bytes: section_bytes(&s, &shared)?,
            })
        };
        // A linker script may leave an empty `.eh_frame` in a file built without unwind tables.
        let eh_frame = section(".eh_frame").filter(|s| !s.bytes.is_empty());
        let debug_frame = if eh_frame.is_none() {
            obj.section_by_name(".debug_frame")
                .and_then(|s| section_bytes(&s, &shared))
                .or_else(|| debug_file_frame(path, &obj, debug_dirs))
        } else {
            None
        };
        Ok(FileUnwindInfo {
            name: path.display().to_string(),
            base_svma: loads.first().map_or(0, |l| l.svma),
            text: section(".text"),
            got: obj
                .section_by_name(".got")
                .and_then(|s| Some(s.address()..s.address().checked_add(s.size())?)),
            eh_frame_hdr: section(".eh_frame_hdr"),
            eh_frame,
            debug_frame,
            loads,
        })
    }

    /// Whether the file has DWARF CFI (`.eh_frame` or `.debug_frame`).
    #[cfg(test)]
    pub(crate) fn has_cfi(&self) -> bool {
        self.eh_frame.is_some() || self.debug_frame.is_some()
    }

    /// `base_avma` for a module of this file mapped by `map` (see the [module docs](self));
    /// `None` if no `PT_LOAD` segment matches the mapping's file range.
    pub(crate) fn base_avma(&self, map: &MapEntry) -> Option<u64> {
        let size = map.end.checked_sub(map.start)?;
        let bias = vma_bias(&self.loads, map.offset, map.start, size)?;
        Some(self.base_svma.wrapping_add(bias))
    }

    /// A framehop module for the executable mapping `map` of this file; `None` as
    /// [`FileUnwindInfo::base_avma`].
    pub(crate) fn module(&self, map: &MapEntry) -> Option<framehop::Module<SectionBytes>> {
        let base_avma = self.base_avma(map)?;
        let info = framehop::ExplicitModuleSectionInfo {
            base_svma: self.base_svma,
            text_svma: self.text.as_ref().map(|s| s.svma.clone()),
            text: self.text.as_ref().map(|s| s.bytes.clone()),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|s| s.svma.clone()),
            eh_frame: self.eh_frame.as_ref().map(|s| s.bytes.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|s| s.svma.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|s| s.bytes.clone()),
            debug_frame: self.debug_frame.clone(),
            // Mach-O only.
            stubs_svma: None,
            stub_helper_svma: None,
            unwind_info: None,
            text_segment_svma: None,
            text_segment: None,
        };
        Some(framehop::Module::new(
            self.name.clone(),
            map.start..map.end,
            base_avma,
            info,
        ))
    }
}

/// The `.debug_frame` of the separate debug file of `obj` (at `path`), if one is found.
fn debug_file_frame(
    path: &Path,
    obj: &object::File<'_>,
    debug_dirs: &DebugDirs,
) -> Option<SectionBytes> {
    let build_id = obj.build_id().ok().flatten();
    let link = obj
        .gnu_debuglink()
        .ok()
        .flatten()
        .and_then(|(name, crc)| DebugLink::new(name, crc));
    let (debug, _) = debug_dirs.find(path, build_id, link.as_ref());
    let map = debug?.mapping().clone();
    let debug_obj = object::File::parse(&**map).ok()?;
    let section = debug_obj.section_by_name(".debug_frame")?;
    section_bytes(&section, &SharedBytes::Mapped(map.clone()))
}

/// The bytes of `section`: a range of the file mapping, or a decompressed copy of an
/// `SHF_COMPRESSED` section. `None` for `SHT_NOBITS` or a range outside the file.
fn section_bytes<'data>(
    section: &impl ObjectSection<'data>,
    shared: &SharedBytes,
) -> Option<SectionBytes> {
    let range = section.compressed_file_range().ok()?;
    if range.format == CompressionFormat::None {
        return SectionBytes::new(shared.clone(), range.offset, range.uncompressed_size);
    }
    let data = section.uncompressed_data().ok()?;
    let len = data.len() as u64;
    SectionBytes::new(SharedBytes::Owned(Arc::from(&*data)), 0, len)
}

/// The bias `avma - svma` of an image whose mapping of `size` bytes at `avma` maps the file
/// from `file_offset`, found through the `PT_LOAD` segment whose file range contains the
/// mapping's or is contained in it (samply's `compute_vma_bias_impl`). `None` if there is none.
pub(crate) fn vma_bias(
    loads: &[LoadSegment],
    file_offset: u64,
    avma: u64,
    size: u64,
) -> Option<u64> {
    let map_end = file_offset.checked_add(size)?;
    let seg = loads.iter().find(|s| {
        let Some(seg_end) = s.file_offset.checked_add(s.file_size) else {
            return false;
        };
        (s.file_offset <= file_offset && map_end <= seg_end)
            || (file_offset <= s.file_offset && seg_end <= map_end)
    })?;
    let seg_avma = if seg.file_offset >= file_offset {
        avma.checked_add(seg.file_offset - file_offset)?
    } else {
        avma.checked_sub(file_offset - seg.file_offset)?
    };
    Some(seg_avma.wrapping_sub(seg.svma))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ElfFile, ProcMaps};

    fn seg(file_offset: u64, file_size: u64, svma: u64) -> LoadSegment {
        LoadSegment {
            file_offset,
            file_size,
            svma,
            mem_size: file_size,
        }
    }

    #[test]
    fn bias_of_page_rounded_text_mapping() {
        // libc.so.6 (Debian 12): the text mapping is page-rounded past its segment's end.
        let loads = [
            seg(0, 0x25388, 0),
            seg(0x26000, 0x1550fc, 0x26000),
            seg(0x17c000, 0x52c31, 0x17c000),
        ];
        let start = 0x7f87_a9f2_4000;
        assert_eq!(
            vma_bias(&loads, 0x26000, start, 0x156000),
            Some(start - 0x26000)
        );
    }

    #[test]
    fn bias_when_svma_and_file_offset_differ() {
        // samply's "hard case" (libxul.so, js): the second segment's SVMAs are 0x1000 above its
        // file offsets; the bias must come from that segment, not from the file start.
        let loads = [seg(0, 0x14bd0c0, 0), seg(0x14bd0c0, 0xf5bf60, 0x14be0c0)];
        assert_eq!(
            vma_bias(&loads, 0x14bd000, 0x55d6_0538_4000, 0xf5d000),
            Some(0x55d6_0538_4000 - 0x14bd000 - 0x1000)
        );
        // A mapping inside no segment (and containing none) has no bias.
        assert_eq!(vma_bias(&loads, 0x3000_0000, 0x1000, 0x1000), None);
        // Overflowing ranges are refused, not wrapped.
        assert_eq!(vma_bias(&[seg(u64::MAX - 1, 8, 0)], 0, 0, 0x1000), None);
        assert_eq!(vma_bias(&loads, u64::MAX, 0, 2), None);
    }

    #[inline(never)]
    fn unwind_module_marker() -> u64 {
        std::hint::black_box(42)
    }

    /// The test executable's own text mapping: base_avma from the real `/proc/self/maps` puts
    /// a function's symbol (SVMA) at its run-time address.
    #[test]
    fn base_avma_of_own_executable_matches_a_function_address() {
        let exe = std::env::current_exe().unwrap();
        let info = FileUnwindInfo::open(&exe, &DebugDirs::system()).unwrap();
        assert!(info.has_cfi(), "rustc emits .eh_frame");
        assert!(info.eh_frame_hdr.is_some());
        let avma = unwind_module_marker as *const () as usize as u64;
        assert_eq!(unwind_module_marker(), 42);
        let maps = ProcMaps::read(std::process::id()).unwrap();
        let map = maps.find(avma).unwrap();
        assert!(map.is_exec());
        let base_avma = info.base_avma(map).unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        let sym = elf
            .symbols()
            .find(|s| {
                s.name
                    .ends_with("unwind::module::tests::unwind_module_marker")
            })
            .expect("marker symbol in .symtab");
        assert_eq!(base_avma + (sym.addr - info.base_svma), avma);
        let module = info.module(map).unwrap();
        assert_eq!(module.avma_range(), map.start..map.end);
        assert_eq!(module.base_avma(), base_avma);
    }

    #[test]
    fn open_refuses_non_elf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"#!/bin/sh\n").unwrap();
        assert!(matches!(
            FileUnwindInfo::open(&p, &DebugDirs::system()),
            Err(Error::Elf { .. })
        ));
    }

    #[test]
    fn section_bytes_bounds() {
        let b = SharedBytes::Owned(Arc::from(&b"abcdef"[..]));
        assert_eq!(&*SectionBytes::new(b.clone(), 2, 3).unwrap(), b"cde");
        assert!(SectionBytes::new(b.clone(), 4, 3).is_none());
        assert!(SectionBytes::new(b, u64::MAX, 2).is_none());
    }
}
