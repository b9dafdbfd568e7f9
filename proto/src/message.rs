//! The message table: every message of protocol version 1 with its type code and its fields
//! in wire order, and the element records they carry. `docs/protocol.md` ("Messages") is the
//! same table in prose; the frame around a payload is in [`crate::frame`].
//!
//! Each entry reads `Variant = code, "name" { field: RustType => Codec, ... }`; the codecs
//! (`U32`, `Str`, `Key`, `List`, ...) are in `codec.rs`. The encoder and the decoder are
//! both generated from this one list.

use crate::codec::{
    Blob, Bool, Dec, Enc, Key, List, Rec, Record, Str, Wire, Words, I32, U16, U32, U64, U8,
};
use crate::error::ProtoError;
use crate::limits::{
    MAX_CALLCHAIN, MAX_SEGMENTS, SAMPLE_WIRE_LEN, STACK_SAMPLE_MIN_LEN, SWITCH_WIRE_LEN,
};

/// Clock id value meaning "perf's default event clock" (`local_clock()`, no `use_clockid`).
pub const CLOCK_PERF_LOCAL: i32 = -1;

/// [`Hello::flags`]: the guest's kallsyms show addresses (kptr_restrict allows).
pub const HELLO_KALLSYMS: u32 = 1;
/// [`Hello::flags`]: the guest kernel puts build-ids in MMAP2 records.
pub const HELLO_MMAP_BUILD_ID: u32 = 2;
/// [`Hello::flags`]: the sideband stream (comm, mmap, switch) is open.
pub const HELLO_SIDEBAND: u32 = 4;
/// [`Hello::flags`]: the helper samples with callchains and sends them in
/// [`Message::StackSamples`] (samples whose chain the kernel could not take still come in
/// [`Message::Samples`]).
pub const HELLO_CALLCHAINS: u32 = 8;

/// Which stream lost data, in [`Message::Lost`]: the sideband stream.
pub const LOST_SIDEBAND: u8 = 0;
/// [`Message::Lost`]: the sampling stream.
pub const LOST_SAMPLES: u8 = 1;
/// [`Message::Lost`]: the helper dropped data itself (disconnected, queue full).
pub const LOST_HELPER: u8 = 2;

record! {
    /// The guest's event clock, from the guest's perf mmap page (`struct perf_event_mmap_page`).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct ClockInfo {
        /// Clock of every guest timestamp: [`CLOCK_PERF_LOCAL`], or a `clockid_t`
        /// (`CLOCK_MONOTONIC` = 1) used with `use_clockid`.
        pub clock_id: i32 => I32,
        /// `cap_user_time_zero`: the three fields below convert a guest TSC value to the perf
        /// local clock (`time = time_zero + (tsc * time_mult) >> time_shift`, in the
        /// overflow-safe form of perf_event.h).
        pub cap_user_time_zero: bool => Bool,
        /// `time_shift`.
        pub time_shift: u16 => U16,
        /// `time_mult`.
        pub time_mult: u32 => U32,
        /// `time_zero`, ns.
        pub time_zero: u64 => U64,
    }
}

record! {
    /// The helper's greeting: who the guest is and how its clock works.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Hello {
        /// Helper version (`CARGO_PKG_VERSION`).
        pub helper_version: String => Str,
        /// Guest kernel release (`uname -r`).
        pub kernel_release: String => Str,
        /// `/proc/sys/kernel/random/boot_id`: changes when the guest reboots.
        pub boot_id: String => Str,
        /// Guest host name.
        pub hostname: String => Str,
        /// Guest CPUs (configured); guest CPU numbers are `0..cpus`.
        pub cpus: u32 => U32,
        /// The event clock.
        pub clock: ClockInfo => Rec,
        /// Guest event-clock time in ns when the hello was written.
        pub now_ns: u64 => U64,
        /// Sampling frequency in Hz of the helper's own samples, 0 when not sampling.
        pub sampling_hz: u32 => U32,
        /// [`HELLO_KALLSYMS`] | [`HELLO_MMAP_BUILD_ID`] | [`HELLO_SIDEBAND`].
        pub flags: u32 => U32,
    }
}

record! {
    /// A guest kernel module (`/proc/modules`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Module {
        /// Module name.
        pub name: String => Str,
        /// Load address (guest kernel VA).
        pub base: u64 => U64,
        /// Size in bytes.
        pub size: u64 => U64,
    }
}

