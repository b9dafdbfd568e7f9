//! Separate debug files: the full symbol table (and DWARF) of a stripped ELF file.
//!
//! Stage: user-space symbolization, before lookups. Input: an [`ElfFile`] opened from a mapped
//! path whose `.symtab` is missing or has no function symbols (Debian's `libc.so.6`, QEMU and
//! most distro binaries keep only `.dynsym`). Output: the same `ElfFile` with the symbols of
//! its debug file adopted ([`DebugDirs::attach`]), so static functions such as `start_thread`
//! get names, as in `perf report` and gdb.
//!
//! # Where debug files are looked for
//!
//! In gdb's order (gdb manual, "Separate Debug Files"; perf's `dso__load` in
//! `tools/perf/util/symbol.c` tries the same places), under a configurable root (default `/`):
//!
//! 1. by build ID: `ROOT/usr/lib/debug/.build-id/xx/yyyy….debug`, where `xx` is the first byte
//!    of the `NT_GNU_BUILD_ID` descriptor in lower-case hex and `yyyy…` the rest;
//! 2. by `.gnu_debuglink` (a file name, NUL, padding to 4 bytes, then a CRC-32 of the whole
//!    debug file: binutils `objcopy --add-gnu-debuglink`): `DIR/NAME`, `DIR/.debug/NAME` and
//!    `ROOT/usr/lib/debug/DIR/NAME`, where `DIR` is the directory of the stripped file;
//! 3. by build ID in a debuginfod client cache: `CACHE/<build id hex>/debuginfo` (the
//!    layout of elfutils' `libdebuginfod`; the cache is only read, never fetched into).
//!
//! # Checks
//!
//! A candidate is used only if it opens as ELF, has function symbols in `.symtab`, carries the
//! same build ID as the stripped file (when that has one), and — for a `.gnu_debuglink`
//! candidate — its CRC-32 (IEEE 802.3, as zlib's `crc32` and gdb's `gnu_debuglink_crc32`)
//! matches the link. Otherwise it is skipped and the next one is tried; if none is left, the
//! file keeps its `.dynsym` symbols. Nothing here panics or errors on a corrupt debug file.
//!
//! Debug files keep the section addresses of the stripped file (`objcopy --only-keep-debug`),
//! so their `st_value`s are the same SVMAs; their `.text` is `SHT_NOBITS`, so code bytes are
//! never read from them. Files are mapped (`crate::mmap`), not read into memory.
//!
//! # Example
//!
//! ```no_run
//! use hvprof_symbols::{debugfile::DebugDirs, ElfFile};
//!
//! # fn main() -> hvprof_symbols::Result<()> {
//! let mut libc = ElfFile::open("/lib/x86_64-linux-gnu/libc.so.6")?;
//! let found = DebugDirs::system().attach(&mut libc);
//! println!("debug file: {:?}", found.found);
//! # Ok(())
//! # }
//! ```

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::elf::{DebugLink, ElfFile};

/// Longest build ID used to form a path, in bytes. GNU ld writes 8 (`--build-id=fast`), 16
/// (`md5`/`uuid`) or 20 (`sha1`, the default); `--build-id=0x…` allows any length.
pub const MAX_BUILD_ID_LEN: usize = 64;

/// How a debug-file candidate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// `ROOT/usr/lib/debug/.build-id/xx/yyyy.debug`.
    BuildId,
    /// A `.gnu_debuglink` name in one of its three directories.
    DebugLink,
    /// `CACHE/<build id>/debuginfo` of a debuginfod client cache.
    Debuginfod,
}

/// A candidate that was skipped, and why (for diagnostics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The candidate path.
    pub path: PathBuf,
    /// How it was found.
    pub via: Via,
    /// Why it was not used, e.g. `build ID mismatch` or an open error chain.
    pub why: String,
}

/// The outcome of [`DebugDirs::attach`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebugSearch {
    /// The debug file whose symbols were adopted, and how it was found.
    pub found: Option<(PathBuf, Via)>,
    /// Candidates that exist but were refused, in search order. Missing candidates are not
    /// listed.
    pub rejected: Vec<Rejected>,
}

