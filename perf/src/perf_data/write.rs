//! Writing perf.data: header, attrs with ids, the data section streamed as records arrive,
//! feature sections at the end (tools/perf/util/header.c `perf_session__write_header`).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Error, Feature, Result, FEAT_BITS, HEADER_SIZE, MAGIC};
use crate::abi::perf_event_attr;

/// Writes a perf.data file: create it with its attrs, append records, finish with features.
///
/// Layout: `[header][ids of each attr][attrs: perf_event_attr + perf_file_section ids][data]
/// [feature section table][feature payloads]`; the header is rewritten by [`finish`] with the
/// data size and the feature bitmap. A file never finished (a crash, a full disk) has a zero
/// data size in its header: perf refuses it, hvprof reads its records up to the end of the
/// file and says so.
///
/// [`finish`]: PerfDataWriter::finish
#[derive(Debug)]
pub struct PerfDataWriter {
    out: BufWriter<File>,
    path: PathBuf,
    attrs_section: (u64, u64),
    attr_size: u64,
    data_offset: u64,
    data_size: u64,
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The bytes of an attr (`attr.size` of them, its own layout).
fn attr_bytes(attr: &perf_event_attr) -> &[u8] {
    let n = std::mem::size_of::<perf_event_attr>();
    // SAFETY: perf_event_attr is a plain C struct of integers (bindgen, repr(C)) with no padding
    // the kernel leaves undefined (perf_event.h lays it out in u64/u32 fields); reading its
    // `size_of` bytes through a byte slice that borrows it is sound.
    unsafe { std::slice::from_raw_parts(attr as *const perf_event_attr as *const u8, n) }
}

impl PerfDataWriter {
    /// Creates `path` with one attr per event: `(attr, event ids, name)`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be created or written.
    pub fn create(path: &Path, attrs: &[(perf_event_attr, Vec<u64>, String)]) -> Result<Self> {
        let f = File::create(path).map_err(io("create", path))?;
        let mut head = Vec::new();
        let mut at = HEADER_SIZE as u64;
        let mut id_sections = Vec::new();
        for (_, ids, _) in attrs {
            for id in ids {
                head.extend_from_slice(&id.to_ne_bytes());
            }
            id_sections.push((at, ids.len() as u64 * 8));
            at += ids.len() as u64 * 8;
        }
        let attr_size = std::mem::size_of::<perf_event_attr>() as u64 + 16;
        let attrs_section = (at, attr_size * attrs.len() as u64);
        for ((attr, _, _), (off, size)) in attrs.iter().zip(&id_sections) {
            let mut a = *attr;
            a.size = std::mem::size_of::<perf_event_attr>() as u32;
            head.extend_from_slice(attr_bytes(&a));
            head.extend_from_slice(&off.to_ne_bytes());
            head.extend_from_slice(&size.to_ne_bytes());
        }
        let mut w = PerfDataWriter {
            out: BufWriter::with_capacity(1 << 20, f),
            path: path.to_path_buf(),
            attrs_section,
            attr_size,
            data_offset: attrs_section.0 + attrs_section.1,
            data_size: 0,
        };
        // A header with an empty data section until `finish`: an unfinished file is still a
        // perf.data file whose records a reader can find after the attrs.
        let header = w.header([0; FEAT_BITS / 64]);
        w.out.write_all(&header).map_err(io("write", path))?;
        w.out.write_all(&head).map_err(io("write", path))?;
        Ok(w)
    }

    fn header(&self, bitmap: [u64; FEAT_BITS / 64]) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_SIZE);
        for v in [
            MAGIC,
            HEADER_SIZE as u64,
            self.attr_size,
            self.attrs_section.0,
            self.attrs_section.1,
            self.data_offset,
            self.data_size,
            0,
            0,
        ] {
            h.extend_from_slice(&v.to_ne_bytes());
        }
        for word in bitmap {
            h.extend_from_slice(&word.to_ne_bytes());
        }
        h
    }

    /// Appends whole records (as drained from a ring buffer) to the data section.
    ///
    /// # Errors
    /// [`Error::Io`] (a full disk: the records written so far stay readable).
    pub fn write_records(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(io("write", &self.path))?;
        self.data_size += bytes.len() as u64;
        Ok(())
    }

    /// Bytes in the data section so far.
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// Writes the feature sections (each at most once; order does not matter) and the final
    /// header, and flushes the file.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn finish(mut self, mut features: Vec<(Feature, Vec<u8>)>) -> Result<()> {
        features.retain(|(f, _)| (f.0 as usize) < FEAT_BITS);
        features.sort_by_key(|(f, _)| *f);
        features.dedup_by_key(|(f, _)| *f);
        let table_at = self.data_offset + self.data_size;
        let mut at = table_at + 16 * features.len() as u64;
        let mut bitmap = [0u64; FEAT_BITS / 64];
        let w = |out: &mut BufWriter<File>, b: &[u8], p: &Path| out.write_all(b).map_err(io("write", p));
        for (f, payload) in &features {
            bitmap[f.0 as usize / 64] |= 1 << (f.0 % 64);
            w(&mut self.out, &at.to_ne_bytes(), &self.path)?;
            w(&mut self.out, &(payload.len() as u64).to_ne_bytes(), &self.path)?;
            at += payload.len() as u64;
        }
        for (_, payload) in &features {
            w(&mut self.out, payload, &self.path)?;
        }
        let h = self.header(bitmap);
        self.out.seek(SeekFrom::Start(0)).map_err(io("seek", &self.path))?;
        w(&mut self.out, &h, &self.path)?;
        self.out.flush().map_err(io("write", &self.path))?;
        self.out.get_ref().sync_data().map_err(io("sync", &self.path))
    }
}
