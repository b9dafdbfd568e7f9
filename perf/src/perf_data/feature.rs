//! Feature sections (tools/perf/util/header.h `enum HEADER_*`, header.c `write_*`): their ids
//! and the encodings perf uses for strings and string lists.

/// A feature section id: its bit in the header's feature bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Feature(pub u32);

impl Feature {
    /// `HEADER_BUILD_ID` (2): `perf_record_header_build_id` records.
    pub const BUILD_ID: Feature = Feature(2);
    /// `HEADER_HOSTNAME` (3): a string.
    pub const HOSTNAME: Feature = Feature(3);
    /// `HEADER_OSRELEASE` (4): a string.
    pub const OSRELEASE: Feature = Feature(4);
    /// `HEADER_VERSION` (5): a string (the writer's version).
    pub const VERSION: Feature = Feature(5);
    /// `HEADER_ARCH` (6): a string (`uname -m`).
    pub const ARCH: Feature = Feature(6);
    /// `HEADER_NRCPUS` (7): `u32 nr_cpus_available, nr_cpus_online`.
    pub const NRCPUS: Feature = Feature(7);
    /// `HEADER_CMDLINE` (11): a string list.
    pub const CMDLINE: Feature = Feature(11);
    /// `HEADER_EVENT_DESC` (12): `u32 nr, attr_size`; per event: attr, `u32 nr_ids`, name
    /// string, `u64 ids[nr_ids]`.
    pub const EVENT_DESC: Feature = Feature(12);
    /// hvprof's own section: what only hvprof knows (VMs, vCPUs, guest symbol maps, active
    /// mode's guest view, the detection result), as JSON. A bit far above perf's last feature
    /// (`HEADER_LAST_FEATURE`, 32 in 6.18): perf reads the section table but processes only
    /// the bits it knows, so it skips this one.
    pub const HVPROF: Feature = Feature(192);
    /// hvprof's kernel symbols: kallsyms text holding the host kernel symbols the samples hit
    /// (and their ends), captured when the recording ends; perf skips it like [`Self::HVPROF`].
    pub const HVPROF_KSYMS: Feature = Feature(193);
}

/// Encodes feature section payloads as perf writes them.
#[derive(Debug, Default)]
pub struct FeatureWriter {
    /// The payload so far.
    pub buf: Vec<u8>,
}

impl FeatureWriter {
    /// An empty payload.
    pub fn new() -> FeatureWriter {
        FeatureWriter::default()
    }

    /// A `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    /// A `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// A `struct perf_header_string`: `u32 len` (the string, its NUL and padding to 64 bytes,
    /// `NAME_ALIGN`), then the bytes (header.c `do_write_string`).
    pub fn string(&mut self, s: &str) -> &mut Self {
        let len = (s.len() + 1).div_ceil(64) * 64;
        self.u32(len as u32);
        let at = self.buf.len();
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.resize(at + len, 0);
        self
    }

    /// A `struct perf_header_string_list`: `u32 nr` then `nr` strings.
    pub fn strings<'a>(&mut self, list: impl IntoIterator<Item = &'a str>) -> &mut Self {
        let list: Vec<&str> = list.into_iter().collect();
        self.u32(list.len() as u32);
        for s in list {
            self.string(s);
        }
        self
    }

    /// The payload.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads a `perf_header_string` at the start of `b`: the string (up to its NUL) and the bytes
/// it took, or `None` when its length runs past `b`.
pub(super) fn read_string(b: &[u8]) -> Option<(String, usize)> {
    let len = u32::from_ne_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let s = b.get(4..4usize.checked_add(len)?)?;
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    Some((String::from_utf8_lossy(&s[..end]).into_owned(), 4 + len))
}