/// Where to look for separate debug files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugDirs {
    root: PathBuf,
    debuginfod_cache: Option<PathBuf>,
}

impl Default for DebugDirs {
    fn default() -> Self {
        Self::system()
    }
}

impl DebugDirs {
    /// The host's layout: root `/` and the current user's debuginfod cache
    /// ([`DebugDirs::default_debuginfod_cache`]).
    pub fn system() -> DebugDirs {
        DebugDirs {
            root: PathBuf::from("/"),
            debuginfod_cache: Self::default_debuginfod_cache(),
        }
    }

    /// Debug files under `root` (e.g. a sysroot or a test's temp dir) instead of `/`, and no
    /// debuginfod cache.
    pub fn with_root(root: impl Into<PathBuf>) -> DebugDirs {
        DebugDirs {
            root: root.into(),
            debuginfod_cache: None,
        }
    }

    /// Sets (or, with `None`, disables) the debuginfod client cache directory.
    pub fn with_debuginfod_cache(mut self, dir: Option<PathBuf>) -> DebugDirs {
        self.debuginfod_cache = dir;
        self
    }

    /// The root under which `usr/lib/debug` is searched.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// libdebuginfod's cache directory: `$DEBUGINFOD_CACHE_PATH`, else
    /// `$XDG_CACHE_HOME/debuginfod_client`, else `$HOME/.cache/debuginfod_client`; `None` when
    /// none of these variables is set.
    pub fn default_debuginfod_cache() -> Option<PathBuf> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        var("DEBUGINFOD_CACHE_PATH")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("debuginfod_client")))
            .or_else(|| var("HOME").map(|d| d.join(".cache/debuginfod_client")))
    }

    /// The candidate paths for a file at `path` with `build_id` and `debuglink`, in search
    /// order. Build IDs shorter than 2 bytes or longer than [`MAX_BUILD_ID_LEN`] give no
    /// build-ID candidates.
    pub fn candidates(
        &self,
        path: &Path,
        build_id: Option<&[u8]>,
        debuglink: Option<&DebugLink>,
    ) -> Vec<(PathBuf, Via)> {
        let debug_root = self.root.join("usr/lib/debug");
        let hex = build_id
            .filter(|b| (2..=MAX_BUILD_ID_LEN).contains(&b.len()))
            .map(hex);
        let mut out = Vec::new();
        if let Some(hex) = &hex {
            let (dir, rest) = hex.split_at(2);
            out.push((
                debug_root
                    .join(".build-id")
                    .join(dir)
                    .join(format!("{rest}.debug")),
                Via::BuildId,
            ));
        }
        if let Some(link) = debuglink {
            let dir = path.parent().unwrap_or(Path::new(""));
            out.push((dir.join(&link.name), Via::DebugLink));
            out.push((dir.join(".debug").join(&link.name), Via::DebugLink));
            // `DIR` below the debug root: keep only its normal components.
            let rel: PathBuf = dir
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            out.push((debug_root.join(rel).join(&link.name), Via::DebugLink));
        }
        if let (Some(hex), Some(cache)) = (&hex, &self.debuginfod_cache) {
            out.push((cache.join(hex).join("debuginfo"), Via::Debuginfod));
        }
        out
    }

    /// Finds the debug file of `elf` and adopts its symbols (and DWARF) into it, if `elf`
    /// wants one ([`ElfFile::wants_debug_file`]). See [`DebugDirs::find`].
    pub fn attach(&self, elf: &mut ElfFile) -> DebugSearch {
        if !elf.wants_debug_file() {
            return DebugSearch::default();
        }
        let (debug, search) = self.find(elf.path(), elf.build_id(), elf.debuglink());
        if let Some(debug) = debug {
            elf.adopt_debug_file(debug);
        }
        search
    }

    /// Finds and opens the debug file of the stripped file at `path`, which has `build_id` and
    /// `debuglink`: the first of [`DebugDirs::candidates`] that passes the checks of the
    /// [module docs](self). Candidates that do not exist, and `path` itself, are skipped
    /// silently; existing ones that fail a check are listed in [`DebugSearch::rejected`].
    pub fn find(
        &self,
        path: &Path,
        build_id: Option<&[u8]>,
        debuglink: Option<&DebugLink>,
    ) -> (Option<ElfFile>, DebugSearch) {
        let mut search = DebugSearch::default();
        let own = std::fs::metadata(path).ok();
        for (candidate, via) in self.candidates(path, build_id, debuglink) {
            let Ok(meta) = std::fs::metadata(&candidate) else {
                continue;
            };
            if own
                .as_ref()
                .is_some_and(|o| o.dev() == meta.dev() && o.ino() == meta.ino())
            {
                continue; // the stripped file itself (a debuglink naming its own file)
            }
            let crc = match via {
                Via::DebugLink => debuglink.map(|l| l.crc),
                Via::BuildId | Via::Debuginfod => None,
            };
            match check(&candidate, build_id, crc) {
                Ok(debug) => {
                    search.found = Some((candidate, via));
                    return (Some(debug), search);
                }
                Err(why) => search.rejected.push(Rejected {
                    path: candidate,
                    via,
                    why,
                }),
            }
        }
        (None, search)
    }
}

