//! Per-event perf ring buffers: the mmap'ed `struct perf_event_mmap_page` plus its data area.
//!
//! Stage: counters → **ring buffers** → records. Input: a [`PerfFd`]; output: the bytes of
//! complete records, copied out in order and made contiguous (a record that wraps past the end
//! of the data area comes out whole), after which the space is handed back to the kernel.
//!
//! Protocol (perf_event.h, comment above `data_head`): the kernel writes records, then publishes
//! `data_head` (a free-running byte counter, never reduced modulo the size). The reader loads
//! `data_head` with acquire ordering (the `smp_rmb()` the header asks for), copies `[data_tail,
//! data_head)`, and stores the new `data_tail` with release ordering (the `smp_mb()`), so the
//! kernel never overwrites bytes still being read. The buffer is mapped writable, which selects
//! the non-overwrite mode: when it is full the kernel drops records and later writes a
//! `PERF_RECORD_LOST` with the count.
//!
//! **One policy for a corrupt head**: when `data_head - data_tail` exceeds the data area, the
//! head cannot be trusted. The ring counts it ([`RingBuffer::corrupt_heads`]), resynchronises
//! (tail := head, dropping what lay between) and returns [`Error::CorruptHead`] so the caller
//! reports it. Never silent, never a stuck reader.

use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::abi;
use crate::error::{Error, Result};
use crate::fd::{PerfFd, Target};

/// A mapped perf ring buffer: one metadata page plus `2^n` data pages (or the metadata page
/// alone, for its clock fields).
#[derive(Debug)]
pub struct RingBuffer {
    map: MmapRaw,
    data_offset: usize,
    data_size: usize,
    target: Target,
    corrupt_heads: u64,
}

// SAFETY: the mapping is owned by this value; the only state shared with the kernel is accessed
// through atomics (head/tail, clock fields) and copies of bytes the kernel has published, so
// moving the owner to another thread is sound.
unsafe impl Send for RingBuffer {}

impl RingBuffer {
    /// Maps the ring of `fd` with `data_pages` data pages: 0 (the metadata page only) or a
    /// power of two.
    ///
    /// The data area's offset and size are taken from the metadata page (`data_offset`,
    /// `data_size`, Linux ≥ 4.1), falling back to one page and `data_pages ×` page size.
    ///
    /// # Errors
    /// [`Error::RingLayout`] for a page count that is not 0 or a power of two, or a metadata
    /// page that is inconsistent; [`Error::RingMmap`] when `mmap(2)` fails (often `EPERM`: the
    /// per-user `kernel.perf_event_mlock_kb` limit).
    pub fn map(fd: &PerfFd, data_pages: usize) -> Result<RingBuffer> {
        let target = fd.target();
        if data_pages != 0 && !data_pages.is_power_of_two() {
            return Err(Error::RingLayout {
                target,
                reason: format!(
                    "ring buffer size must be a power of two number of pages, got {data_pages}"
                ),
            });
        }
        let page = crate::sys::page_size();
        let bytes = page * (1 + data_pages);
        let map = MmapOptions::new()
            .len(bytes)
            .map_raw(fd.file())
            .map_err(|source| Error::RingMmap {
                target,
                bytes,
                source,
            })?;
        let mut ring = RingBuffer {
            map,
            data_offset: page,
            data_size: page * data_pages,
            target,
            corrupt_heads: 0,
        };
        if data_pages > 0 {
            let off = ring
                .u64_field(abi::MMAP_PAGE_DATA_OFFSET)
                .load(Ordering::Relaxed) as usize;
            let size = ring
                .u64_field(abi::MMAP_PAGE_DATA_SIZE)
                .load(Ordering::Relaxed) as usize;
            if off != 0 || size != 0 {
                if !size.is_power_of_two() || off.checked_add(size).is_none_or(|end| end > bytes) {
                    return Err(Error::RingLayout {
                        target,
                        reason: format!(
                            "data_offset {off} / data_size {size} outside the {bytes}-byte mapping"
                        ),
                    });
                }
                ring.data_offset = off;
                ring.data_size = size;
            }
        }
        Ok(ring)
    }

