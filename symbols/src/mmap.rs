//! Read-only file mappings: the crate's only `unsafe` code.
//!
//! [`Mmap`] maps a whole file read-only with `memmap2` (`mmap(2)` with `PROT_READ`,
//! `MAP_SHARED`) and unmaps it on drop. [`SharedBytes`] lets `gimli` read DWARF straight out of
//! a shared mapping without copying it.
//!
//! # The risk we accept (as perf, samply and addr2line do)
//!
//! A mapping exposes the file's *current* bytes. If another process writes the file in place
//! while we hold a `&[u8]` into it, the bytes change underneath Rust's aliasing rules; if it
//! truncates the file, touching a page past the new end raises `SIGBUS`. We map executables and
//! shared libraries that running processes have mapped: Linux refuses writes to a running
//! executable (`ETXTBSY`), and package managers replace libraries by `rename(2)` — the old inode,
//! which is what we mapped, is left intact. An in-place rewrite of a mapped library by a
//! third party is the remaining hazard, and it would crash the traced process as well.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A read-only mapping of a whole regular file. An empty file maps to an empty slice.
#[derive(Debug)]
pub(crate) struct Mmap {
    map: memmap2::Mmap,
}

impl Mmap {
    /// Maps the regular file at `path` read-only.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] if the file cannot be opened or `stat`ed, [`Error::Elf`] if it is not a
    /// regular file (a FIFO would block `open`, a directory cannot be mapped), [`Error::Mmap`] if
    /// `mmap(2)` fails.
    pub(crate) fn open(path: &Path) -> Result<Mmap> {
        let meta = std::fs::metadata(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        if !meta.is_file() {
            return Err(Error::Elf {
                path: path.to_owned(),
                reason: "not a regular file".into(),
            });
        }
        let file = File::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: `memmap2::Mmap::map` is unsafe because the mapped bytes can change (in-place
        // write) or vanish (truncation → SIGBUS) while a `&[u8]` to them is alive. We map only
        // files opened read-only, never write through the mapping, and accept the external-
        // modification risk documented at the top of this module: the files are executables and
        // libraries in use by running processes, which the kernel (ETXTBSY) and package managers
        // (replace-by-rename) do not rewrite in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Mmap {
            path: path.to_owned(),
            source,
        })?;
        Ok(Mmap { map })
    }
}

impl Deref for Mmap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// Bytes shared between an [`crate::ElfFile`] and the DWARF readers built from it: either the
/// whole file mapping or an owned buffer (a decompressed `SHF_COMPRESSED` section).
///
/// Readers select sub-ranges with `gimli::EndianReader::range`; cloning only bumps a refcount.
#[derive(Debug, Clone)]
pub(crate) enum SharedBytes {
    /// The whole file mapping.
    Mapped(Arc<Mmap>),
    /// Bytes owned on the heap.
    Owned(Arc<[u8]>),
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SharedBytes::Mapped(m) => m,
            SharedBytes::Owned(b) => b,
        }
    }
}

// SAFETY: `StableDeref` requires that the slice returned by `deref` stays at the same address
// for as long as the value (or any clone of it) lives, even if the value itself moves. Both
// variants hold an `Arc`: moving the `Arc` does not move its heap allocation, and the target is
// either a `memmap2::Mmap` whose mapping address is fixed from `mmap(2)` until `munmap(2)` in its
// `Drop` (which runs only when the last `Arc` goes away), or an immutable `[u8]` allocation.
unsafe impl gimli::StableDeref for SharedBytes {}

// SAFETY: `CloneStableDeref` additionally requires that clones deref to the same address.
// Cloning a `SharedBytes` clones the `Arc`, which points at the same mapping or allocation.
unsafe impl gimli::CloneStableDeref for SharedBytes {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_file_and_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::File::create(&p)
            .unwrap()
            .write_all(b"hello")
            .unwrap();
        assert_eq!(&*Mmap::open(&p).unwrap(), b"hello");
        let e = dir.path().join("e");
        std::fs::File::create(&e).unwrap();
        assert!(Mmap::open(&e).unwrap().is_empty());
    }

    #[test]
    fn rejects_missing_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Mmap::open(&dir.path().join("missing")),
            Err(Error::Open { .. })
        ));
        assert!(matches!(Mmap::open(dir.path()), Err(Error::Elf { .. })));
    }

    #[test]
    fn shared_bytes_clones_deref_to_same_address() {
        let b = SharedBytes::Owned(Arc::from(&b"abc"[..]));
        let c = b.clone();
        assert_eq!(b.as_ptr(), c.as_ptr());
    }
}