/// Opens the candidate at `path` and checks that it has build ID `want_id` (if given), CRC-32
/// `want_crc` (if given) and `.symtab` function symbols.
fn check(path: &Path, want_id: Option<&[u8]>, want_crc: Option<u32>) -> Result<ElfFile, String> {
    let debug = ElfFile::open(path).map_err(|e| hvprof_rt::error_chain(&e))?;
    if let Some(want) = want_id {
        match debug.build_id() {
            Some(got) if got == want => {}
            Some(got) => {
                return Err(format!(
                    "build ID mismatch: {} is not {}",
                    hex(got),
                    hex(want)
                ))
            }
            None => return Err("no build ID".into()),
        }
    }
    if let Some(want) = want_crc {
        let got = crc32fast::hash(debug.bytes());
        if got != want {
            return Err(format!(
                "CRC-32 {got:#010x}, .gnu_debuglink wants {want:#010x}"
            ));
        }
    }
    if !debug.has_symtab_symbols() {
        return Err("no function symbols in .symtab".into());
    }
    Ok(debug)
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_in_gdb_order() {
        let dirs = DebugDirs::with_root("/sysroot")
            .with_debuginfod_cache(Some("/home/u/.cache/debuginfod_client".into()));
        let link = DebugLink::new(b"qemu.debug", 1).unwrap();
        let got = dirs.candidates(
            Path::new("/usr/bin/qemu"),
            Some(&[0x93, 0xac, 0x61, 0x0e]),
            Some(&link),
        );
        let want: Vec<(PathBuf, Via)> = vec![
            (
                "/sysroot/usr/lib/debug/.build-id/93/ac610e.debug".into(),
                Via::BuildId,
            ),
            ("/usr/bin/qemu.debug".into(), Via::DebugLink),
            ("/usr/bin/.debug/qemu.debug".into(), Via::DebugLink),
            (
                "/sysroot/usr/lib/debug/usr/bin/qemu.debug".into(),
                Via::DebugLink,
            ),
            (
                "/home/u/.cache/debuginfod_client/93ac610e/debuginfo".into(),
                Via::Debuginfod,
            ),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn build_ids_out_of_bounds_give_no_build_id_candidates() {
        let dirs = DebugDirs::with_root("/").with_debuginfod_cache(Some("/c".into()));
        assert!(dirs
            .candidates(Path::new("/x"), Some(&[0x93]), None)
            .is_empty());
        let long = [0xab; MAX_BUILD_ID_LEN + 1];
        assert!(dirs
            .candidates(Path::new("/x"), Some(&long), None)
            .is_empty());
        let ok = [0xab; MAX_BUILD_ID_LEN];
        assert_eq!(dirs.candidates(Path::new("/x"), Some(&ok), None).len(), 2);
    }

    #[test]
    fn dot_dot_in_the_file_directory_stays_below_the_debug_root() {
        let dirs = DebugDirs::with_root("/r");
        let link = DebugLink::new(b"x.debug", 1).unwrap();
        let got = dirs.candidates(Path::new("/a/../../b/x"), None, Some(&link));
        assert_eq!(got[2].0, PathBuf::from("/r/usr/lib/debug/a/b/x.debug"));
    }
}