    /// Size of the data area in bytes (a power of two, or 0 for a metadata-only mapping).
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    /// The event this ring belongs to.
    pub fn target(&self) -> Target {
        self.target
    }

    /// How many times a corrupt `data_head` was seen and the ring resynchronised.
    pub fn corrupt_heads(&self) -> u64 {
        self.corrupt_heads
    }

    /// Appends every record published since the last call to `out`, contiguous and in order,
    /// then releases the space to the kernel. Returns the number of bytes appended.
    ///
    /// # Errors
    /// [`Error::CorruptHead`] when `data_head - data_tail` exceeds the data area: nothing is
    /// appended, the tail is moved to the head so reading goes on, and the event is counted.
    pub fn drain_into(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        if self.data_size == 0 {
            return Ok(0);
        }
        let head = self
            .u64_field(abi::MMAP_PAGE_DATA_HEAD)
            .load(Ordering::Acquire);
        let tail = self
            .u64_field(abi::MMAP_PAGE_DATA_TAIL)
            .load(Ordering::Relaxed);
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
        self.u64_field(abi::MMAP_PAGE_DATA_TAIL)
            .store(head, Ordering::Release);
        res.ok_or_else(|| {
            self.corrupt_heads += 1;
            Error::CorruptHead {
                target: self.target,
                head,
                tail,
                size: self.data_size,
            }
        })
    }

    /// Reads the metadata page's clock fields under its seqlock (`lock`, perf_event.h: "seqlock
    /// for synchronization"); `PageClock::default()` (no capabilities) if the lock never settles.
    pub fn clock(&self) -> PageClock {
        for _ in 0..1000 {
            let seq = self.u32_field(abi::MMAP_PAGE_LOCK).load(Ordering::Acquire);
            let caps = self.u64_field(abi::MMAP_PAGE_CAPS).load(Ordering::Relaxed);
            let c = PageClock {
                cap_user_time_zero: caps & (1 << 4) != 0,
                cap_user_time_short: caps & (1 << 5) != 0,
                time_shift: self
                    .u16_field(abi::MMAP_PAGE_TIME_SHIFT)
                    .load(Ordering::Relaxed),
                time_mult: self
                    .u32_field(abi::MMAP_PAGE_TIME_MULT)
                    .load(Ordering::Relaxed),
                time_zero: self
                    .u64_field(abi::MMAP_PAGE_TIME_ZERO)
                    .load(Ordering::Relaxed),
                time_cycles: self
                    .u64_field(abi::MMAP_PAGE_TIME_CYCLES)
                    .load(Ordering::Relaxed),
                time_mask: self
                    .u64_field(abi::MMAP_PAGE_TIME_MASK)
                    .load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if seq & 1 == 0 && self.u32_field(abi::MMAP_PAGE_LOCK).load(Ordering::Relaxed) == seq {
                return c;
            }
            std::hint::spin_loop();
        }
        PageClock::default()
    }

    fn u64_field(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= 2048);
        // SAFETY: `offset` is one of the 8-byte aligned fields of the metadata page (abi.rs
        // asserts their offsets), inside its first 2 KiB; the page is mapped for the lifetime of
        // `self` (page size ≥ 4 KiB), and the kernel accesses these fields atomically as well
        // (READ_ONCE/WRITE_ONCE/smp_store_release). AtomicU64 has u64's layout.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset) as *mut u64) }
    }

    fn u32_field(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset % 4 == 0 && offset + 4 <= 2048);
        // SAFETY: as in `u64_field`, for a 4-byte aligned u32 field of the metadata page.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(offset) as *mut u32) }
    }

    fn u16_field(&self, offset: usize) -> &AtomicU16 {
        debug_assert!(offset % 2 == 0 && offset + 2 <= 2048);
        // SAFETY: as in `u64_field`, for a 2-byte aligned u16 field of the metadata page.
        unsafe { AtomicU16::from_ptr(self.map.as_mut_ptr().add(offset) as *mut u16) }
    }
}

