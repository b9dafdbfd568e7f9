//! IO-free decoding of perf records (`include/uapi/linux/perf_event.h`, `enum perf_event_type`).
//!
//! Stage: ring buffers (or a perf.data data section) → **records** → attribution. Input:
//! contiguous record bytes in native endianness, as produced by
//! [`crate::RingBuffer::drain_into`]; output: [`Record`]s that borrow from those bytes. Every
//! length comes from the data and is bounded before use: a header whose `size` is impossible
//! ends the batch with a [`Record::Corrupt`]; a record too short for its type becomes a
//! [`Record::Corrupt`] and is skipped by its size.
//!
//! One decoder serves every user: host recording (`IP|TID|TIME|CPU|PERIOD`, plus
//! `CALLCHAIN`/`REGS_USER`/`STACK_USER` for call stacks), `hvprof stat` (tracepoint `RAW`),
//! `detect --probe`, and the in-guest helper (sideband MMAP2, COMM, FORK/EXIT, SWITCH).

mod sample;
mod sideband;

pub mod encode;

use std::borrow::Cow;

pub use sample::{Callchain, CallchainFrames, RegsUser, Sample, SampleRecord};
pub use sideband::{Ksymbol, Mmap, MmapFile, Task};

use crate::abi::{self, perf_event_attr};

/// Where the CPU was when a sample was taken: `perf_event_header.misc & PERF_RECORD_MISC_CPUMODE_MASK`.
///
/// Guest modes are never folded into host modes: a `GuestKernel` IP is a guest virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum CpuMode {
    /// `PERF_RECORD_MISC_CPUMODE_UNKNOWN` (0), or a value the ABI does not define (6, 7).
    Unknown,
    /// `PERF_RECORD_MISC_KERNEL` (1): host kernel.
    Kernel,
    /// `PERF_RECORD_MISC_USER` (2): host user space.
    User,
    /// `PERF_RECORD_MISC_HYPERVISOR` (3): hypervisor code below the host kernel (Xen).
    Hypervisor,
    /// `PERF_RECORD_MISC_GUEST_KERNEL` (4): a vCPU in guest kernel mode.
    GuestKernel,
    /// `PERF_RECORD_MISC_GUEST_USER` (5): a vCPU in guest user mode.
    GuestUser,
}

impl CpuMode {
    /// Decodes the cpumode bits of a record header's `misc` field.
    pub fn from_misc(misc: u16) -> CpuMode {
        match misc & abi::MISC_CPUMODE_MASK {
            abi::MISC_KERNEL => CpuMode::Kernel,
            abi::MISC_USER => CpuMode::User,
            abi::MISC_HYPERVISOR => CpuMode::Hypervisor,
            abi::MISC_GUEST_KERNEL => CpuMode::GuestKernel,
            abi::MISC_GUEST_USER => CpuMode::GuestUser,
            _ => CpuMode::Unknown,
        }
    }

    /// The `misc` cpumode value of this mode (inverse of [`CpuMode::from_misc`]).
    pub fn to_misc(self) -> u16 {
        match self {
            CpuMode::Unknown => abi::MISC_CPUMODE_UNKNOWN,
            CpuMode::Kernel => abi::MISC_KERNEL,
            CpuMode::User => abi::MISC_USER,
            CpuMode::Hypervisor => abi::MISC_HYPERVISOR,
            CpuMode::GuestKernel => abi::MISC_GUEST_KERNEL,
            CpuMode::GuestUser => abi::MISC_GUEST_USER,
        }
    }

    /// True for the two guest modes.
    pub fn is_guest(self) -> bool {
        matches!(self, CpuMode::GuestKernel | CpuMode::GuestUser)
    }
}

/// The `struct sample_id` trailer of non-sample records when `sample_id_all` is set: the fields
/// of `sample_type` among `TID, TIME, ID, STREAM_ID, CPU, IDENTIFIER`, in that order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleId {
    /// pid from `PERF_SAMPLE_TID`.
    pub pid: Option<i32>,
    /// tid from `PERF_SAMPLE_TID`.
    pub tid: Option<i32>,
    /// Time in ns of the event clock, from `PERF_SAMPLE_TIME`.
    pub time_ns: Option<u64>,
    /// Event id from `PERF_SAMPLE_ID` or `PERF_SAMPLE_IDENTIFIER`.
    pub id: Option<u64>,
    /// CPU from `PERF_SAMPLE_CPU`.
    pub cpu: Option<u32>,
}

