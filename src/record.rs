//! IO-free decoding of perf records (`include/uapi/linux/perf_event.h`, enum
//! `perf_event_type`).
//!
//! Stage: ring buffers → **records** → attribution. Input: contiguous record bytes as produced
//! by [`crate::ring::RingBuffer::drain_into`] (native endianness); output: [`Record`]s. Every
//! length comes from the data and is bounded before use: a record whose `size` is smaller than
//! its header or runs past the buffer stops decoding and is reported as [`Record::Corrupt`].

use serde::{Deserialize, Serialize};

use crate::sys::abi;

/// Where the CPU was when a sample was taken: `perf_event_header.misc & PERF_RECORD_MISC_CPUMODE_MASK`.
///
/// Guest modes are never folded into host modes: a `GuestKernel` IP is a guest virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

/// One PERF_RECORD_SAMPLE with the fields hvprof requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Instruction pointer; a host VA for host modes, a guest VA for guest modes.
    pub ip: u64,
    /// Process id (`PERF_SAMPLE_TID`); for guest samples, the VMM process.
    pub pid: i32,
    /// Thread id; for guest samples, the vCPU thread.
    pub tid: i32,
    /// Timestamp in ns of the event clock (`perf_clock`, CLOCK_MONOTONIC-like), 0 if absent.
    pub time_ns: u64,
    /// CPU the sample was taken on (`PERF_SAMPLE_CPU`), `u32::MAX` if absent.
    pub cpu: u32,
    /// Events since the previous sample (`PERF_SAMPLE_PERIOD`): ns for cpu-clock/task-clock.
    pub period: u64,
    /// Where the CPU was.
    pub cpumode: CpuMode,
    /// `PERF_RECORD_MISC_EXACT_IP` was set.
    pub exact_ip: bool,
}

/// The `sample_id` trailer present on non-sample records when `sample_id_all` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleId {
    /// pid from `PERF_SAMPLE_TID`, if requested.
    pub pid: Option<i32>,
    /// tid from `PERF_SAMPLE_TID`, if requested.
    pub tid: Option<i32>,
    /// Time in ns from `PERF_SAMPLE_TIME`, if requested.
    pub time_ns: Option<u64>,
    /// CPU from `PERF_SAMPLE_CPU`, if requested.
    pub cpu: Option<u32>,
}

/// A decoded perf record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// PERF_RECORD_SAMPLE.
    Sample(Sample),
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
    /// PERF_RECORD_THROTTLE: the kernel stopped sampling this event (too many interrupts,
    /// `perf_event_max_sample_rate`).
    Throttle {
        /// Time in ns.
        time_ns: u64,
        /// The trailer.
        sid: SampleId,
    },
    /// PERF_RECORD_UNTHROTTLE: sampling resumed.
    Unthrottle {
        /// Time in ns.
        time_ns: u64,
        /// The trailer.
        sid: SampleId,
    },
    /// PERF_RECORD_EXIT: a monitored task exited.
    Exit {
        /// Process id.
        pid: i32,
        /// Thread id.
        tid: i32,
        /// Time in ns.
        time_ns: u64,
    },
    /// PERF_RECORD_COMM: a task changed its name.
    Comm {
        /// Process id.
        pid: i32,
        /// Thread id.
        tid: i32,
        /// The new name (at most 16 bytes in the kernel, bounded here to the record).
        comm: String,
    },
    /// A record type hvprof does not use; skipped by size.
    Other {
        /// `perf_event_header.type`.
        kind: u32,
    },
    /// Bytes that do not form a valid record; decoding of the batch stops here.
    Corrupt {
        /// Byte offset in the batch.
        offset: usize,
        /// Bytes left undecoded.
        skipped: usize,
        /// What was wrong.
        reason: String,
    },
}

/// Decodes a contiguous batch of records produced with `sample_type` and `sample_id_all = 1`.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    sample_type: u64,
}

impl RecordDecoder {
    /// A decoder for records written with `sample_type` (`PERF_SAMPLE_*` bits).
    pub fn new(sample_type: u64) -> RecordDecoder {
        RecordDecoder { sample_type }
    }

