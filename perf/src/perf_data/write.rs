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
    events: Vec<(perf_event_attr, Vec<u64>, String)>,
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// `PERF_ATTR_SIZE_VER7` (128): the attr size files are written with when the fields after it
/// are zero. perf refuses attrs larger than its own (perf 6.1 knows 128 bytes), so a file meant
/// for the field's tools says no more than it needs.
pub const FILE_ATTR_SIZE: usize = 128;

/// The size an attr is written with: [`FILE_ATTR_SIZE`] when the bytes after it are zero.
fn file_attr_size(attr: &perf_event_attr) -> usize {
    let b = attr_bytes(attr);
    if b.len() > FILE_ATTR_SIZE && b[FILE_ATTR_SIZE..].iter().all(|&x| x == 0) {
        FILE_ATTR_SIZE
    } else {
        b.len()
    }
}

/// The bytes of an attr as a file holds them, with its `size` field set to their number.
pub fn attr_to_bytes(attr: &perf_event_attr) -> Vec<u8> {
    let n = file_attr_size(attr);
    let mut a = *attr;
    a.size = n as u32;
    attr_bytes(&a)[..n].to_vec()
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
        let slot = attrs
            .iter()
            .map(|(a, _, _)| file_attr_size(a))
            .max()
            .unwrap_or(FILE_ATTR_SIZE);
        let attr_size = slot as u64 + 16;
        let attrs_section = (at, attr_size * attrs.len() as u64);
        for ((attr, _, _), (off, size)) in attrs.iter().zip(&id_sections) {
            let at = head.len();
            head.extend_from_slice(&attr_to_bytes(attr));
            head.resize(at + slot, 0);
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
            events: attrs.to_vec(),
        };
        // A header with an empty data section until `finish`: an unfinished file is still a
        // perf.data file whose records a reader can find after the attrs.
        let header = w.header([0; FEAT_BITS / 64]);
        w.out.write_all(&header).map_err(io("write", path))?;
        w.out.write_all(&head).map_err(io("write", path))?;
        Ok(w)
    }

    /// `HEADER_EVENT_DESC` (header.c `write_event_desc`): `u32 nr, attr_size`; per event its
    /// attr, `u32 nr_ids`, its name as a `perf_header_string`, its ids.
    fn event_desc(&self) -> Vec<u8> {
        let mut f = super::FeatureWriter::new();
        let slot = (self.attr_size - 16) as usize;
        f.u32(self.events.len() as u32).u32(slot as u32);
        for (attr, ids, name) in &self.events {
            let mut b = attr_to_bytes(attr);
            b.resize(slot, 0);
            f.bytes(&b).u32(ids.len() as u32).string(name);
            for id in ids {
                f.u64(*id);
            }
        }
        f.finish()
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
        if !features.iter().any(|(f, _)| *f == Feature::EVENT_DESC) {
            features.push((Feature::EVENT_DESC, self.event_desc()));
        }
        features.retain(|(f, _)| (f.0 as usize) < FEAT_BITS);
        features.sort_by_key(|(f, _)| *f);
        features.dedup_by_key(|(f, _)| *f);
        let table_at = self.data_offset + self.data_size;
        let mut at = table_at + 16 * features.len() as u64;
        let mut bitmap = [0u64; FEAT_BITS / 64];
        let w = |out: &mut BufWriter<File>, b: &[u8], p: &Path| {
            out.write_all(b).map_err(io("write", p))
        };
        for (f, payload) in &features {
            bitmap[f.0 as usize / 64] |= 1 << (f.0 % 64);
            w(&mut self.out, &at.to_ne_bytes(), &self.path)?;
            w(
                &mut self.out,
                &(payload.len() as u64).to_ne_bytes(),
                &self.path,
            )?;
            at += payload.len() as u64;
        }
        for (_, payload) in &features {
            w(&mut self.out, payload, &self.path)?;
        }
        let h = self.header(bitmap);
        self.out
            .seek(SeekFrom::Start(0))
            .map_err(io("seek", &self.path))?;
        w(&mut self.out, &h, &self.path)?;
        self.out.flush().map_err(io("write", &self.path))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(io("sync", &self.path))
    }
}
