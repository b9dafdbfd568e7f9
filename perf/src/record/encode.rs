//! Byte-level encoders of perf records, laid out exactly as the kernel writes them
//! (perf_event.h, `enum perf_event_type`); used by tests, benchmarks and fixtures to produce
//! what a machine cannot (guest-tagged samples, guest callchains, corrupt rings).

use super::CpuMode;
use crate::abi;

/// Writes records for one attr's `sample_type` with `sample_id_all = 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    /// `PERF_SAMPLE_*` bits; fields outside `IDENTIFIER|IP|TID|TIME|ID|CPU|PERIOD|CALLCHAIN|RAW|
    /// REGS_USER|STACK_USER` are not written.
    pub sample_type: u64,
}

/// The parts of one sample an [`Encoder`] writes (fields `sample_type` lacks are skipped).
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleParts<'a> {
    /// Header cpumode.
    pub cpumode: Option<CpuMode>,
    /// `ip`.
    pub ip: u64,
    /// `pid`.
    pub pid: u32,
    /// `tid`.
    pub tid: u32,
    /// `time` in ns.
    pub time: u64,
    /// `id` (also `IDENTIFIER`).
    pub id: u64,
    /// `cpu`.
    pub cpu: u32,
    /// `period`.
    pub period: u64,
    /// Callchain entries, markers included.
    pub callchain: &'a [u64],
    /// Tracepoint bytes (padded by the encoder as the kernel pads them).
    pub raw: &'a [u8],
    /// `(abi, regs)` of `REGS_USER`.
    pub regs_user: (u64, &'a [u64]),
    /// `(copied stack bytes, dyn_size)` of `STACK_USER`.
    pub stack_user: (&'a [u8], u64),
}

fn header(out: &mut Vec<u8>, kind: u32, misc: u16, size: usize) {
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&misc.to_ne_bytes());
    out.extend_from_slice(&(size as u16).to_ne_bytes());
}

fn u64s(out: &mut Vec<u8>, vals: &[u64]) {
    for v in vals {
        out.extend_from_slice(&v.to_ne_bytes());
    }
}

fn u32s(out: &mut Vec<u8>, vals: &[u32]) {
    for v in vals {
        out.extend_from_slice(&v.to_ne_bytes());
    }
}

/// Finishes a record started at `start`: pads it to 8 bytes and writes its size.
fn finish(out: &mut Vec<u8>, start: usize) {
    out.resize(start + (out.len() - start).div_ceil(8) * 8, 0);
    let size = (out.len() - start) as u16;
    out[start + 6..start + 8].copy_from_slice(&size.to_ne_bytes());
}

impl Encoder {
    /// An encoder for `sample_type`.
    pub fn new(sample_type: u64) -> Encoder {
        Encoder { sample_type }
    }

    /// Appends a PERF_RECORD_SAMPLE.
    pub fn sample(&self, out: &mut Vec<u8>, p: &SampleParts<'_>) {
        let st = self.sample_type;
        let start = out.len();
        header(
            out,
            abi::RECORD_SAMPLE,
            p.cpumode.unwrap_or(CpuMode::User).to_misc(),
            0,
        );
        let has = |bit: u64| st & bit != 0;
        if has(abi::SAMPLE_IDENTIFIER) {
            u64s(out, &[p.id]);
        }
        if has(abi::SAMPLE_IP) {
            u64s(out, &[p.ip]);
        }
        if has(abi::SAMPLE_TID) {
            u32s(out, &[p.pid, p.tid]);
        }
        if has(abi::SAMPLE_TIME) {
            u64s(out, &[p.time]);
        }
        if has(abi::SAMPLE_ID) {
            u64s(out, &[p.id]);
        }
        if has(abi::SAMPLE_CPU) {
            u32s(out, &[p.cpu, 0]);
        }
        if has(abi::SAMPLE_PERIOD) {
            u64s(out, &[p.period]);
        }
        if has(abi::SAMPLE_CALLCHAIN) {
            u64s(out, &[p.callchain.len() as u64]);
            u64s(out, p.callchain);
        }
        if has(abi::SAMPLE_RAW) {
            // The kernel pads `u32 size; data[size]` to keep the record 8-aligned, and counts
            // the padding in `size` (perf_prepare_sample).
            let at = out.len();
            let padded = (4 + p.raw.len()).div_ceil(8) * 8 - 4;
            u32s(out, &[padded as u32]);
            out.extend_from_slice(p.raw);
            out.resize(at + 4 + padded, 0);
        }
        if has(abi::SAMPLE_REGS_USER) {
            u64s(out, &[p.regs_user.0]);
            u64s(out, p.regs_user.1);
        }
        if has(abi::SAMPLE_STACK_USER) {
            let (data, dyn_size) = p.stack_user;
            u64s(out, &[data.len() as u64]);
            out.extend_from_slice(data);
            if !data.is_empty() {
                u64s(out, &[dyn_size]);
            }
        }
        finish(out, start);
    }

