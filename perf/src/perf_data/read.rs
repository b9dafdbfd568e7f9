//! Reading perf.data written by perf or hvprof: the header, the attrs with their ids and names
//! (`HEADER_EVENT_DESC`), the data section, and the feature sections. Every offset and size is
//! checked against the file; what cannot be trusted is an [`Error::Format`] naming the byte
//! offset, or — for a data section or feature cut short — read up to the cut with a note.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::feature::read_string;
use super::{Error, Feature, Result, FEAT_BITS, HEADER_SIZE, MAGIC};
use crate::abi::{self, perf_event_attr};
use crate::record::RecordDecoder;

/// One event of the file: its attr, the ids its records carry, its name when the file says.
#[derive(Clone)]
pub struct AttrInfo {
    /// The attr, zero-extended to this build's `perf_event_attr` when the file's is shorter.
    pub attr: perf_event_attr,
    /// Event ids (`PERF_SAMPLE_ID`/`IDENTIFIER` values) of this attr's records.
    pub ids: Vec<u64>,
    /// The event's name from `HEADER_EVENT_DESC` (e.g. `cpu-clock:HG`).
    pub name: Option<String>,
}

impl std::fmt::Debug for AttrInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttrInfo")
            .field("type", &self.attr.type_)
            .field("config", &self.attr.config)
            .field("sample_type", &self.attr.sample_type)
            .field("ids", &self.ids)
            .field("name", &self.name)
            .finish()
    }
}

/// A perf.data file, read into memory (its size bounds the memory used).
#[derive(Debug)]
pub struct PerfData {
    bytes: Vec<u8>,
    path: PathBuf,
    attrs: Vec<AttrInfo>,
    data: Range<usize>,
    features: BTreeMap<Feature, Range<usize>>,
    notes: Vec<String>,
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl PerfData {
    /// Reads `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; [`Error::Format`] with the byte offset for a wrong
    /// magic, a header or attr section that is cut or inconsistent (attr size mismatch).
    pub fn open(path: &Path) -> Result<PerfData> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
        PerfData::parse(bytes, path)
    }