    /// Decodes every record in `bytes`, calling `f` for each. A record whose body is too short
    /// for its type becomes a [`Record::Corrupt`] and is skipped by its size; a header whose
    /// size is impossible (smaller than a header, or past the end) ends the batch after a
    /// [`Record::Corrupt`] covering the rest.
    pub fn decode(&self, bytes: &[u8], mut f: impl FnMut(Record)) {
        let mut off = 0usize;
        while off < bytes.len() {
            let rest = &bytes[off..];
            if rest.len() < abi::HEADER_SIZE {
                f(corrupt(off, rest.len(), "truncated record header"));
                return;
            }
            let kind = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default());
            let misc = u16::from_ne_bytes(rest[4..6].try_into().unwrap_or_default());
            let size = u16::from_ne_bytes(rest[6..8].try_into().unwrap_or_default()) as usize;
            if size < abi::HEADER_SIZE || size > rest.len() {
                f(corrupt(
                    off,
                    rest.len(),
                    &format!(
                        "record type {kind} claims {size} bytes, {} available",
                        rest.len()
                    ),
                ));
                return;
            }
            let body = &rest[abi::HEADER_SIZE..size];
            // A record too short for its type is skipped by its (valid) size; decoding goes on.
            match self.decode_one(kind, misc, body) {
                Some(r) => f(r),
                None => f(corrupt(
                    off,
                    size,
                    &format!("record type {kind} too short ({size} bytes)"),
                )),
            }
            off += size;
        }
    }

    fn decode_one(&self, kind: u32, misc: u16, body: &[u8]) -> Option<Record> {
        let mut c = Cursor { b: body, at: 0 };
        Some(match kind {
            abi::RECORD_SAMPLE => Record::Sample(self.sample(misc, &mut c)?),
            abi::RECORD_LOST => {
                let _id = c.u64()?;
                let lost = c.u64()?;
                Record::Lost {
                    lost,
                    sid: self.sample_id(&mut c),
                }
            }
            abi::RECORD_LOST_SAMPLES => {
                let lost = c.u64()?;
                Record::LostSamples {
                    lost,
                    sid: self.sample_id(&mut c),
                }
            }
            abi::RECORD_THROTTLE | abi::RECORD_UNTHROTTLE => {
                let time_ns = c.u64()?;
                let _id = c.u64()?;
                let _stream = c.u64()?;
                let sid = self.sample_id(&mut c);
                if kind == abi::RECORD_THROTTLE {
                    Record::Throttle { time_ns, sid }
                } else {
                    Record::Unthrottle { time_ns, sid }
                }
            }
            abi::RECORD_EXIT => {
                let pid = c.u32()? as i32;
                let _ppid = c.u32()?;
                let tid = c.u32()? as i32;
                let _ptid = c.u32()?;
                let time_ns = c.u64()?;
                Record::Exit { pid, tid, time_ns }
            }
            abi::RECORD_COMM => {
                let pid = c.u32()? as i32;
                let tid = c.u32()? as i32;
                let rest = &body[c.at..];
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                let comm = String::from_utf8_lossy(&rest[..end.min(64)]).into_owned();
                Record::Comm { pid, tid, comm }
            }
            other => Record::Other { kind: other },
        })
    }

    fn sample(&self, misc: u16, c: &mut Cursor<'_>) -> Option<Sample> {
        let st = self.sample_type;
        let mut s = Sample {
            ip: 0,
            pid: -1,
            tid: -1,
            time_ns: 0,
            cpu: u32::MAX,
            period: 0,
            cpumode: CpuMode::from_misc(misc),
            exact_ip: misc & abi::MISC_EXACT_IP != 0,
        };
        if st & abi::SAMPLE_IDENTIFIER != 0 {
            c.u64()?;
        }
        if st & abi::SAMPLE_IP != 0 {
            s.ip = c.u64()?;
        }
        if st & abi::SAMPLE_TID != 0 {
            s.pid = c.u32()? as i32;
            s.tid = c.u32()? as i32;
        }
        if st & abi::SAMPLE_TIME != 0 {
            s.time_ns = c.u64()?;
        }
        if st & b_addr() != 0 {
            c.u64()?;
        }
        if st & abi::SAMPLE_ID != 0 {
            c.u64()?;
        }
        if st & abi::SAMPLE_STREAM_ID != 0 {
            c.u64()?;
        }
        if st & abi::SAMPLE_CPU != 0 {
            s.cpu = c.u32()?;
            c.u32()?;
        }
        if st & abi::SAMPLE_PERIOD != 0 {
            s.period = c.u64()?;
        }
        Some(s)
    }

    fn sample_id(&self, c: &mut Cursor<'_>) -> SampleId {
        // Layout of `struct sample_id` (perf_event.h): TID, TIME, ID, STREAM_ID, CPU, IDENTIFIER.
        let st = self.sample_type;
        let mut sid = SampleId::default();
        if st & abi::SAMPLE_TID != 0 {
            sid.pid = c.u32().map(|v| v as i32);
            sid.tid = c.u32().map(|v| v as i32);
        }
        if st & abi::SAMPLE_TIME != 0 {
            sid.time_ns = c.u64();
        }
        if st & abi::SAMPLE_ID != 0 {
            c.u64();
        }
        if st & abi::SAMPLE_STREAM_ID != 0 {
            c.u64();
        }
        if st & abi::SAMPLE_CPU != 0 {
            sid.cpu = c.u32();
        }
        sid
    }
}

