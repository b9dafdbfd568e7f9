//! PERF_RECORD_SAMPLE: the fixed fields ([`Sample`]) and the variable parts (callchain, raw
//! tracepoint data, user registers and stack) in `sample_type` bit order, as listed in
//! perf_event.h under `PERF_RECORD_SAMPLE`.

use super::{CpuMode, Cursor, RecordDecoder};
use crate::abi;

/// The fixed-size fields of one sample. Absent fields are 0 (`pid`/`tid` -1, `cpu` `u32::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Sample {
    /// `PERF_SAMPLE_IP`: the instruction pointer, in the address space `cpumode` names (a host
    /// VA for host modes, a guest VA for guest modes); the attribution stage types it.
    pub ip: u64,
    /// `PERF_SAMPLE_TID` pid; for guest samples, the VMM process.
    pub pid: i32,
    /// `PERF_SAMPLE_TID` tid; for guest samples, the vCPU thread.
    pub tid: i32,
    /// `PERF_SAMPLE_TIME`: ns of the event clock (perf_clock, or `attr.clockid`).
    pub time_ns: u64,
    /// `PERF_SAMPLE_CPU`: the CPU the sample was taken on.
    pub cpu: u32,
    /// `PERF_SAMPLE_PERIOD`: events since the previous sample (ns for cpu-clock/task-clock).
    pub period: u64,
    /// Where the CPU was (header `misc`).
    pub cpumode: CpuMode,
    /// `PERF_RECORD_MISC_EXACT_IP`.
    pub exact_ip: bool,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            ip: 0,
            pid: -1,
            tid: -1,
            time_ns: 0,
            cpu: u32::MAX,
            period: 0,
            cpumode: CpuMode::Unknown,
            exact_ip: false,
        }
    }
}

/// A whole PERF_RECORD_SAMPLE: the fixed fields plus the variable parts `sample_type` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRecord<'a> {
    /// The fixed fields.
    pub sample: Sample,
    /// `PERF_SAMPLE_ID` / `PERF_SAMPLE_IDENTIFIER`: which event (of several) produced it.
    pub id: Option<u64>,
    /// `PERF_SAMPLE_ADDR`.
    pub addr: Option<u64>,
    /// `PERF_SAMPLE_READ`: the `struct read_format` bytes.
    pub read: Option<&'a [u8]>,
    /// `PERF_SAMPLE_CALLCHAIN`.
    pub callchain: Option<Callchain<'a>>,
    /// `PERF_SAMPLE_RAW`: the tracepoint record (with the kernel's padding at the end).
    pub raw: Option<&'a [u8]>,
    /// `PERF_SAMPLE_REGS_USER`.
    pub regs_user: Option<RegsUser<'a>>,
    /// `PERF_SAMPLE_STACK_USER`: the valid part (`dyn_size` bytes) of the copied user stack,
    /// starting at the user stack pointer.
    pub stack_user: Option<&'a [u8]>,
}

/// `PERF_SAMPLE_CALLCHAIN`: `u64 nr; u64 ips[nr]`, leaf first, with `PERF_CONTEXT_*` markers
/// (values ≥ `PERF_CONTEXT_MAX`) announcing the cpumode of the entries that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Callchain<'a> {
    bytes: &'a [u8],
}

impl<'a> Callchain<'a> {
    /// Number of entries, markers included.
    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    /// True when the chain has no entries.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The raw entries, markers included, leaf first.
    pub fn entries(&self) -> impl Iterator<Item = u64> + 'a {
        self.bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
    }

    /// The frames, leaf first, each with the cpumode its last marker announced (`default`
    /// before any marker: the sample's own cpumode). Markers themselves are not yielded;
    /// guest markers give guest modes, so guest frames are never mixed with host ones.
    pub fn frames(&self, default: CpuMode) -> CallchainFrames<'a> {
        CallchainFrames {
            bytes: self.bytes,
            mode: default,
        }
    }
}

/// Iterator of `(cpumode, ip)` over a [`Callchain`]; see [`Callchain::frames`].
#[derive(Debug, Clone)]
pub struct CallchainFrames<'a> {
    bytes: &'a [u8],
    mode: CpuMode,
}

impl Iterator for CallchainFrames<'_> {
    type Item = (CpuMode, u64);

    fn next(&mut self) -> Option<(CpuMode, u64)> {
        loop {
            let (head, rest) = self.bytes.split_first_chunk::<8>()?;
            self.bytes = rest;
            let v = u64::from_ne_bytes(*head);
            if v < abi::CONTEXT_MAX {
                return Some((self.mode, v));
            }
            self.mode = match v {
                abi::CONTEXT_HV => CpuMode::Hypervisor,
                abi::CONTEXT_KERNEL => CpuMode::Kernel,
                abi::CONTEXT_USER => CpuMode::User,
                abi::CONTEXT_GUEST_KERNEL => CpuMode::GuestKernel,
                abi::CONTEXT_GUEST_USER => CpuMode::GuestUser,
                // PERF_CONTEXT_GUEST alone says "guest" without a ring; keep the next marker's.
                _ => self.mode,
            };
        }
    }
}