    /// Parses a file already in memory (`path` names it in errors).
    ///
    /// # Errors
    /// As [`PerfData::open`].
    pub fn parse(bytes: Vec<u8>, path: &Path) -> Result<PerfData> {
        let bad = |offset: usize, reason: String| Error::Format {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        if bytes.len() < HEADER_SIZE {
            return Err(bad(
                bytes.len(),
                format!(
                    "the file is {} bytes, shorter than the {HEADER_SIZE}-byte header",
                    bytes.len()
                ),
            ));
        }
        let h = |i: usize| u64_at(&bytes, i * 8).unwrap_or(0);
        match h(0) {
            MAGIC => {}
            m if m == MAGIC.swap_bytes() => {
                return Err(bad(
                    0,
                    "a big-endian perf.data file (only native-endian files are read)".into(),
                ))
            }
            m if m.to_le_bytes() == *b"PERFFILE" => return Err(bad(
                0,
                "a version 1 perf.data file (PERFFILE); record it again with a perf of this decade"
                    .into(),
            )),
            _ => {
                return Err(bad(
                    0,
                    "wrong magic: not a perf.data file (expected PERFILE2)".into(),
                ))
            }
        }
        if h(1) == 16 {
            return Err(bad(
                8,
                "a pipe-mode perf.data stream (perf record -o -); write it to a file".into(),
            ));
        }
        if h(1) != HEADER_SIZE as u64 {
            return Err(bad(
                8,
                format!("header size {} (expected {HEADER_SIZE})", h(1)),
            ));
        }
        let file_len = bytes.len() as u64;
        let (attr_size, attrs_off, attrs_size, data_off, data_size) =
            (h(2), h(3), h(4), h(5), h(6));
        let min_attr = abi::PERF_ATTR_SIZE_VER0 as u64 + 16;
        if attr_size < min_attr || attr_size > 4096 {
            return Err(bad(
                16,
                format!("attr size {attr_size} is not a perf_file_attr size ({min_attr}..=4096)"),
            ));
        }
        if attrs_size % attr_size != 0
            || attrs_off
                .checked_add(attrs_size)
                .is_none_or(|e| e > file_len)
        {
            return Err(bad(
                24,
                format!("attr section [{attrs_off}, +{attrs_size}) does not hold whole {attr_size}-byte attrs inside the {file_len}-byte file"),
            ));
        }
        let mut attrs = Vec::new();
        for i in 0..(attrs_size / attr_size) as usize {
            let at = attrs_off as usize + i * attr_size as usize;
            attrs.push(
                read_attr(&bytes, at, attr_size as usize, file_len).map_err(|(o, r)| bad(o, r))?,
            );
        }
        if attrs.is_empty() {
            return Err(bad(24, "no attr: the file describes no event".into()));
        }
        let mut notes = Vec::new();
        let data_off = data_off.min(file_len) as usize;
        // Saturating: a hostile size near u64::MAX must not wrap past the start.
        let mut data_end = (data_off as u64).saturating_add(data_size);
        if data_size == 0 && file_len > data_off as u64 {
            notes.push(format!(
                "{}: the header records no data size (the recording was not finished): records are read up to the end of the file",
                path.display()
            ));
            data_end = file_len;
        } else if data_end > file_len {
            notes.push(format!(
                "{}: the data section should end at byte {data_end} but the file ends at byte {file_len}: read up to the cut",
                path.display()
            ));
            data_end = file_len;
        }
        let mut pd = PerfData {
            bytes,
            path: path.to_path_buf(),
            attrs,
            data: data_off..(data_end as usize).max(data_off),
            features: BTreeMap::new(),
            notes,
        };
        pd.read_feature_table((data_off as u64).saturating_add(data_size));
        pd.name_events();
        Ok(pd)
    }

    /// The section table after the data: one `{u64 offset, u64 size}` per set feature bit.
    fn read_feature_table(&mut self, at: u64) {
        let bits: Vec<u32> = (0..FEAT_BITS as u32)
            .filter(|b| {
                let word = u64_at(&self.bytes, 72 + 8 * (*b as usize / 64)).unwrap_or(0);
                word >> (b % 64) & 1 == 1
            })
            .collect();
        let len = self.bytes.len() as u64;
        for (i, bit) in bits.into_iter().enumerate() {
            let entry = usize::try_from(at)
                .unwrap_or(usize::MAX)
                .saturating_add(16 * i);
            let (Some(off), Some(size)) = (
                u64_at(&self.bytes, entry),
                u64_at(&self.bytes, entry.saturating_add(8)),
            ) else {
                self.notes.push(format!(
                    "{}: feature section table cut at byte {entry}; features from {} on ignored",
                    self.path.display(),
                    bit
                ));
                return;
            };
            match off.checked_add(size) {
                Some(end) if end <= len => {
                    self.features.insert(Feature(bit), off as usize..end as usize);
                }
                _ => self.notes.push(format!(
                    "{}: feature {bit} claims bytes [{off}, +{size}) past the end of the {len}-byte file (table entry at byte {entry}); ignored",
                    self.path.display()
                )),
            }
        }
    }

    /// Names the events from `HEADER_EVENT_DESC`, matching attrs by their ids (or by order).
    fn name_events(&mut self) {
        let Some(b) = self.feature(Feature::EVENT_DESC).map(<[u8]>::to_vec) else {
            return;
        };
        let (Some(nr), Some(size)) = (u32_at(&b, 0), u32_at(&b, 4)) else {
            return;
        };
        let mut at = 8usize;
        for i in 0..nr.min(4096) as usize {
            let Some(nr_ids) = at.checked_add(size as usize).and_then(|p| u32_at(&b, p)) else {
                return;
            };
            at += size as usize + 4;
            let Some((name, used)) = b.get(at..).and_then(read_string) else {
                return;
            };
            at += used;
            let ids: Vec<u64> = (0..nr_ids.min(1 << 20) as usize)
                .map_while(|k| u64_at(&b, at + 8 * k))
                .collect();
            at += 8 * nr_ids as usize;
            let target = self
                .attrs
                .iter()
                .position(|a| !ids.is_empty() && a.ids.iter().any(|id| ids.contains(id)))
                .or((i < self.attrs.len()).then_some(i));
            if let Some(t) = target {
                self.attrs[t].name.get_or_insert(name);
            }
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The events.
    pub fn attrs(&self) -> &[AttrInfo] {
        &self.attrs
    }

    /// The data section's records, as the kernel laid them out.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.data.clone()]
    }

    /// Byte offset of the data section in the file (to turn a record's offset into a file's).
    pub fn data_offset(&self) -> u64 {
        self.data.start as u64
    }

    /// A feature section's payload.
    pub fn feature(&self, f: Feature) -> Option<&[u8]> {
        self.bytes.get(self.features.get(&f)?.clone())
    }

    /// A feature holding one `perf_header_string` (HOSTNAME, OSRELEASE, ARCH, VERSION).
    pub fn feature_string(&self, f: Feature) -> Option<String> {
        read_string(self.feature(f)?).map(|(s, _)| s)
    }

    /// What was wrong but could be read around (a cut data section, a bad feature entry).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// A decoder for the records of attr `i`.
    pub fn decoder(&self, i: usize) -> Option<RecordDecoder> {
        Some(RecordDecoder::from_attr(&self.attrs.get(i)?.attr))
    }

    /// Which attr a record belongs to: the only one, or the one whose ids hold the record's
    /// `PERF_SAMPLE_IDENTIFIER` (the first u64 of a sample's body, the last of another record's
    /// `sample_id`, perf_event.h). Defaults to attr 0.
    pub fn attr_of(&self, record: &[u8]) -> usize {
        if self.attrs.len() == 1 {
            return 0;
        }
        let st = self.attrs[0].attr.sample_type;
        if st & abi::SAMPLE_IDENTIFIER == 0 || record.len() < 16 {
            return 0;
        }
        let kind = u32_at(record, 0).unwrap_or(0);
        let id = if kind == abi::RECORD_SAMPLE {
            u64_at(record, 8)
        } else {
            u64_at(record, record.len() - 8)
        };
        id.and_then(|id| self.attrs.iter().position(|a| a.ids.contains(&id)))
            .unwrap_or(0)
    }
}

/// One `perf_file_attr` at `at`: the attr (its own `size`, ≤ the slot) and its ids section.
fn read_attr(
    b: &[u8],
    at: usize,
    slot: usize,
    file_len: u64,
) -> std::result::Result<AttrInfo, (usize, String)> {
    let size = u32_at(b, at + 4).unwrap_or(0) as usize;
    let attr_len = if size == 0 {
        abi::PERF_ATTR_SIZE_VER0 as usize
    } else {
        size
    };
    if attr_len < abi::PERF_ATTR_SIZE_VER0 as usize || attr_len + 16 > slot {
        return Err((
            at + 4,
            format!("attr size {size} does not fit the file's {slot}-byte attr slots"),
        ));
    }
    let mut attr = perf_event_attr::default();
    let n = attr_len.min(std::mem::size_of::<perf_event_attr>());
    let src = b
        .get(at..at + n)
        .ok_or((at, "attr cut short".to_string()))?;
    // SAFETY: `attr` is a plain repr(C) struct of integers; any byte pattern is a valid value,
    // and we write at most its size (`n ≤ size_of`) from a slice of that length.
    unsafe {
        std::ptr::copy_nonoverlapping(
            src.as_ptr(),
            &mut attr as *mut perf_event_attr as *mut u8,
            n,
        );
    }
    let ids_at = at + slot - 16;
    let (ids_off, ids_size) = (
        u64_at(b, ids_at).unwrap_or(0),
        u64_at(b, ids_at + 8).unwrap_or(0),
    );
    if ids_size % 8 != 0 || ids_off.checked_add(ids_size).is_none_or(|e| e > file_len) {
        return Err((
            ids_at,
            format!("ids section [{ids_off}, +{ids_size}) is not whole u64s inside the file"),
        ));
    }
    let ids = (0..ids_size as usize / 8)
        .filter_map(|k| u64_at(b, ids_off as usize + 8 * k))
        .collect();
    Ok(AttrInfo {
        attr,
        ids,
        name: None,
    })
}