/// A decoded perf record, borrowing variable-length parts from the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// PERF_RECORD_SAMPLE.
    Sample(SampleRecord<'a>),
    /// PERF_RECORD_MMAP or PERF_RECORD_MMAP2: a mapping appeared in a process.
    Mmap(Mmap<'a>),
    /// PERF_RECORD_COMM: a task changed its name.
    Comm {
        /// Process id.
        pid: i32,
        /// Thread id.
        tid: i32,
        /// `PERF_RECORD_MISC_COMM_EXEC`: the change came from exec.
        exec: bool,
        /// The new name (16 bytes at most in the kernel; bounded here by the record).
        comm: Cow<'a, str>,
        /// The trailer.
        sid: SampleId,
    },
    /// PERF_RECORD_FORK: a task was created.
    Fork(Task),
    /// PERF_RECORD_EXIT: a task exited.
    Exit(Task),
    /// PERF_RECORD_LOST: `lost` records were dropped because the ring buffer was full.
    Lost {
        /// Number of lost records.
        lost: u64,
        /// The trailer.
        sid: SampleId,
    },
    /// PERF_RECORD_LOST_SAMPLES: samples dropped inside the kernel (e.g. PEBS).
    LostSamples {
        /// Number of lost samples.
        lost: u64,
        /// The trailer.
        sid: SampleId,
    },
    /// PERF_RECORD_THROTTLE (`throttled`) or UNTHROTTLE: the kernel stopped or resumed sampling
    /// this event (too many interrupts, `kernel.perf_event_max_sample_rate`).
    Throttle {
        /// True for THROTTLE, false for UNTHROTTLE.
        throttled: bool,
        /// Time in ns.
        time_ns: u64,
        /// The event's id.
        id: u64,
        /// The trailer.
        sid: SampleId,
    },
    /// PERF_RECORD_SWITCH or PERF_RECORD_SWITCH_CPU_WIDE: `sid`'s task switched in or out.
    Switch {
        /// `PERF_RECORD_MISC_SWITCH_OUT`.
        out: bool,
        /// `PERF_RECORD_MISC_SWITCH_OUT_PREEMPT`: switched out while still runnable.
        preempt: bool,
        /// SWITCH_CPU_WIDE only: the (pid, tid) of the next task (on switch-out) or of the
        /// previous one (on switch-in).
        next_prev: Option<(i32, i32)>,
        /// The trailer: the task switching.
        sid: SampleId,
    },
    /// PERF_RECORD_KSYMBOL: kernel text registered or unregistered (BPF, trampolines).
    Ksymbol(Ksymbol<'a>),
    /// A record type this decoder does not interpret; skipped by size.
    Other {
        /// `perf_event_header.type`.
        kind: u32,
        /// `perf_event_header.misc`.
        misc: u16,
        /// The body after the header.
        body: &'a [u8],
    },
    /// Bytes that do not form a valid record.
    Corrupt {
        /// Byte offset in the batch.
        offset: usize,
        /// Bytes skipped: the record's size, or the rest of the batch when the header's size is
        /// impossible (decoding stops then).
        skipped: usize,
        /// What was wrong.
        reason: String,
    },
}

/// Decodes records written with one attr's `sample_type`, `read_format`, `sample_regs_user`,
/// `sample_regs_intr` and `sample_id_all` (only those fields shape the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordDecoder {
    sample_type: u64,
    read_format: u64,
    regs_user: u32,
    regs_intr: u32,
    sample_id_all: bool,
    branch_hw_index: bool,
    trailer_len: usize,
}

impl RecordDecoder {
    /// A decoder for records written with `sample_type` (`PERF_SAMPLE_*` bits) and
    /// `sample_id_all = 1`, no read format and no register dumps.
    pub fn new(sample_type: u64) -> RecordDecoder {
        let mut d = RecordDecoder {
            sample_type,
            read_format: 0,
            regs_user: 0,
            regs_intr: 0,
            sample_id_all: true,
            branch_hw_index: false,
            trailer_len: 0,
        };
        d.trailer_len = d.compute_trailer_len();
        d
    }

    /// A decoder for the records of an event opened with `attr`.
    pub fn from_attr(attr: &perf_event_attr) -> RecordDecoder {
        RecordDecoder::new(attr.sample_type)
            .read_format(attr.read_format)
            .regs_user(attr.sample_regs_user)
            .regs_intr(attr.sample_regs_intr)
            .sample_id_all(attr.sample_id_all() != 0)
            .branch_hw_index(attr.branch_sample_type & (1 << 17) != 0)
    }

    /// Sets `read_format` (`PERF_FORMAT_*`), which shapes `PERF_SAMPLE_READ`.
    pub fn read_format(mut self, bits: u64) -> Self {
        self.read_format = bits;
        self
    }

    /// Sets `sample_regs_user`: the number of registers `PERF_SAMPLE_REGS_USER` dumps is its
    /// population count.
    pub fn regs_user(mut self, mask: u64) -> Self {
        self.regs_user = mask.count_ones();
        self
    }

    /// Sets `sample_regs_intr`, as [`RecordDecoder::regs_user`] for `PERF_SAMPLE_REGS_INTR`.
    pub fn regs_intr(mut self, mask: u64) -> Self {
        self.regs_intr = mask.count_ones();
        self
    }

    /// Sets `sample_id_all`: whether non-sample records carry the `sample_id` trailer.
    pub fn sample_id_all(mut self, on: bool) -> Self {
        self.sample_id_all = on;
        self.trailer_len = self.compute_trailer_len();
        self
    }

    /// Sets whether branch stacks carry `hw_idx` (`PERF_SAMPLE_BRANCH_HW_INDEX`, 1 << 17).
    pub fn branch_hw_index(mut self, on: bool) -> Self {
        self.branch_hw_index = on;
        self
    }

    /// The `sample_type` this decoder reads.
    pub fn sample_type_bits(&self) -> u64 {
        self.sample_type
    }

    fn compute_trailer_len(&self) -> usize {
        if !self.sample_id_all {
            return 0;
        }
        let st = self.sample_type;
        [
            abi::SAMPLE_TID,
            abi::SAMPLE_TIME,
            abi::SAMPLE_ID,
            abi::SAMPLE_STREAM_ID,
            abi::SAMPLE_CPU,
            abi::SAMPLE_IDENTIFIER,
        ]
        .iter()
        .filter(|&&bit| st & bit != 0)
        .count()
            * 8
    }

    /// Decodes every record in `bytes`, calling `f` for each, in order.
    #[inline]
    pub fn decode<'a>(&self, bytes: &'a [u8], mut f: impl FnMut(Record<'a>)) {
        self.for_each(bytes, |r, _| f(r));
    }

    /// Decodes every record in `bytes`, calling `f` with each and its byte offset in `bytes`,
    /// in order: the per-sample path (no iterator state, the record built in place).
    #[inline]
    pub fn for_each<'a>(&self, bytes: &'a [u8], mut f: impl FnMut(Record<'a>, usize)) {
        let mut off = 0usize;
        while let Some(rest) = bytes.get(off..) {
            let Some((mut rec, size)) = self.decode_one(rest) else {
                return;
            };
            if let Record::Corrupt { offset, .. } = &mut rec {
                *offset += off;
            }
            f(rec, off);
            off += size;
        }
    }

    /// An iterator over the records in `bytes`.
    #[inline]
    pub fn records<'d, 'a>(&'d self, bytes: &'a [u8]) -> Records<'d, 'a> {
        Records {
            decoder: self,
            bytes,
            off: 0,
        }
    }

    /// Decodes the one record that starts at the beginning of `bytes`, with its size in bytes;
    /// `None` when `bytes` is empty.
    #[inline]
    pub fn decode_one<'a>(&self, bytes: &'a [u8]) -> Option<(Record<'a>, usize)> {
        if bytes.is_empty() {
            return None;
        }
        if bytes.len() < abi::HEADER_SIZE {
            return Some((
                corrupt(0, bytes.len(), "truncated record header".into()),
                bytes.len(),
            ));
        }
        let kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let misc = u16::from_ne_bytes([bytes[4], bytes[5]]);
        let size = usize::from(u16::from_ne_bytes([bytes[6], bytes[7]]));
        if size < abi::HEADER_SIZE || size > bytes.len() {
            let reason = format!(
                "record type {kind} claims {size} bytes, {} available",
                bytes.len()
            );
            return Some((corrupt(0, bytes.len(), reason), bytes.len()));
        }
        let body = &bytes[abi::HEADER_SIZE..size];
        let rec = self.decode_body(kind, misc, body).unwrap_or_else(|| {
            corrupt(
                0,
                size,
                format!("record type {kind} too short for its layout ({size} bytes)"),
            )
        });
        Some((rec, size))
    }

    #[inline]
    fn decode_body<'a>(&self, kind: u32, misc: u16, body: &'a [u8]) -> Option<Record<'a>> {
        if kind == abi::RECORD_SAMPLE {
            return sample::decode(self, misc, body).map(Record::Sample);
        }
        if !sideband::KNOWN.contains(&kind) {
            return Some(Record::Other { kind, misc, body });
        }
        let (fields, sid) = self.split_trailer(body)?;
        sideband::decode(kind, misc, fields, sid, body)
    }

    /// Splits a non-sample record body into its fields and its parsed `sample_id` trailer.
    #[inline]
    fn split_trailer<'a>(&self, body: &'a [u8]) -> Option<(&'a [u8], SampleId)> {
        let at = body.len().checked_sub(self.trailer_len)?;
        let (fields, trailer) = body.split_at(at);
        let mut c = Cursor::new(trailer);
        let st = self.sample_type;
        let mut sid = SampleId::default();
        if self.sample_id_all {
            if st & abi::SAMPLE_TID != 0 {
                sid.pid = Some(c.u32()? as i32);
                sid.tid = Some(c.u32()? as i32);
            }
            if st & abi::SAMPLE_TIME != 0 {
                sid.time_ns = Some(c.u64()?);
            }
            if st & abi::SAMPLE_ID != 0 {
                sid.id = Some(c.u64()?);
            }
            if st & abi::SAMPLE_STREAM_ID != 0 {
                c.u64()?;
            }
            if st & abi::SAMPLE_CPU != 0 {
                sid.cpu = Some(c.u32()?);
                c.u32()?;
            }
            if st & abi::SAMPLE_IDENTIFIER != 0 {
                sid.id = Some(c.u64()?);
            }
        }
        Some((fields, sid))
    }
}

