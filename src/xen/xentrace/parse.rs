//! xentrace's binary file, record by record, bounded and panic-free on any bytes.
//!
//! The layout is Xen 4.17's `struct t_rec` (`xen/include/public/trace.h`): a `u32` header
//! (bits 0–27 the event id, bits 28–30 the number of extra `u32` words, bit 31 set when a
//! 64-bit cycle counter follows as `cycles_lo, cycles_hi`), then the extra words. xentrace
//! (`tools/xentrace/xentrace.c`, `write_buffer`) writes each per-CPU buffer window after a
//! `TRC_TRACE_CPU_CHANGE` record whose two extra words are `int cpu` and `unsigned
//! window_size`; records after it were written on that pCPU. All words are little-endian
//! (x86).
//!
//! ```
//! use hvprof::xen::xentrace::parse::{Parser, TRC_TRACE_CPU_CHANGE};
//! let mut bytes = Vec::new();
//! bytes.extend_from_slice(&(TRC_TRACE_CPU_CHANGE | 2 << 28).to_le_bytes());
//! bytes.extend_from_slice(&1u32.to_le_bytes());
//! bytes.extend_from_slice(&0u32.to_le_bytes());
//! let mut p = Parser::new(&bytes);
//! assert!(p.next().is_none());
//! assert_eq!(p.cpu(), Some(1));
//! ```

/// `TRC_LOST_RECORDS` (`TRC_GEN + 1`): extra words `lost_records`, `did | vid << 16`,
/// `first_tsc` (lo, hi); see `insert_lost_records` in xen/common/trace.c.
pub const TRC_LOST_RECORDS: u32 = 0x0001_f001;
/// `TRC_TRACE_CPU_CHANGE` (`TRC_GEN + 3`), written by xentrace itself.
pub const TRC_TRACE_CPU_CHANGE: u32 = 0x0001_f003;
/// `TRC_SCHED_RUNSTATE_CHANGE` (`TRC_SCHED_MIN + 1`). Xen ORs the old state (2 bits) in at
/// bit 8 and the new state at bit 4 (`trace_runstate_change`, xen/common/sched/core.c); the one
/// extra word is `vcpu | domain << 16`.
pub const TRC_SCHED_RUNSTATE_CHANGE: u32 = 0x0002_1001;
/// `TRC_SCHED_SWITCH` (`TRC_SCHED_VERBOSE + 10`): prev domid, prev unit, next domid, next unit.
pub const TRC_SCHED_SWITCH: u32 = 0x0002_800a;
/// `TRC_HVM_VMENTRY` (`TRC_HVM_ENTRYEXIT + 1`).
pub const TRC_HVM_VMENTRY: u32 = 0x0008_1001;
/// `TRC_HVM_VMEXIT` (`TRC_HVM_ENTRYEXIT + 2`): extra words exit reason, rip.
pub const TRC_HVM_VMEXIT: u32 = 0x0008_1002;
/// `TRC_64_FLAG` (trace.h): set on records carrying 64-bit values (`TRC_HVM_VMEXIT64`).
pub const TRC_64_FLAG: u32 = 0x100;
/// `TRC_HVM_NESTEDFLAG` (trace.h): the record is about a nested guest.
pub const TRC_HVM_NESTEDFLAG: u32 = 0x400;
/// `TRC_PV_HYPERCALL_V2` (`TRC_PV_ENTRY + 13`): word 0 is the op in bits 0–19 and the
/// argument-presence bits above (`TRC_PV_HYPERCALL_V2_ARG_MASK` = 0xfff00000).
pub const TRC_PV_HYPERCALL_V2: u32 = 0x0020_100d;
/// `TRC_PV_HYPERCALL` (`TRC_PV_ENTRY + 1`, before V2): word 0 (32-bit PV: eip; 64-bit: rip lo,
/// hi) then the op; hvprof counts these without an op.
pub const TRC_PV_HYPERCALL: u32 = 0x0020_1001;

/// `TRACE_EXTRA_SHIFT`.
const EXTRA_SHIFT: u32 = 28;
/// `TRACE_EXTRA_MAX`.
const EXTRA_MAX: u32 = 7;
/// `TRC_HD_CYCLE_FLAG`.
const CYCLE_FLAG: u32 = 1 << 31;
/// pCPUs a CPU_CHANGE record may name (more is taken as corrupt).
pub const MAX_PCPUS: u32 = 1 << 16;

