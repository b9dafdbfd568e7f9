//! Non-sample records: MMAP/MMAP2, COMM, FORK/EXIT, LOST, LOST_SAMPLES, THROTTLE/UNTHROTTLE,
//! SWITCH/SWITCH_CPU_WIDE, KSYMBOL (layouts: perf_event.h, `enum perf_event_type`).

use std::borrow::Cow;

use super::{c_str, Cursor, Record, SampleId};
use crate::abi;

/// PERF_RECORD_MMAP / PERF_RECORD_MMAP2: `len` bytes at `addr` of process `pid` map `filename`
/// from file offset `pgoff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mmap<'a> {
    /// Process id.
    pub pid: i32,
    /// Thread id.
    pub tid: i32,
    /// Start address (a host VA for host mappings; a guest VA in records a guest wrote).
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// File offset of `addr`, in bytes.
    pub pgoff: u64,
    /// The file's identity (MMAP2 only; `None` for MMAP).
    pub file: Option<MmapFile<'a>>,
    /// `PROT_*` bits (MMAP2 only; 0 for MMAP).
    pub prot: u32,
    /// `MAP_*` bits (MMAP2 only; 0 for MMAP).
    pub flags: u32,
    /// Header cpumode (kernel maps are `PERF_RECORD_MISC_KERNEL`; guest ones the guest modes).
    pub cpumode: super::CpuMode,
    /// `PERF_RECORD_MISC_MMAP_DATA`: a non-executable mapping.
    pub data: bool,
    /// Path, or a pseudo-name (`[vdso]`, `//anon`, `[kernel.kallsyms]_text`).
    pub filename: Cow<'a, str>,
    /// The trailer.
    pub sid: SampleId,
}

/// How an MMAP2 record identifies the mapped file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmapFile<'a> {
    /// Device and inode (`u32 maj, min; u64 ino, ino_generation`).
    Inode {
        /// Device major.
        maj: u32,
        /// Device minor.
        min: u32,
        /// Inode number.
        ino: u64,
        /// Inode generation.
        ino_generation: u64,
    },
    /// `PERF_RECORD_MISC_MMAP_BUILD_ID`: the file's build-id (at most 20 bytes).
    BuildId(&'a [u8]),
}

/// PERF_RECORD_FORK / PERF_RECORD_EXIT: `u32 pid, ppid; u32 tid, ptid; u64 time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Thread id.
    pub tid: i32,
    /// Parent thread id.
    pub ptid: i32,
    /// Time in ns of the event clock.
    pub time_ns: u64,
    /// The trailer.
    pub sid: SampleId,
}

/// PERF_RECORD_KSYMBOL: `u64 addr; u32 len; u16 ksym_type, flags; char name[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ksymbol<'a> {
    /// Start address (host kernel VA).
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// `PERF_RECORD_KSYMBOL_TYPE_*` (1 BPF, 2 out-of-line code).
    pub ksym_type: u16,
    /// `PERF_RECORD_KSYMBOL_FLAGS_UNREGISTER` (bit 0): the symbol went away.
    pub unregister: bool,
    /// The symbol's name.
    pub name: Cow<'a, str>,
    /// The trailer.
    pub sid: SampleId,
}

/// The record types [`decode`] interprets (each carries the `sample_id` trailer).
pub(super) const KNOWN: [u32; 12] = [
    abi::RECORD_MMAP,
    abi::RECORD_MMAP2,
    abi::RECORD_COMM,
    abi::RECORD_FORK,
    abi::RECORD_EXIT,
    abi::RECORD_LOST,
    abi::RECORD_LOST_SAMPLES,
    abi::RECORD_THROTTLE,
    abi::RECORD_UNTHROTTLE,
    abi::RECORD_SWITCH,
    abi::RECORD_SWITCH_CPU_WIDE,
    abi::RECORD_KSYMBOL,
];

pub(super) fn decode<'a>(
    kind: u32,
    misc: u16,
    fields: &'a [u8],
    sid: SampleId,
    body: &'a [u8],
) -> Option<Record<'a>> {
    let mut c = Cursor::new(fields);
    Some(match kind {
        abi::RECORD_MMAP | abi::RECORD_MMAP2 => {
            let pid = c.u32()? as i32;
            let tid = c.u32()? as i32;
            let addr = c.u64()?;
            let len = c.u64()?;
            let pgoff = c.u64()?;
            let (mut file, mut prot, mut flags) = (None, 0, 0);
            if kind == abi::RECORD_MMAP2 {
                file = Some(if misc & abi::MISC_MMAP_BUILD_ID != 0 {
                    let n = usize::from(*c.take(4)?.first()?).min(20);
                    MmapFile::BuildId(&c.take(20)?[..n])
                } else {
                    MmapFile::Inode {
                        maj: c.u32()?,
                        min: c.u32()?,
                        ino: c.u64()?,
                        ino_generation: c.u64()?,
                    }
                });
                prot = c.u32()?;
                flags = c.u32()?;
            }
            Record::Mmap(Mmap {
                pid,
                tid,
                addr,
                len,
                pgoff,
                file,
                prot,
                flags,
                cpumode: super::CpuMode::from_misc(misc),
                data: misc & abi::MISC_MMAP_DATA != 0,
                filename: c_str(c.rest()),
                sid,
            })
        }
        abi::RECORD_COMM => Record::Comm {
            pid: c.u32()? as i32,
            tid: c.u32()? as i32,
            exec: misc & abi::MISC_COMM_EXEC != 0,
            comm: c_str(c.rest()),
            sid,
        },
        abi::RECORD_FORK | abi::RECORD_EXIT => {
            let t = Task {
                pid: c.u32()? as i32,
                ppid: c.u32()? as i32,
                tid: c.u32()? as i32,
                ptid: c.u32()? as i32,
                time_ns: c.u64()?,
                sid,
            };
            if kind == abi::RECORD_FORK {
                Record::Fork(t)
            } else {
                Record::Exit(t)
            }
        }
        abi::RECORD_LOST => {
            let _id = c.u64()?;
            Record::Lost {
                lost: c.u64()?,
                sid,
            }
        }
        abi::RECORD_LOST_SAMPLES => Record::LostSamples {
            lost: c.u64()?,
            sid,
        },
        abi::RECORD_THROTTLE | abi::RECORD_UNTHROTTLE => {
            let time_ns = c.u64()?;
            let id = c.u64()?;
            let _stream_id = c.u64()?;
            Record::Throttle {
                throttled: kind == abi::RECORD_THROTTLE,
                time_ns,
                id,
                sid,
            }
        }
        abi::RECORD_SWITCH | abi::RECORD_SWITCH_CPU_WIDE => {
            let next_prev = if kind == abi::RECORD_SWITCH_CPU_WIDE {
                Some((c.u32()? as i32, c.u32()? as i32))
            } else {
                None
            };
            Record::Switch {
                out: misc & abi::MISC_SWITCH_OUT != 0,
                preempt: misc & abi::MISC_SWITCH_OUT_PREEMPT != 0,
                next_prev,
                sid,
            }
        }
        abi::RECORD_KSYMBOL => {
            let addr = c.u64()?;
            let len = c.u32()?;
            let ksym_type = c.u16()?;
            let flags = c.u16()?;
            Record::Ksymbol(Ksymbol {
                addr,
                len,
                ksym_type,
                unregister: flags & 1 != 0,
                name: c_str(c.rest()),
                sid,
            })
        }
        _ => Record::Other { kind, misc, body },
    })
}
