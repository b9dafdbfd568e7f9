//! Executable maps and the symbol tables of their files: each file is read once (its ELF
//! symbols and build-id, through the mapping process's root if need be) and cached by
//! (path, build-id or dev-ino); its table goes out before the first map that needs it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hvprof_proto::Message;

use super::{log, State, Tx};
use crate::elfsyms::{self, FileSymbols};

/// A mapped file as the helper sent it: its key on the wire (build-id, or `nobid:` and a
/// hash of path and dev-ino), its build-id, and its symbol table if one could be read.
#[derive(Debug, Clone)]
pub(super) struct FileEntry {
    key: Vec<u8>,
    build_id: Vec<u8>,
    syms: Option<Arc<FileSymbols>>,
}

/// FNV-1a 64, for keys of files without a build-id.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One map to send, from a perf mmap record or a /proc maps line (addresses are guest
/// virtual; `ident` is the dev-ino key, or empty).
pub(super) struct MapInfo<'a> {
    pub(super) pid: u32,
    pub(super) tid: u32,
    pub(super) time: u64,
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) pgoff: u64,
    pub(super) prot: u32,
    pub(super) path: &'a str,
    pub(super) ident: Vec<u8>,
    pub(super) build_id: Option<Vec<u8>>,
}

/// The key of a file without a build-id: major, minor (u32 each) and inode (u64),
/// little-endian.
pub(super) fn dev_ino_key(major: u32, minor: u32, ino: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&major.to_le_bytes());
    v.extend_from_slice(&minor.to_le_bytes());
    v.extend_from_slice(&ino.to_le_bytes());
    v
}

impl State {
    pub(super) fn send_map(&mut self, tx: &mut Tx, m: MapInfo<'_>) -> io::Result<()> {
        let mut key = Vec::new();
        let mut build_id = m.build_id.clone().unwrap_or_default();
        let mut table = None;
        if m.path.starts_with('/') && m.prot & libc::PROT_EXEC as u32 != 0 {
            let ident = match &m.build_id {
                Some(b) => b.clone(),
                None => m.ident.clone(),
            };
            let cache_key = (m.path.to_string(), ident);
            let entry = match self.files.get(&cache_key) {
                Some(e) => e.clone(),
                None => {
                    let e = self.read_file(m.pid, m.path, m.build_id.as_deref(), &cache_key.1);
                    if self.files.len() < 65536 {
                        self.files.insert(cache_key, e.clone());
                    }
                    e
                }
            };
            key = entry.key.clone();
            if build_id.is_empty() {
                build_id = entry.build_id.clone();
            }
            table = entry.syms.clone();
        }
        if let Some(t) = &table {
            tx.symtab(&key, &build_id, m.path, t.elf_type, &t.segments, &t.symbols)?;
        }
        tx.send(&Message::Mmap {
            pid: m.pid,
            tid: m.tid,
            time: m.time,
            start: m.start,
            len: m.len,
            pgoff: m.pgoff,
            prot: m.prot,
            file_key: if table.is_some() { key } else { Vec::new() },
            build_id,
            path: m.path.to_string(),
        })
    }

    fn read_file(
        &mut self,
        pid: u32,
        path: &str,
        want_bid: Option<&[u8]>,
        ident: &[u8],
    ) -> FileEntry {
        let candidates = [
            PathBuf::from(path),
            self.proc
                .root
                .join(pid.to_string())
                .join("root")
                .join(path.trim_start_matches('/')),
        ];
        let mut last_err = None;
        for p in &candidates {
            match elfsyms::read(Path::new(p)) {
                Ok(fs) => {
                    if let (Some(w), Some(have)) = (want_bid, fs.build_id.as_deref()) {
                        if w != have {
                            self.notes.push(format!(
                                "{path}: the file's build-id differs from the mapped one (replaced on disk?): no symbols"
                            ));
                            return FileEntry {
                                key: Vec::new(),
                                build_id: w.to_vec(),
                                syms: None,
                            };
                        }
                    }
                    let build_id = fs.build_id.clone().unwrap_or_default();
                    let key = if build_id.is_empty() {
                        let mut k = b"nobid:".to_vec();
                        k.extend_from_slice(&fnv(&[path.as_bytes(), ident]).to_le_bytes());
                        k
                    } else {
                        build_id.clone()
                    };
                    return FileEntry {
                        key,
                        build_id,
                        syms: Some(Arc::new(fs)),
                    };
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            log(&self.opts, &format!("no symbols for {path}: {e}"));
        }
        FileEntry {
            key: Vec::new(),
            build_id: want_bid.map(|b| b.to_vec()).unwrap_or_default(),
            syms: None,
        }
    }
}