/// Clock fields of a perf metadata page (perf_event.h, the `time_zero` / `cap_user_time_short`
/// comments): converting TSC values to the perf clock in user space.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageClock {
    /// `cap_user_time_zero`: `time_zero` is valid.
    pub cap_user_time_zero: bool,
    /// `cap_user_time_short`: the TSC is shorter than 64 bits (`time_cycles`, `time_mask`).
    pub cap_user_time_short: bool,
    /// `time_shift`.
    pub time_shift: u16,
    /// `time_mult`.
    pub time_mult: u32,
    /// `time_zero`, in ns of the perf clock.
    pub time_zero: u64,
    /// `time_cycles`.
    pub time_cycles: u64,
    /// `time_mask`.
    pub time_mask: u64,
}

impl PageClock {
    /// Converts a TSC value (cycles) to the perf local clock, in ns.
    pub fn tsc_to_ns(&self, mut cyc: u64) -> u64 {
        if self.cap_user_time_short {
            cyc = self
                .time_cycles
                .wrapping_add(cyc.wrapping_sub(self.time_cycles) & self.time_mask);
        }
        let shift = u32::from(self.time_shift.min(63));
        let quot = cyc >> shift;
        let rem = cyc & ((1u64 << shift) - 1);
        self.time_zero
            .wrapping_add(quot.wrapping_mul(u64::from(self.time_mult)))
            .wrapping_add(rem.wrapping_mul(u64::from(self.time_mult)) >> shift)
    }
}

/// Copies the ring bytes `[tail, head)` of a data area of `size` bytes (a power of two) to the
/// end of `out`, unwrapping the part that runs past the end of the area.
///
/// `read(off, len, dst)` must copy `len` bytes starting at byte `off` of the data area into
/// `dst` (`off + len <= size` always holds). Returns the number of bytes appended, or `None`
/// when `head - tail > size` (nothing is copied then).
pub fn copy_ring_span(
    size: usize,
    tail: u64,
    head: u64,
    out: &mut Vec<u8>,
    mut read: impl FnMut(usize, usize, &mut [u8]),
) -> Option<usize> {
    let avail = head.wrapping_sub(tail);
    if avail == 0 {
        return Some(0);
    }
    if size == 0 || avail > size as u64 {
        return None;
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
    Some(avail)
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
        assert_eq!(copy_ring_span(16, 2, 6, &mut out, rd), Some(4));
        assert_eq!(out, [2, 3, 4, 5]);
        out.clear();
        // Free-running counters: tail 30 = offset 14, head 35 = offset 3 after wrapping.
        assert_eq!(copy_ring_span(16, 30, 35, &mut out, rd), Some(5));
        assert_eq!(out, [14, 15, 0, 1, 2]);
        out.clear();
        assert_eq!(copy_ring_span(16, 0, 17, &mut out, rd), None);
        assert!(out.is_empty());
        assert_eq!(copy_ring_span(16, 7, 7, &mut out, rd), Some(0));
        // Counters that wrapped around u64.
        assert_eq!(copy_ring_span(16, u64::MAX - 1, 2, &mut out, rd), Some(4));
    }

    #[test]
    fn tsc_conversion_follows_the_header_formula() {
        let c = PageClock {
            cap_user_time_zero: true,
            time_shift: 10,
            time_mult: 2048,
            time_zero: 1000,
            ..PageClock::default()
        };
        // ns = time_zero + (cyc >> shift) * mult + (((cyc & mask) * mult) >> shift) = 1000 + 2 * cyc
        assert_eq!(c.tsc_to_ns(500), 2000);
        assert_eq!(c.tsc_to_ns(1025), 1000 + 2050);
    }
}