    /// The `struct sample_id` trailer for this `sample_type`.
    pub fn sample_id(&self, out: &mut Vec<u8>, pid: u32, tid: u32, time: u64, cpu: u32) {
        let st = self.sample_type;
        if st & abi::SAMPLE_TID != 0 {
            u32s(out, &[pid, tid]);
        }
        if st & abi::SAMPLE_TIME != 0 {
            u64s(out, &[time]);
        }
        if st & abi::SAMPLE_ID != 0 {
            u64s(out, &[0]);
        }
        if st & abi::SAMPLE_STREAM_ID != 0 {
            u64s(out, &[0]);
        }
        if st & abi::SAMPLE_CPU != 0 {
            u32s(out, &[cpu, 0]);
        }
        if st & abi::SAMPLE_IDENTIFIER != 0 {
            u64s(out, &[0]);
        }
    }

    /// Appends a non-sample record of `kind` whose fields are `fields`, with the trailer.
    #[allow(clippy::too_many_arguments)]
    pub fn sideband(
        &self,
        out: &mut Vec<u8>,
        kind: u32,
        misc: u16,
        fields: &[u8],
        pid: u32,
        tid: u32,
        time: u64,
        cpu: u32,
    ) {
        let start = out.len();
        header(out, kind, misc, 0);
        out.extend_from_slice(fields);
        out.resize(start + (out.len() - start).div_ceil(8) * 8, 0);
        self.sample_id(out, pid, tid, time, cpu);
        finish(out, start);
    }
}

const HV: Encoder = Encoder {
    sample_type: abi::HVPROF_SAMPLE_TYPE,
};

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
    let p = SampleParts {
        cpumode: Some(cpumode),
        ip,
        pid,
        tid,
        time,
        cpu,
        period,
        ..SampleParts::default()
    };
    HV.sample(out, &p);
}

/// A PERF_RECORD_LOST with its `IP|TID|TIME|CPU|PERIOD` trailer (48 bytes).
pub fn lost(out: &mut Vec<u8>, id: u64, lost: u64, pid: u32, tid: u32, time: u64, cpu: u32) {
    let mut f = Vec::with_capacity(16);
    u64s(&mut f, &[id, lost]);
    HV.sideband(out, abi::RECORD_LOST, 0, &f, pid, tid, time, cpu);
}

/// A PERF_RECORD_THROTTLE (or UNTHROTTLE when `throttle` is false) with trailer (56 bytes).
pub fn throttle(out: &mut Vec<u8>, throttle: bool, time: u64, pid: u32, tid: u32, cpu: u32) {
    let kind = if throttle {
        abi::RECORD_THROTTLE
    } else {
        abi::RECORD_UNTHROTTLE
    };
    let mut f = Vec::with_capacity(24);
    u64s(&mut f, &[time, 0, 0]);
    HV.sideband(out, kind, 0, &f, pid, tid, time, cpu);
}

/// A PERF_RECORD_EXIT (or FORK when `fork`) with trailer (48 bytes); parent = self.
pub fn task(out: &mut Vec<u8>, fork: bool, pid: u32, tid: u32, time: u64, cpu: u32) {
    let kind = if fork {
        abi::RECORD_FORK
    } else {
        abi::RECORD_EXIT
    };
    let mut f = Vec::with_capacity(24);
    u32s(&mut f, &[pid, pid, tid, tid]);
    u64s(&mut f, &[time]);
    HV.sideband(out, kind, 0, &f, pid, tid, time, cpu);
}

/// A PERF_RECORD_EXIT with trailer (48 bytes).
pub fn exit(out: &mut Vec<u8>, pid: u32, tid: u32, time: u64, cpu: u32) {
    task(out, false, pid, tid, time, cpu)
}

