//! Per-event perf ring buffers: the mmap'ed `perf_event_mmap_page` plus its data area.
//!
//! Stage: counters → **ring buffers** → records. Input: a [`PerfFd`]; output: the bytes of
//! complete records, copied out in order and made contiguous (a record that wraps past the
//! end of the data area comes out whole), after which the space is handed back to the kernel.
//!
//! Protocol (perf_event.h, comment above `data_head`): the kernel writes records, then
//! publishes `data_head` (a free-running byte counter, never reduced modulo the size). The
//! reader loads `data_head` with acquire ordering (the `smp_rmb()` the header asks for), copies
//! `[data_tail, data_head)`, and stores the new `data_tail` with release ordering (the
//! `smp_mb()`), so the kernel never overwrites bytes still being read. hvprof maps the buffer
//! writable, which selects this non-overwrite mode: when the buffer is full the kernel drops
//! records and later writes a `PERF_RECORD_LOST` with the count.
//!
//! ```no_run
//! # fn main() -> hvprof::Result<()> {
//! use hvprof::counters::{CounterSpec, open_counter};
//! use hvprof::sys::perf::Target;
//! use hvprof::ring::RingBuffer;
//! let spec = CounterSpec::default();
//! let fd = open_counter(&spec, Target::Thread(std::process::id() as i32))?;
//! let mut ring = RingBuffer::map(&fd, 64)?;
//! let mut bytes = Vec::new();
//! ring.drain_into(&mut bytes)?;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::sys::abi;
use crate::sys::perf::PerfFd;

/// A mapped perf ring buffer: one metadata page plus `2^n` data pages.
#[derive(Debug)]
pub struct RingBuffer {
    map: MmapRaw,
    data_offset: usize,
    data_size: usize,
    target: String,
}

// SAFETY: the mapping is owned by this value; the only shared state with the kernel is accessed
// through atomics (head/tail) and copies of bytes the kernel has published, so moving the owner
// to another thread is sound.
unsafe impl Send for RingBuffer {}

impl RingBuffer {
    /// Maps the ring of `fd` with `data_pages` data pages (must be a power of two, at least 1).
    ///
    /// The data area's offset and size are taken from the metadata page (`data_offset`,
    /// `data_size`, Linux ≥ 4.1), falling back to one page and `data_pages × page size`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a page count that is not a power of two,
    /// [`Error::RingMmap`] when `mmap(2)` fails (often `EPERM`: the per-user
    /// `perf_event_mlock_kb` limit), [`Error::RingLayout`] when the page is inconsistent.
    pub fn map(fd: &PerfFd, data_pages: usize) -> Result<RingBuffer> {
        if data_pages == 0 || !data_pages.is_power_of_two() {
            return Err(Error::InvalidOption(format!(
                "ring buffer size must be a power of two number of pages, got {data_pages}"
            )));
        }
        let page = crate::sys::page_size();
        let bytes = page * (1 + data_pages);
        let target = fd.target().to_string();
        let map = MmapOptions::new()
            .len(bytes)
            .map_raw(fd.file())
            .map_err(|source| Error::RingMmap {
                target: target.clone(),
                bytes,
                source,
            })?;
        let mut ring = RingBuffer {
            map,
            data_offset: page,
            data_size: page * data_pages,
            target,
        };
        let off = ring.load_u64(abi::MMAP_PAGE_DATA_OFFSET, Ordering::Relaxed) as usize;
        let size = ring.load_u64(abi::MMAP_PAGE_DATA_SIZE, Ordering::Relaxed) as usize;
        if off != 0 || size != 0 {
            if !size.is_power_of_two() || off.checked_add(size).is_none_or(|end| end > bytes) {
                return Err(Error::RingLayout {
                    target: ring.target.clone(),
                    reason: format!(
                        "data_offset {off} / data_size {size} outside the {bytes}-byte mapping"
                    ),
                });
            }
            ring.data_offset = off;
            ring.data_size = size;
        }
        Ok(ring)
    }