fn b_addr() -> u64 {
    perf_event_open_sys::bindings::PERF_SAMPLE_ADDR as u64
}

fn corrupt(offset: usize, skipped: usize, reason: &str) -> Record {
    Record::Corrupt {
        offset,
        skipped,
        reason: reason.to_string(),
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at.checked_add(N)?)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_ne_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_ne_bytes)
    }
}

/// Byte-level encoders of the records above, exactly as the kernel lays them out; used by
/// tests and fixtures to produce what this machine cannot (guest-tagged samples).
pub mod encode {
    use super::CpuMode;
    use crate::sys::abi;

    fn header(out: &mut Vec<u8>, kind: u32, misc: u16, size: usize) {
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&misc.to_ne_bytes());
        out.extend_from_slice(&(size as u16).to_ne_bytes());
    }

    /// A PERF_RECORD_SAMPLE with `sample_type = IP|TID|TIME|CPU|PERIOD` (48 bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        out: &mut Vec<u8>,
        cpumode: CpuMode,
        ip: u64,
        pid: u32,
        tid: u32,
        time: u64,
        cpu: u32,
        period: u64,
    ) {
        header(out, abi::RECORD_SAMPLE, cpumode.to_misc(), 48);
        out.extend_from_slice(&ip.to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        out.extend_from_slice(&tid.to_ne_bytes());
        out.extend_from_slice(&time.to_ne_bytes());
        out.extend_from_slice(&cpu.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&period.to_ne_bytes());
    }

    /// The sample_id trailer for `IP|TID|TIME|CPU|PERIOD`: `u32 pid, tid; u64 time; u32 cpu, res`.
    fn sample_id(out: &mut Vec<u8>, pid: u32, tid: u32, time: u64, cpu: u32) {
        out.extend_from_slice(&pid.to_ne_bytes());
        out.extend_from_slice(&tid.to_ne_bytes());
        out.extend_from_slice(&time.to_ne_bytes());
        out.extend_from_slice(&cpu.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
    }

    /// A PERF_RECORD_LOST with its sample_id trailer (48 bytes).
    pub fn lost(out: &mut Vec<u8>, id: u64, lost: u64, pid: u32, tid: u32, time: u64, cpu: u32) {
        header(out, abi::RECORD_LOST, 0, 48);
        out.extend_from_slice(&id.to_ne_bytes());
        out.extend_from_slice(&lost.to_ne_bytes());
        sample_id(out, pid, tid, time, cpu);
    }

    /// A PERF_RECORD_THROTTLE (or UNTHROTTLE when `throttle` is false) with trailer (56 bytes).
    pub fn throttle(out: &mut Vec<u8>, throttle: bool, time: u64, pid: u32, tid: u32, cpu: u32) {
        let kind = if throttle {
            abi::RECORD_THROTTLE
        } else {
            abi::RECORD_UNTHROTTLE
        };
        header(out, kind, 0, 56);
        out.extend_from_slice(&time.to_ne_bytes());
        out.extend_from_slice(&0u64.to_ne_bytes());
        out.extend_from_slice(&0u64.to_ne_bytes());
        sample_id(out, pid, tid, time, cpu);
    }

    /// A PERF_RECORD_EXIT with trailer (48 bytes).
    pub fn exit(out: &mut Vec<u8>, pid: u32, tid: u32, time: u64, cpu: u32) {
        header(out, abi::RECORD_EXIT, 0, 48);
        for v in [pid, pid, tid, tid] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&time.to_ne_bytes());
        sample_id(out, pid, tid, time, cpu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpumode_from_misc_table() {
        let table = [
            (0u16, CpuMode::Unknown),
            (1, CpuMode::Kernel),
            (2, CpuMode::User),
            (3, CpuMode::Hypervisor),
            (4, CpuMode::GuestKernel),
            (5, CpuMode::GuestUser),
            (6, CpuMode::Unknown),
            (7, CpuMode::Unknown),
            (abi::MISC_EXACT_IP | 4, CpuMode::GuestKernel),
            (0x2000 | 2, CpuMode::User),
        ];
        for (misc, mode) in table {
            assert_eq!(CpuMode::from_misc(misc), mode, "misc {misc:#x}");
        }
        for m in [
            CpuMode::Kernel,
            CpuMode::User,
            CpuMode::Hypervisor,
            CpuMode::GuestKernel,
            CpuMode::GuestUser,
        ] {
            assert_eq!(CpuMode::from_misc(m.to_misc()), m);
        }
    }

    #[test]
    fn decodes_sample_bytes_laid_out_by_hand() {
        // header: type 9, misc 4 (GUEST_KERNEL), size 48; then ip, pid, tid, time, cpu, res, period.
        let mut b = vec![9, 0, 0, 0, 4, 0, 48, 0];
        b.extend_from_slice(&0xffff_ffff_8100_1234u64.to_le_bytes());
        b.extend_from_slice(&100u32.to_le_bytes());
        b.extend_from_slice(&101u32.to_le_bytes());
        b.extend_from_slice(&5_000u64.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1_000_000u64.to_le_bytes());
        let mut out = vec![];
        RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).decode(&b, |r| out.push(r));
        assert_eq!(
            out,
            vec![Record::Sample(Sample {
                ip: 0xffff_ffff_8100_1234,
                pid: 100,
                tid: 101,
                time_ns: 5000,
                cpu: 1,
                period: 1_000_000,
                cpumode: CpuMode::GuestKernel,
                exact_ip: false
            })]
        );
        let mut enc = vec![];
        encode::sample(
            &mut enc,
            CpuMode::GuestKernel,
            0xffff_ffff_8100_1234,
            100,
            101,
            5000,
            1,
            1_000_000,
        );
        assert_eq!(enc, b, "encoder matches the hand-laid bytes");
    }

    #[test]
    fn corrupt_sizes_stop_decoding() {
        let mut b = vec![];
        encode::sample(&mut b, CpuMode::User, 1, 2, 3, 4, 0, 5);
        b.extend_from_slice(&[9, 0, 0, 0, 2, 0, 4, 0]); // size 4 < header
        let mut out = vec![];
        RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).decode(&b, |r| out.push(r));
        assert_eq!(out.len(), 2);
        assert!(matches!(out[1], Record::Corrupt { offset: 48, .. }));
        // A size past the end of the batch.
        let b = [9u8, 0, 0, 0, 2, 0, 200, 0, 0, 0];
        let mut out = vec![];
        RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).decode(&b, |r| out.push(r));
        assert!(matches!(out[0], Record::Corrupt { offset: 0, .. }));
        // A sample too short for its sample_type is skipped; the next record still decodes.
        let mut b = vec![9u8, 0, 0, 0, 2, 0, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        encode::sample(&mut b, CpuMode::User, 1, 2, 3, 4, 0, 5);
        let mut out = vec![];
        RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).decode(&b, |r| out.push(r));
        assert!(matches!(
            out[0],
            Record::Corrupt {
                offset: 0,
                skipped: 16,
                ..
            }
        ));
        assert!(matches!(out[1], Record::Sample(Sample { ip: 1, .. })));
    }

    #[test]
    fn decodes_lost_throttle_exit() {
        let mut b = vec![];
        encode::lost(&mut b, 7, 42, 10, 11, 99, 1);
        encode::throttle(&mut b, true, 100, 10, 11, 1);
        encode::throttle(&mut b, false, 200, 10, 11, 1);
        encode::exit(&mut b, 10, 11, 300, 1);
        let mut out = vec![];
        RecordDecoder::new(abi::HVPROF_SAMPLE_TYPE).decode(&b, |r| out.push(r));
        let sid = SampleId {
            pid: Some(10),
            tid: Some(11),
            time_ns: Some(99),
            cpu: Some(1),
        };
        assert_eq!(out[0], Record::Lost { lost: 42, sid });
        assert!(matches!(out[1], Record::Throttle { time_ns: 100, .. }));
        assert!(matches!(out[2], Record::Unthrottle { time_ns: 200, .. }));
        assert_eq!(
            out[3],
            Record::Exit {
                pid: 10,
                tid: 11,
                time_ns: 300
            }
        );
    }
}