record! {
    /// One guest sample taken by the helper (cpu-clock inside the guest).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct WireSample {
        /// Guest virtual address.
        pub ip: u64 => U64,
        /// Guest pid.
        pub pid: u32 => U32,
        /// Guest tid.
        pub tid: u32 => U32,
        /// Guest event-clock time, ns.
        pub time: u64 => U64,
        /// Guest CPU.
        pub cpu: u32 => U32,
        /// `perf_event_header.misc` (cpumode in bits 0–2, as seen by the guest kernel:
        /// 1 kernel, 2 user).
        pub misc: u16 => U16,
        /// Period in ns (cpu-clock).
        pub period: u64 => U64,
    }
}

record! {
    /// A PT_LOAD segment of a guest ELF file, for file offset → symbol address conversion.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Segment {
        /// `p_offset`.
        pub offset: u64 => U64 as "p_offset",
        /// `p_vaddr`.
        pub vaddr: u64 => U64 as "p_vaddr",
        /// `p_filesz`.
        pub filesz: u64 => U64 as "p_filesz",
        /// `p_memsz`.
        pub memsz: u64 => U64 as "p_memsz",
    }
}

record! {
    /// One function symbol of a guest file: `[start, start + size)` in the file's own
    /// addresses.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct WireSymbol {
        /// Start address (ELF `st_value`, an SVMA).
        pub start: u64 => U64,
        /// Size in bytes (0: unknown; the host bounds it by the next symbol).
        pub size: u64 => U64,
        /// Raw (possibly mangled) name.
        pub name: String => Str,
    }
}

/// One guest context switch (`PERF_RECORD_SWITCH_CPU_WIDE`).
///
/// Wire: `u32 cpu, u64 time, u32 pid, u32 tid, u8 flags` with bit 0 = `out`, bit 1 =
/// `preempt`; other bits set are [`ProtoError::Invalid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireSwitch {
    /// Guest CPU.
    pub cpu: u32,
    /// Guest event-clock time, ns.
    pub time: u64,
    /// Process of the task switching in (or out, with [`WireSwitch::out`]).
    pub pid: u32,
    /// Thread switching in (or out).
    pub tid: u32,
    /// True for a switch-out record.
    pub out: bool,
    /// Switch-out by preemption.
    pub preempt: bool,
}

impl Record for WireSwitch {
    const MIN_LEN: usize =
        3 * <U32 as Wire<u32>>::MIN_LEN + <U64 as Wire<u64>>::MIN_LEN + <U8 as Wire<u8>>::MIN_LEN;

    fn put(&self, w: &mut Enc<'_>) {
        U32::put(&self.cpu, w);
        U64::put(&self.time, w);
        U32::put(&self.pid, w);
        U32::put(&self.tid, w);
        U8::put(&(self.out as u8 | (self.preempt as u8) << 1), w);
    }

    fn get(d: &mut Dec<'_>) -> Result<WireSwitch, ProtoError> {
        let cpu = U32::get(d, "cpu")?;
        let time = U64::get(d, "time")?;
        let pid = U32::get(d, "pid")?;
        let tid = U32::get(d, "tid")?;
        let flags = U8::get(d, "flags")?;
        if flags & !3 != 0 {
            return Err(d.invalid("flags", flags as u64));
        }
        Ok(WireSwitch {
            cpu,
            time,
            pid,
            tid,
            out: flags & 1 != 0,
            preempt: flags & 2 != 0,
        })
    }
}

/// One guest sample with its callchain (`PERF_SAMPLE_CALLCHAIN` of the helper's cpu-clock
/// event), in [`Message::StackSamples`].
///
/// Wire: a [`WireSample`], `u16 kernel_frames`, `u64[] ips` (at most [`MAX_CALLCHAIN`]).
/// `kernel_frames` greater than the number of `ips` is [`ProtoError::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSample {
    /// The sample (its `ip` is the leaf).
    pub sample: WireSample,
    /// How many of the leading `ips` are guest kernel frames (`PERF_CONTEXT_KERNEL`); the
    /// rest are guest user frames (`PERF_CONTEXT_USER`) of the sampled process.
    pub kernel_frames: u16,
    /// Guest virtual addresses, leaf first, `PERF_CONTEXT_*` markers removed: the first is
    /// the interrupted instruction (normally `sample.ip`), the others return addresses (the
    /// host looks up `ip - 1` for them, the call instruction). Kernel frames come from the
    /// guest kernel's unwinder, user frames from frame pointers.
    pub ips: Vec<u64>,
}