/// Iterator over the records of a batch; see [`RecordDecoder::records`]. Ends after a
/// [`Record::Corrupt`] whose header size was impossible.
#[derive(Debug)]
pub struct Records<'d, 'a> {
    decoder: &'d RecordDecoder,
    bytes: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Records<'_, 'a> {
    type Item = Record<'a>;

    #[inline]
    fn next(&mut self) -> Option<Record<'a>> {
        let rest = self.bytes.get(self.off..)?;
        let (mut rec, size) = self.decoder.decode_one(rest)?;
        if let Record::Corrupt { offset, .. } = &mut rec {
            *offset += self.off;
        }
        self.off += size;
        Some(rec)
    }
}

fn corrupt<'a>(offset: usize, skipped: usize, reason: String) -> Record<'a> {
    Record::Corrupt {
        offset,
        skipped,
        reason,
    }
}

/// Bounds-checked native-endian reader over a record body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Cursor { b, at: 0 }
    }
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    #[inline]
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|s| u64::from_ne_bytes(s.try_into().unwrap_or([0; 8])))
    }
    #[inline]
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_ne_bytes(s.try_into().unwrap_or([0; 4])))
    }
    #[inline]
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .map(|s| u16::from_ne_bytes(s.try_into().unwrap_or([0; 2])))
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.b.get(self.at..).unwrap_or(&[])
    }
}

/// A NUL-terminated string at the start of `b` (the whole of `b` if it has no NUL), as UTF-8
/// with invalid bytes replaced.
pub(crate) fn c_str(b: &[u8]) -> Cow<'_, str> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end])
}

#[cfg(test)]
mod tests;