    /// Size of the data area in bytes (a power of two).
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    /// Appends every complete record published since the last call to `out`, contiguous and
    /// in order, then releases the space to the kernel. Returns the number of bytes appended.
    ///
    /// # Errors
    /// [`Error::RingLayout`] when `data_head - data_tail` exceeds the data size (the page
    /// is corrupt); the tail is then moved to the head so reading can go on.
    pub fn drain_into(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let head = self.load_u64(abi::MMAP_PAGE_DATA_HEAD, Ordering::Acquire);
        let tail = self.load_u64(abi::MMAP_PAGE_DATA_TAIL, Ordering::Relaxed);
        let base = self.map.as_ptr();
        let data_offset = self.data_offset;
        let res = copy_ring_span(self.data_size, tail, head, out, |off, len, dst| {
            // SAFETY: `off + len <= data_size` is guaranteed by `copy_ring_span`, and the data area
            // `[data_offset, data_offset + data_size)` lies inside the mapping (checked in `map`).
            // The kernel does not write to `[tail, head)` until we publish a new tail, so the bytes
            // are stable while copied.
            unsafe {
                let src = base.add(data_offset + off);
                std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), len);
            }
        });
        self.store_u64(abi::MMAP_PAGE_DATA_TAIL, head, Ordering::Release);
        res.map_err(|reason| Error::RingLayout {
            target: self.target.clone(),
            reason,
        })
    }

    fn field(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= crate::sys::page_size());
        // SAFETY: `offset` is one of the 8-byte aligned fields of the metadata page (abi.rs
        // asserts their offsets), the page is mapped for the lifetime of `self`, and the kernel
        // accesses these fields atomically as well (READ_ONCE/WRITE_ONCE/smp_store_release).
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset) as *mut u64) }
    }

    fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        self.field(offset).load(order)
    }

    fn store_u64(&self, offset: usize, v: u64, order: Ordering) {
        self.field(offset).store(v, order)
    }
}

/// Copies the ring bytes `[tail, head)` of a data area of `size` bytes (a power of two) to
/// the end of `out`, unwrapping the part that runs past the end of the area.
///
/// `read(off, len, dst)` must copy `len` bytes starting at byte `off` of the data area into
/// `dst` (`off + len <= size` always holds). Returns the number of bytes appended.
///
/// # Errors
/// A message when `head - tail > size` (nothing is copied then).
pub fn copy_ring_span(
    size: usize,
    tail: u64,
    head: u64,
    out: &mut Vec<u8>,
    mut read: impl FnMut(usize, usize, &mut [u8]),
) -> std::result::Result<usize, String> {
    let avail = head.wrapping_sub(tail);
    if avail == 0 {
        return Ok(0);
    }
    if avail > size as u64 {
        return Err(format!(
            "data_head {head} is {avail} bytes past data_tail {tail}, more than the {size}-byte data area"
        ));
    }
    let avail = avail as usize;
    let start = (tail % size as u64) as usize;
    let first = avail.min(size - start);
    let old = out.len();
    out.resize(old + avail, 0);
    read(start, first, &mut out[old..old + first]);
    if first < avail {
        read(0, avail - first, &mut out[old + first..]);
    }
    Ok(avail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_unwrapped_and_wrapped_spans() {
        let data: Vec<u8> = (0..16u8).collect();
        let rd =
            |off: usize, len: usize, dst: &mut [u8]| dst.copy_from_slice(&data[off..off + len]);
        let mut out = Vec::new();
        assert_eq!(copy_ring_span(16, 2, 6, &mut out, rd).unwrap(), 4);
        assert_eq!(out, [2, 3, 4, 5]);
        out.clear();
        // Free-running counters: tail 30 = offset 14, head 35 = offset 3 after wrapping.
        assert_eq!(copy_ring_span(16, 30, 35, &mut out, rd).unwrap(), 5);
        assert_eq!(out, [14, 15, 0, 1, 2]);
        out.clear();
        assert!(copy_ring_span(16, 0, 17, &mut out, rd).is_err());
        assert!(out.is_empty());
        assert_eq!(copy_ring_span(16, 7, 7, &mut out, rd).unwrap(), 0);
    }
}