impl Record for StackSample {
    const MIN_LEN: usize = STACK_SAMPLE_MIN_LEN;

    fn put(&self, w: &mut Enc<'_>) {
        self.sample.put(w);
        let n = self.ips.len().min(MAX_CALLCHAIN);
        U16::put(&self.kernel_frames.min(n as u16), w);
        <Words<MAX_CALLCHAIN> as Wire<Vec<u64>>>::put(&self.ips, w);
    }

    fn get(d: &mut Dec<'_>) -> Result<StackSample, ProtoError> {
        let sample = WireSample::get(d)?;
        let kernel_frames = U16::get(d, "kernel_frames")?;
        let ips = <Words<MAX_CALLCHAIN> as Wire<Vec<u64>>>::get(d, "ips")?;
        if usize::from(kernel_frames) > ips.len() {
            return Err(d.invalid("kernel_frames", u64::from(kernel_frames)));
        }
        Ok(StackSample {
            sample,
            kernel_frames,
            ips,
        })
    }
}

/// Fork or exit of a guest task. Wire: one `u8`, 0 fork, 1 exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// `PERF_RECORD_FORK`.
    Fork,
    /// `PERF_RECORD_EXIT`.
    Exit,
}

impl Record for TaskKind {
    const MIN_LEN: usize = 1;

    fn put(&self, w: &mut Enc<'_>) {
        let code: u8 = match self {
            TaskKind::Fork => 0,
            TaskKind::Exit => 1,
        };
        U8::put(&code, w);
    }

    fn get(d: &mut Dec<'_>) -> Result<TaskKind, ProtoError> {
        match U8::get(d, "kind")? {
            0 => Ok(TaskKind::Fork),
            1 => Ok(TaskKind::Exit),
            v => Err(d.invalid("kind", v as u64)),
        }
    }
}

// The fixed sizes the docs (and the helper's batching) rely on.
const _: () = assert!(<WireSample as Record>::MIN_LEN == SAMPLE_WIRE_LEN);
const _: () = assert!(<WireSwitch as Record>::MIN_LEN == SWITCH_WIRE_LEN);
const _: () = assert!(
    <WireSample as Record>::MIN_LEN
        + <U16 as Wire<u16>>::MIN_LEN
        + <Words<1> as Wire<Vec<u64>>>::MIN_LEN
        == STACK_SAMPLE_MIN_LEN
);
const _: () = assert!(<Segment as Record>::MIN_LEN == 32);
const _: () = assert!(<Module as Record>::MIN_LEN == 18);
const _: () = assert!(<WireSymbol as Record>::MIN_LEN == 18);

