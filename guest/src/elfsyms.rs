//! Reading a guest ELF file's build-id, PT_LOAD segments and function symbols (inside the
//! guest, with the `object` crate), for sending in a symbol table.
//!
//! Stage: guest files → **symbol tables** → wire. Input: a path in the guest; output: a
//! [`FileSymbols`]. Only the helper reads guest files; the host gets names over the wire.

use std::path::Path;

use object::{Object, ObjectKind, ObjectSegment, ObjectSymbol, SymbolKind};

use hvprof_proto::{Segment, WireSymbol};

/// Largest file the helper reads, in bytes (512 MiB).
pub const MAX_FILE: u64 = 512 << 20;

/// What the helper sends about one ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSymbols {
    /// GNU build-id, if the file has one.
    pub build_id: Option<Vec<u8>>,
    /// ELF `e_type`: 2 (EXEC), 3 (DYN), 0 otherwise.
    pub elf_type: u16,
    /// PT_LOAD segments.
    pub segments: Vec<Segment>,
    /// Function symbols (from `.symtab`, else `.dynsym`), sorted by start.
    pub symbols: Vec<WireSymbol>,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// Reading failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Too big.
    #[error("{path} is {size} bytes, more than {MAX_FILE}")]
    TooBig {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// Not a parsable object file.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: object::Error,
    },
}

fn read_file(path: &Path) -> Result<Vec<u8>, ElfError> {
    let p = path.display().to_string();
    let md = std::fs::metadata(path).map_err(|source| ElfError::Read {
        path: p.clone(),
        source,
    })?;
    if md.len() > MAX_FILE {
        return Err(ElfError::TooBig {
            path: p,
            size: md.len(),
        });
    }
    std::fs::read(path).map_err(|source| ElfError::Read { path: p, source })
}

/// Reads a file's build-id note only.
///
/// # Errors
/// [`ElfError`] when the file cannot be read or parsed.
pub fn build_id(path: &Path) -> Result<Option<Vec<u8>>, ElfError> {
    let data = read_file(path)?;
    let f = object::File::parse(&*data).map_err(|source| ElfError::Parse {
        path: path.display().to_string(),
        source,
    })?;
    Ok(f.build_id().ok().flatten().map(|b| b.to_vec()))
}

/// Reads a file's build-id, segments and function symbols.
///
/// # Errors
/// [`ElfError`] when the file cannot be read or parsed.
pub fn read(path: &Path) -> Result<FileSymbols, ElfError> {
    let data = read_file(path)?;
    parse(&data).map_err(|source| ElfError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// [`read`] on bytes already in memory.
///
/// # Errors
/// `object`'s parse error.
pub fn parse(data: &[u8]) -> Result<FileSymbols, object::Error> {
    let f = object::File::parse(data)?;
    let elf_type = match f.kind() {
        ObjectKind::Executable => 2,
        ObjectKind::Dynamic => 3,
        _ => 0,
    };
    let segments = f
        .segments()
        .map(|s| {
            let (offset, filesz) = s.file_range();
            Segment {
                offset,
                vaddr: s.address(),
                filesz,
                memsz: s.size(),
            }
        })
        .collect();
    let mut symbols: Vec<WireSymbol> = f
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0 && s.is_definition())
        .map(to_wire)
        .collect();
    if symbols.is_empty() {
        symbols = f
            .dynamic_symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0 && s.is_definition())
            .map(to_wire)
            .collect();
    }
    symbols.sort_by(|a, b| a.start.cmp(&b.start).then(b.size.cmp(&a.size)));
    symbols.dedup_by(|b, a| a.start == b.start);
    Ok(FileSymbols {
        build_id: f.build_id().ok().flatten().map(|b| b.to_vec()),
        elf_type,
        segments,
        symbols,
    })
}

fn to_wire<'d>(s: impl ObjectSymbol<'d>) -> WireSymbol {
    WireSymbol {
        start: s.address(),
        size: s.size(),
        name: String::from_utf8_lossy(s.name_bytes().unwrap_or(b"")).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let fs = read(&exe).unwrap();
        assert!(!fs.segments.is_empty());
        assert!(fs.symbols.len() > 100);
        assert!(fs
            .symbols
            .iter()
            .any(|s| s.name.contains("reads_own_test_binary")));
        assert!(fs.symbols.windows(2).all(|w| w[0].start < w[1].start));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"\x7fELF garbage").is_err());
    }
}
