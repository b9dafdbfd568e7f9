//! In-memory symbol tables built from what the guest helper sent (never from a file the guest
//! names), and the file-offset → symbol-address conversion through the file's PT_LOAD
//! segments.
//!
//! Stage: helper symbol tables → **lookup**. Input: `(start, size, name)` entries in the file's
//! own addresses (SVMAs) and segments; output: the symbol containing an address.
//!
//! ```
//! use hvprof::active::symtab::SymbolTable;
//! let t = SymbolTable::from_entries(vec![(0x1000, 0x10, "a".into()), (0x1010, 0, "b".into())]);
//! assert_eq!(t.lookup(0x1004).map(|s| s.0), Some("a"));
//! assert_eq!(t.lookup(0x1011).map(|s| s.0), Some("b"));
//! assert!(t.lookup(0x0fff).is_none());
//! ```

use hvprof_proto::Segment;

/// Longest extent given to a symbol whose size is 0 and that no later symbol bounds (64 KiB).
pub const MAX_UNSIZED_SPAN: u64 = 1 << 16;

/// A sorted table of function symbols.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    /// `(start, end)` by start, end exclusive.
    ranges: Vec<(u64, u64)>,
    /// Name span in `names` per range.
    spans: Vec<(u32, u32)>,
    names: String,
}

impl SymbolTable {
    /// Builds a table from `(start, size, name)`; a size of 0 extends to the next symbol (at
    /// most [`MAX_UNSIZED_SPAN`]). Among symbols at one address the first sized one wins.
    pub fn from_entries(mut entries: Vec<(u64, u64, String)>) -> SymbolTable {
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|b, a| a.0 == b.0);
        let mut t = SymbolTable {
            ranges: Vec::with_capacity(entries.len()),
            spans: Vec::with_capacity(entries.len()),
            names: String::new(),
        };
        for i in 0..entries.len() {
            let (start, size, ref name) = entries[i];
            let next = entries.get(i + 1).map(|e| e.0);
            let end = if size > 0 {
                start.saturating_add(size)
            } else {
                let cap = start.saturating_add(MAX_UNSIZED_SPAN);
                next.map_or(cap, |n| n.min(cap))
            };
            if t.names.len() + name.len() > u32::MAX as usize {
                break;
            }
            let off = t.names.len() as u32;
            t.names.push_str(name);
            t.ranges.push((start, end.max(start.saturating_add(1))));
            t.spans.push((off, name.len() as u32));
        }
        t
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ranges.len() * 24 + self.names.len()
    }

    /// The symbol containing `addr`: `(name, start)`.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self
            .ranges
            .partition_point(|r| r.0 <= addr)
            .checked_sub(1)?;
        let (s, e) = self.ranges[i];
        if addr >= e {
            return None;
        }
        let (o, l) = self.spans[i];
        Some((&self.names[o as usize..(o + l) as usize], s))
    }
}

/// Converts a file offset to the file's own address (SVMA) through its PT_LOAD segments;
/// without segments the offset is returned as is.
pub fn file_offset_to_svma(segments: &[Segment], off: u64) -> Option<u64> {
    if segments.is_empty() {
        return Some(off);
    }
    segments
        .iter()
        .find(|s| off >= s.offset && off - s.offset < s.filesz.max(1))
        .map(|s| s.vaddr.wrapping_add(off - s.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_unsized_and_aliases() {
        let t = SymbolTable::from_entries(vec![
            (0x2000, 0, "tail".into()),
            (0x1000, 0x100, "f".into()),
            (0x1000, 0, "f_alias".into()),
            (0x1800, 0, "g".into()),
        ]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup(0x1000), Some(("f", 0x1000)));
        assert_eq!(t.lookup(0x10ff), Some(("f", 0x1000)));
        assert_eq!(t.lookup(0x1100), None);
        assert_eq!(t.lookup(0x1fff), Some(("g", 0x1800)));
        assert_eq!(
            t.lookup(0x2000 + MAX_UNSIZED_SPAN - 1),
            Some(("tail", 0x2000))
        );
        assert_eq!(t.lookup(0x2000 + MAX_UNSIZED_SPAN), None);
        assert_eq!(t.lookup(0), None);
        assert_eq!(t.lookup(u64::MAX), None);
    }

    #[test]
    fn segments_translate_offsets() {
        let segs = [
            Segment {
                offset: 0,
                vaddr: 0,
                filesz: 0x1000,
                memsz: 0x1000,
            },
            Segment {
                offset: 0x1000,
                vaddr: 0x401000,
                filesz: 0x2000,
                memsz: 0x2000,
            },
        ];
        assert_eq!(file_offset_to_svma(&segs, 0x1500), Some(0x401500));
        assert_eq!(file_offset_to_svma(&segs, 0x10), Some(0x10));
        assert_eq!(file_offset_to_svma(&segs, 0x9000), None);
        assert_eq!(file_offset_to_svma(&[], 0x42), Some(0x42));
    }
}