/// One record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord {
    /// The pCPU whose buffer it came from (the last `TRC_TRACE_CPU_CHANGE`), if any yet.
    pub cpu: Option<u32>,
    /// The event id (28 bits).
    pub event: u32,
    /// The TSC value when it was written, in cycles of that pCPU's TSC.
    pub tsc: Option<u64>,
    extra: [u32; 7],
    n_extra: u8,
}

impl TraceRecord {
    /// Its extra words (at most 7).
    pub fn extra(&self) -> &[u32] {
        &self.extra[..self.n_extra as usize]
    }

    /// Extra word `i`, if present.
    pub fn word(&self, i: usize) -> Option<u32> {
        self.extra().get(i).copied()
    }
}

/// Counts of what the parser met besides records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Records returned.
    pub records: u64,
    /// `TRC_TRACE_CPU_CHANGE` records seen.
    pub cpu_changes: u64,
    /// Records Xen could not write (the sum of `TRC_LOST_RECORDS` counts).
    pub lost_records: u64,
    /// Bytes at the end too short for the record their header announced.
    pub truncated_bytes: u64,
    /// CPU_CHANGE records naming an impossible pCPU (their window is still parsed, with no
    /// pCPU).
    pub bad_cpu_changes: u64,
}

/// Walks a trace file's bytes. Never reads past the end, never allocates by the data.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    cpu: Option<u32>,
    stats: ParseStats,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> Parser<'a> {
    /// A parser at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Parser<'a> {
        Parser {
            bytes,
            pos: 0,
            cpu: None,
            stats: ParseStats::default(),
        }
    }

    /// The pCPU of the current window.
    pub fn cpu(&self) -> Option<u32> {
        self.cpu
    }

    /// What was met so far.
    pub fn stats(&self) -> ParseStats {
        self.stats
    }
}

impl Iterator for Parser<'_> {
    type Item = TraceRecord;

    fn next(&mut self) -> Option<TraceRecord> {
        loop {
            let left = self.bytes.len().saturating_sub(self.pos);
            if left == 0 {
                return None;
            }
            let Some(hdr) = u32_at(self.bytes, self.pos) else {
                self.stats.truncated_bytes += left as u64;
                self.pos = self.bytes.len();
                return None;
            };
            let n_extra = (hdr >> EXTRA_SHIFT) & EXTRA_MAX;
            let cycles = hdr & CYCLE_FLAG != 0;
            let size = 4 + if cycles { 8 } else { 0 } + 4 * n_extra as usize;
            if left < size {
                self.stats.truncated_bytes += left as u64;
                self.pos = self.bytes.len();
                return None;
            }
            let mut at = self.pos + 4;
            let tsc = if cycles {
                let lo = u32_at(self.bytes, at)? as u64;
                let hi = u32_at(self.bytes, at + 4)? as u64;
                at += 8;
                Some(hi << 32 | lo)
            } else {
                None
            };
            let mut extra = [0u32; 7];
            for (i, w) in extra.iter_mut().enumerate().take(n_extra as usize) {
                *w = u32_at(self.bytes, at + 4 * i)?;
            }
            self.pos += size;
            let event = hdr & 0x0fff_ffff;
            if event == TRC_TRACE_CPU_CHANGE {
                self.stats.cpu_changes += 1;
                self.cpu = (n_extra >= 1 && extra[0] < MAX_PCPUS).then_some(extra[0]);
                if self.cpu.is_none() {
                    self.stats.bad_cpu_changes += 1;
                }
                continue;
            }
            if event == TRC_LOST_RECORDS && n_extra >= 1 {
                self.stats.lost_records = self.stats.lost_records.saturating_add(extra[0] as u64);
            }
            self.stats.records += 1;
            return Some(TraceRecord {
                cpu: self.cpu,
                event,
                tsc,
                extra,
                n_extra: n_extra as u8,
            });
        }
    }
}

/// Builds trace records byte by byte as Xen and xentrace write them (fixtures, tests, fuzz
/// seeds).
#[derive(Debug, Default, Clone)]
pub struct TraceWriter {
    /// The bytes so far.
    pub bytes: Vec<u8>,
}

impl TraceWriter {
    /// An empty file.
    pub fn new() -> TraceWriter {
        TraceWriter::default()
    }

    /// A `t_rec`: `event` with `tsc` (if any) and up to 7 extra words (more are dropped).
    pub fn record(&mut self, event: u32, tsc: Option<u64>, extra: &[u32]) -> &mut Self {
        let n = extra.len().min(EXTRA_MAX as usize);
        let mut hdr = (event & 0x0fff_ffff) | (n as u32) << EXTRA_SHIFT;
        if tsc.is_some() {
            hdr |= CYCLE_FLAG;
        }
        self.bytes.extend_from_slice(&hdr.to_le_bytes());
        if let Some(t) = tsc {
            self.bytes.extend_from_slice(&(t as u32).to_le_bytes());
            self.bytes
                .extend_from_slice(&((t >> 32) as u32).to_le_bytes());
        }
        for w in &extra[..n] {
            self.bytes.extend_from_slice(&w.to_le_bytes());
        }
        self
    }