/// `PERF_SAMPLE_REGS_USER`: `u64 abi; u64 regs[weight(sample_regs_user)]`, registers in
/// increasing bit order of the mask (arch/x86/include/uapi/asm/perf_regs.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegsUser<'a> {
    /// `PERF_SAMPLE_REGS_ABI_*`: 0 (none: no registers follow), 1 (32-bit), 2 (64-bit).
    pub abi: u64,
    regs: &'a [u8],
}

impl RegsUser<'_> {
    /// The `i`-th dumped register (in mask bit order), if present.
    pub fn get(&self, i: usize) -> Option<u64> {
        let at = i.checked_mul(8)?;
        let b = self.regs.get(at..at.checked_add(8)?)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    }

    /// Number of registers dumped.
    pub fn len(&self) -> usize {
        self.regs.len() / 8
    }

    /// True when no register was dumped (`abi` is `PERF_SAMPLE_REGS_ABI_NONE`).
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }
}

/// Reads `u64 nr` then `nr × unit` bytes, bounded by the body.
fn counted<'a>(c: &mut Cursor<'a>, unit: usize) -> Option<&'a [u8]> {
    let nr = usize::try_from(c.u64()?).ok()?;
    c.take(nr.checked_mul(unit)?)
}

#[inline]
pub(super) fn decode<'a>(d: &RecordDecoder, misc: u16, body: &'a [u8]) -> Option<SampleRecord<'a>> {
    let st = d.sample_type;
    let mut c = Cursor::new(body);
    let mut r = SampleRecord {
        sample: Sample {
            cpumode: CpuMode::from_misc(misc),
            exact_ip: misc & abi::MISC_EXACT_IP != 0,
            ..Sample::default()
        },
        id: None,
        addr: None,
        read: None,
        callchain: None,
        raw: None,
        regs_user: None,
        stack_user: None,
    };
    let s = &mut r.sample;
    if st & abi::SAMPLE_IDENTIFIER != 0 {
        r.id = Some(c.u64()?);
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
    if st & abi::SAMPLE_ADDR != 0 {
        r.addr = Some(c.u64()?);
    }
    if st & abi::SAMPLE_ID != 0 {
        r.id = Some(c.u64()?);
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
    if st & abi::SAMPLE_READ != 0 {
        r.read = Some(read_format(d.read_format, &mut c)?);
    }
    if st & abi::SAMPLE_CALLCHAIN != 0 {
        r.callchain = Some(Callchain {
            bytes: counted(&mut c, 8)?,
        });
    }
    if st & abi::SAMPLE_RAW != 0 {
        let size = c.u32()? as usize;
        r.raw = Some(c.take(size)?);
    }
    if st & abi::SAMPLE_BRANCH_STACK != 0 {
        let nr = usize::try_from(c.u64()?).ok()?;
        if d.branch_hw_index {
            c.u64()?;
        }
        c.take(nr.checked_mul(24)?)?;
    }
    if st & abi::SAMPLE_REGS_USER != 0 {
        let abi_ = c.u64()?;
        let n = if abi_ == abi::REGS_ABI_NONE {
            0
        } else {
            d.regs_user as usize
        };
        r.regs_user = Some(RegsUser {
            abi: abi_,
            regs: c.take(n * 8)?,
        });
    }
    if st & abi::SAMPLE_STACK_USER != 0 {
        let size = usize::try_from(c.u64()?).ok()?;
        let data = c.take(size)?;
        // `dyn_size` follows only when size != 0 (perf_output_sample_ustack).
        let valid = if size != 0 {
            usize::try_from(c.u64()?).ok()?.min(size)
        } else {
            0
        };
        r.stack_user = Some(&data[..valid]);
    }
    for bit in [
        abi::SAMPLE_WEIGHT | abi::SAMPLE_WEIGHT_STRUCT,
        abi::SAMPLE_DATA_SRC,
        abi::SAMPLE_TRANSACTION,
    ] {
        if st & bit != 0 {
            c.u64()?;
        }
    }
    if st & abi::SAMPLE_REGS_INTR != 0 {
        let abi_ = c.u64()?;
        if abi_ != abi::REGS_ABI_NONE {
            c.take(d.regs_intr as usize * 8)?;
        }
    }
    for bit in [
        abi::SAMPLE_PHYS_ADDR,
        abi::SAMPLE_CGROUP,
        abi::SAMPLE_DATA_PAGE_SIZE,
        abi::SAMPLE_CODE_PAGE_SIZE,
    ] {
        if st & bit != 0 {
            c.u64()?;
        }
    }
    if st & abi::SAMPLE_AUX != 0 {
        counted(&mut c, 1)?;
    }
    Some(r)
}

/// The bytes of a `struct read_format` (perf_event_open(2), "Reading results").
fn read_format<'a>(fmt: u64, c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let start = *c;
    let times = [
        abi::FORMAT_TOTAL_TIME_ENABLED,
        abi::FORMAT_TOTAL_TIME_RUNNING,
    ]
    .iter()
    .filter(|&&b| fmt & b != 0)
    .count();
    let per_value =
        1 + usize::from(fmt & abi::FORMAT_ID != 0) + usize::from(fmt & abi::FORMAT_LOST != 0);
    let words = if fmt & abi::FORMAT_GROUP != 0 {
        let nr = usize::try_from(c.u64()?).ok()?;
        nr.checked_mul(per_value)?.checked_add(1 + times)?
    } else {
        times + per_value
    };
    let mut whole = start;
    whole.take(words.checked_mul(8)?).inspect(|_| *c = whole)
}