messages! {
    /// Guest → host, first message of every session.
    Hello = 1, "hello" (hello: Hello => Rec);

    /// A piece of the guest's `/proc/kallsyms` text; lines may straddle pieces.
    KallsymsChunk = 2, "kallsyms-chunk" (data: Vec<u8> => Blob);

    /// End of the kallsyms text.
    KallsymsEnd = 3, "kallsyms-end" {
        /// Total bytes sent in chunks.
        total: u64 => U64,
    };

    /// Guest kernel modules.
    Modules = 4, "modules" (count: Vec<Module> => List);

    /// A task's name (`PERF_RECORD_COMM`, or read from /proc at start).
    Comm = 5, "comm" {
        /// Guest pid.
        pid: u32 => U32,
        /// Guest tid.
        tid: u32 => U32,
        /// Guest event-clock ns (0: existed before the helper started).
        time: u64 => U64,
        /// Set by an `exec`: earlier maps of `pid` are gone.
        exec: bool => Bool,
        /// The name.
        comm: String => Str,
    };

    /// An executable file mapping (`PERF_RECORD_MMAP2`, or /proc/PID/maps at start).
    Mmap = 6, "mmap" {
        /// Guest pid.
        pid: u32 => U32,
        /// Guest tid.
        tid: u32 => U32,
        /// Guest event-clock ns (0: existed before the helper started).
        time: u64 => U64,
        /// Start (guest VA).
        start: u64 => U64,
        /// Length in bytes.
        len: u64 => U64,
        /// File offset of `start`.
        pgoff: u64 => U64,
        /// `PROT_*` bits.
        prot: u32 => U32,
        /// Key of the file's symbol table ([`Message::SymtabBegin`]); empty: none will come.
        file_key: Vec<u8> => Key,
        /// GNU build-id, empty if unknown.
        build_id: Vec<u8> => Key,
        /// Path in the guest (display only: the host never opens it).
        path: String => Str,
    };

    /// Fork or exit.
    Task = 7, "task" {
        /// Which.
        kind: TaskKind => Rec,
        /// Guest pid.
        pid: u32 => U32,
        /// Parent pid.
        ppid: u32 => U32,
        /// Guest tid.
        tid: u32 => U32,
        /// Parent tid.
        ptid: u32 => U32,
        /// Guest event-clock ns.
        time: u64 => U64,
    };

    /// A batch of context switches.
    Switches = 8, "switches" (count: Vec<WireSwitch> => List);

    /// Start of a guest file's symbol table.
    SymtabBegin = 9, "symtab-begin" {
        /// Key (build-id, or a helper-made key for files without one).
        file_key: Vec<u8> => Key,
        /// Build-id, empty if none.
        build_id: Vec<u8> => Key,
        /// Path (display only).
        path: String => Str,
        /// ELF `e_type` (2 EXEC, 3 DYN).
        elf_type: u16 => U16,
        /// PT_LOAD segments (the encoder sends the first [`MAX_SEGMENTS`]).
        segments: Vec<Segment> => List<MAX_SEGMENTS>,
        /// Symbols that will follow in chunks.
        symbol_count: u32 => U32,
    };

    /// Some of a table's symbols.
    SymtabChunk = 10, "symtab-chunk" {
        /// Key of the table.
        file_key: Vec<u8> => Key,
        /// Symbols.
        symbols: Vec<WireSymbol> => List as "count",
    };

    /// End of a table.
    SymtabEnd = 11, "symtab-end" {
        /// Key of the table.
        file_key: Vec<u8> => Key,
    };

    /// A batch of the helper's samples.
    Samples = 12, "samples" (count: Vec<WireSample> => List);

    /// Records lost.
    Lost = 13, "lost" {
        /// Guest CPU (`u32::MAX`: not per CPU).
        cpu: u32 => U32,
        /// [`LOST_SIDEBAND`], [`LOST_SAMPLES`] or [`LOST_HELPER`].
        kind: u8 => U8,
        /// How many records.
        count: u64 => U64,
    };

    /// Answer to [`Message::Ping`].
    Pong = 14, "pong" {
        /// The ping's sequence number.
        seq: u32 => U32,
        /// The ping's host time, echoed.
        host_time: u64 => U64,
        /// Guest event-clock time when the ping was answered, ns.
        guest_time: u64 => U64,
    };

    /// A diagnostic from the helper (0 info, 1 warning, 2 error).
    Note = 15, "note" {
        /// Level.
        level: u8 => U8,
        /// Text.
        text: String => Str,
    };

    /// The helper is stopping.
    Bye = 16, "bye" {
        /// Why.
        reason: String => Str,
    };

    /// The state that follows a hello (kallsyms, modules, processes, maps, tables) is
    /// complete; live records follow.
    Ready = 17, "ready" {
        /// Guest event-clock time, ns.
        now_ns: u64 => U64,
    };

    /// A batch of the helper's samples with their callchains (added in version 1 without
    /// changing any other message: a helper sends it only after announcing
    /// [`HELLO_CALLCHAINS`], hosts that predate it never see it from an older helper).
    StackSamples = 18, "stack-samples" (count: Vec<StackSample> => List);

    /// Host → guest: the host (re)attached; the helper answers with a full resend, starting
    /// with a hello.
    HostHello = 64, "host-hello" {
        /// Host's hvprof version.
        host_version: String => Str,
    };

    /// Host → guest: clock probe.
    Ping = 65, "ping" {
        /// Sequence number.
        seq: u32 => U32,
        /// Host time when sent, ns (host clock).
        host_time: u64 => U64,
    };
}

impl std::fmt::Display for MsgType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