    /// xentrace's `cpu_change_record` for a window of `window_size` bytes of pCPU `cpu`.
    pub fn cpu_change(&mut self, cpu: u32, window_size: u32) -> &mut Self {
        self.record(TRC_TRACE_CPU_CHANGE, None, &[cpu, window_size])
    }

    /// A runstate change of (`domid`, `vcpu`) from `old` to `new` (RUNSTATE_* numbers).
    pub fn runstate(&mut self, tsc: u64, domid: u16, vcpu: u16, old: u32, new: u32) -> &mut Self {
        let ev = TRC_SCHED_RUNSTATE_CHANGE | (old & 3) << 8 | (new & 3) << 4;
        self.record(ev, Some(tsc), &[vcpu as u32 | (domid as u32) << 16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_laid_out_per_trace_h() {
        // Written by hand from trace.h: a CPU change to pCPU 3 (header 0x2001f003, no cycles),
        // then a runstate change (domain 1, vCPU 2, runnable → running) at TSC 0x1_0000_0005.
        let bytes: Vec<u8> = [
            0x2001_f003u32,
            3,
            24, // cpu_change_record
            0x9002_1101,
            5,
            1,
            0x0001_0002, // t_rec: 1 extra word, cycles
            0x1002_800a,
            0, // TRC_SCHED_SWITCH with one extra word, no cycles
        ]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
        let mut p = Parser::new(&bytes);
        let r = p.next().unwrap();
        assert_eq!(r.cpu, Some(3));
        assert_eq!(r.event, 0x0002_1101);
        assert_eq!(r.tsc, Some(0x1_0000_0005));
        assert_eq!(r.extra(), [0x0001_0002]);
        let s = p.next().unwrap();
        assert_eq!(s.event, TRC_SCHED_SWITCH);
        assert_eq!(s.extra(), [0]);
        assert_eq!(s.tsc, None);
        assert!(p.next().is_none());
        assert_eq!(p.stats().records, 2);
        assert_eq!(p.stats().cpu_changes, 1);
        let mut w = TraceWriter::new();
        w.cpu_change(3, 24).runstate(0x1_0000_0005, 1, 2, 1, 0);
        assert_eq!(&w.bytes[..], &bytes[..28]);
    }

    #[test]
    fn truncated_and_lost_records_are_counted() {
        let mut w = TraceWriter::new();
        w.record(TRC_LOST_RECORDS, Some(9), &[17, 0, 1, 0]);
        w.record(TRC_SCHED_SWITCH, Some(10), &[0, 0, 1, 0]);
        let cut = w.bytes.len() - 3;
        let mut p = Parser::new(&w.bytes[..cut]);
        assert_eq!(p.next().map(|r| r.event), Some(TRC_LOST_RECORDS));
        assert!(p.next().is_none());
        assert_eq!(p.stats().lost_records, 17);
        assert_eq!(p.stats().truncated_bytes, 4 + 8 + 16 - 3);
    }

    #[test]
    fn impossible_cpu_change_is_counted() {
        let mut w = TraceWriter::new();
        w.cpu_change(u32::MAX, 0).runstate(1, 0, 0, 0, 1);
        let mut p = Parser::new(&w.bytes);
        assert_eq!(p.next().map(|r| r.cpu), Some(None));
        assert_eq!(p.stats().bad_cpu_changes, 1);
    }

    #[test]
    fn any_bytes_end_without_panic() {
        // Every prefix of a valid file and a spray of header words: bounded, no panic.
        let mut w = TraceWriter::new();
        w.cpu_change(0, 100)
            .runstate(1, 1, 0, 1, 0)
            .record(TRC_HVM_VMEXIT, Some(3), &[7; 7]);
        for n in 0..=w.bytes.len() {
            let total: usize = Parser::new(&w.bytes[..n]).count();
            assert!(total <= 2);
        }
        let mut x: u32 = 0x1234_5678;
        let mut junk = Vec::new();
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk.extend_from_slice(&x.to_le_bytes());
        }
        let mut p = Parser::new(&junk);
        let n = p.by_ref().count();
        assert!(n <= junk.len() / 4);
        assert!(p.stats().truncated_bytes < 4 + 8 + 28);
    }
}