/// A PERF_RECORD_COMM with trailer.
pub fn comm(out: &mut Vec<u8>, pid: u32, tid: u32, name: &str, exec: bool, time: u64, cpu: u32) {
    let mut f = Vec::new();
    u32s(&mut f, &[pid, tid]);
    f.extend_from_slice(name.as_bytes());
    f.push(0);
    let misc = if exec { abi::MISC_COMM_EXEC } else { 0 };
    HV.sideband(out, abi::RECORD_COMM, misc, &f, pid, tid, time, cpu);
}

/// A PERF_RECORD_MMAP2 (device/inode form) with trailer (device 8:1, inode 1234, MAP_PRIVATE).
#[allow(clippy::too_many_arguments)]
pub fn mmap2(
    out: &mut Vec<u8>,
    cpumode: CpuMode,
    pid: u32,
    tid: u32,
    addr: u64,
    len: u64,
    pgoff: u64,
    prot: u32,
    filename: &str,
    time: u64,
) {
    let m = MmapParts {
        pid,
        tid,
        addr,
        len,
        pgoff,
        dev: (8, 1),
        ino: 1234,
        prot,
        flags: 2,
        filename,
    };
    HV.mmap2(out, cpumode, &m, time);
}

/// The fields of an MMAP/MMAP2 record an [`Encoder`] writes.
#[derive(Debug, Clone, Copy)]
pub struct MmapParts<'a> {
    /// Process id (`u32::MAX`, i.e. -1, for the kernel).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// File offset of `addr`.
    pub pgoff: u64,
    /// Device (major, minor) of the file (MMAP2 only).
    pub dev: (u32, u32),
    /// Inode (MMAP2 only).
    pub ino: u64,
    /// `PROT_*` (MMAP2 only).
    pub prot: u32,
    /// `MAP_*` (MMAP2 only).
    pub flags: u32,
    /// The path or pseudo-name.
    pub filename: &'a str,
}

impl Encoder {
    /// Appends a PERF_RECORD_MMAP2 (device/inode form) with the trailer.
    pub fn mmap2(&self, out: &mut Vec<u8>, cpumode: CpuMode, m: &MmapParts<'_>, time: u64) {
        let mut f = Vec::with_capacity(72 + m.filename.len());
        u32s(&mut f, &[m.pid, m.tid]);
        u64s(&mut f, &[m.addr, m.len, m.pgoff]);
        u32s(&mut f, &[m.dev.0, m.dev.1]);
        u64s(&mut f, &[m.ino, 0]);
        u32s(&mut f, &[m.prot, m.flags]);
        f.extend_from_slice(m.filename.as_bytes());
        f.push(0);
        let misc = cpumode.to_misc();
        self.sideband(out, abi::RECORD_MMAP2, misc, &f, m.pid, m.tid, time, 0);
    }

    /// Appends a PERF_RECORD_MMAP (the form perf uses for the kernel map,
    /// `[kernel.kallsyms]_text`) with the trailer.
    pub fn mmap(&self, out: &mut Vec<u8>, cpumode: CpuMode, m: &MmapParts<'_>, time: u64) {
        let mut f = Vec::with_capacity(40 + m.filename.len());
        u32s(&mut f, &[m.pid, m.tid]);
        u64s(&mut f, &[m.addr, m.len, m.pgoff]);
        f.extend_from_slice(m.filename.as_bytes());
        f.push(0);
        let misc = cpumode.to_misc();
        self.sideband(out, abi::RECORD_MMAP, misc, &f, m.pid, m.tid, time, 0);
    }

    /// Appends a PERF_RECORD_COMM with the trailer.
    pub fn comm(&self, out: &mut Vec<u8>, pid: u32, tid: u32, name: &str, time: u64) {
        let mut f = Vec::with_capacity(8 + name.len() + 1);
        u32s(&mut f, &[pid, tid]);
        f.extend_from_slice(name.as_bytes());
        f.push(0);
        self.sideband(out, abi::RECORD_COMM, 0, &f, pid, tid, time, 0);
    }

    /// Appends a PERF_RECORD_FORK (`tid` of process `pid`, created by `ptid`) with the trailer.
    pub fn fork(&self, out: &mut Vec<u8>, pid: u32, tid: u32, ptid: u32, time: u64) {
        let mut f = Vec::with_capacity(24);
        u32s(&mut f, &[pid, pid, tid, ptid]);
        u64s(&mut f, &[time]);
        self.sideband(out, abi::RECORD_FORK, 0, &f, pid, tid, time, 0);
    }
}
