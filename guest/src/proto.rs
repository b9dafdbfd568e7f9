//! The hvprof host ⇄ guest-helper wire protocol, version [`VERSION`]: framing, messages,
//! encoder and a bounded decoder for untrusted input.
//!
//! Stage: helper → **wire** → host model. Input: [`Message`]s (encoder) or bytes from the
//! channel (decoder); output: frames (encoder) or [`Message`]s (decoder). The full
//! specification, with every field, is `docs/protocol.md`.
//!
//! # Framing
//!
//! Every message is one frame, little-endian:
//!
//! ```text
//! offset size field
//!      0    4 magic    b"HVPG" (0x47505648 as a LE u32)
//!      4    2 version  1
//!      6    2 type     MsgType
//!      8    4 length   payload bytes, at most Limits::max_payload (16 MiB by default)
//!     12  len payload
//! ```
//!
//! Inside a payload: integers are LE; a `str` is `u16 len` + bytes (at most
//! [`Limits::max_str`], decoded as UTF-8 with invalid sequences replaced by U+FFFD); `bytes` is
//! `u16 len` + bytes (at most [`MAX_KEY`]); a `blob` is `u32 len` + bytes; an array is
//! `u32 count` + elements. Trailing bytes after the last field are an error.
//!
//! # Untrusted input
//!
//! The host decodes what a guest wrote. Every length and count is checked against the bytes
//! actually present *before* anything is allocated, so a frame announcing 10⁹ symbols in 40
//! bytes costs nothing; nothing here panics on any input (see the `fuzz/` target and the
//! randomized test). Limits on what the host *keeps* (symbols per table, processes, memory)
//! are enforced by the host's model, not here.
//!
//! ```
//! use hvprof_guest::proto::{Message, FrameDecoder, Limits};
//! let mut wire = Vec::new();
//! Message::Note { level: 1, text: "hello".into() }.encode(&mut wire);
//! let mut dec = FrameDecoder::new(Limits::default());
//! dec.push(&wire);
//! assert_eq!(dec.next_message().unwrap(), Some(Message::Note { level: 1, text: "hello".into() }));
//! ```

use std::fmt;

/// Frame magic: the bytes `H V P G`, read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HVPG");
/// Protocol version this crate speaks.
pub const VERSION: u16 = 1;
/// Frame header size in bytes (magic, version, type, length).
pub const HEADER_LEN: usize = 12;
/// Default largest payload in bytes (16 MiB).
pub const MAX_PAYLOAD: u32 = 16 << 20;
/// Default longest string in bytes (4 KiB).
pub const MAX_STR: usize = 4096;
/// Longest `bytes` field (file keys, build ids) in bytes.
pub const MAX_KEY: usize = 64;
/// Most ELF segments in one symbol table header.
pub const MAX_SEGMENTS: usize = 256;
/// Size in bytes of one encoded [`WireSample`].
pub const SAMPLE_WIRE_LEN: usize = 38;
/// Size in bytes of one encoded [`WireSwitch`].
pub const SWITCH_WIRE_LEN: usize = 21;

/// Bounds applied by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted, in bytes.
    pub max_payload: u32,
    /// Longest string accepted, in bytes.
    pub max_str: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_payload: MAX_PAYLOAD,
            max_str: MAX_STR,
        }
    }
}

/// A protocol violation. The host drops the connection on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The frame does not start with [`MAGIC`].
    #[error("bad frame magic {found:#010x} (expected {MAGIC:#010x}): not an hvprof-guest stream, or out of sync")]
    BadMagic {
        /// The 4 bytes found, as a LE u32.
        found: u32,
    },
    /// A version this decoder does not speak.
    #[error("unsupported protocol version {found} (this host speaks {VERSION})")]
    BadVersion {
        /// The version in the frame.
        found: u16,
    },
    /// The payload length exceeds [`Limits::max_payload`].
    #[error("frame of type {kind} announces {len} payload bytes, more than the limit of {max}")]
    TooLong {
        /// Message type.
        kind: u16,
        /// Announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// An unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u16),
    /// The payload ended before a field.
    #[error("{msg} message truncated: {field} needs {need} bytes, {left} left")]
    Truncated {
        /// Message name.
        msg: &'static str,
        /// Field being read.
        field: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        left: usize,
    },
    /// A string or byte field longer than allowed.
    #[error("{msg} message: {field} of {len} bytes exceeds the limit of {max}")]
    FieldTooLong {
        /// Message name.
        msg: &'static str,
        /// Field.
        field: &'static str,
        /// Length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes left after the last field.
    #[error("{msg} message has {extra} trailing bytes")]
    Trailing {
        /// Message name.
        msg: &'static str,
        /// Extra bytes.
        extra: usize,
    },
    /// A field value outside its domain.
    #[error("{msg} message: invalid {field} ({value})")]
    Invalid {
        /// Message name.
        msg: &'static str,
        /// Field.
        field: &'static str,
        /// The value.
        value: u64,
    },
}

/// Message type codes (`type` field of the frame header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MsgType {
    /// [`Message::Hello`].
    Hello = 1,
    /// [`Message::KallsymsChunk`].
    KallsymsChunk = 2,
    /// [`Message::KallsymsEnd`].
    KallsymsEnd = 3,
    /// [`Message::Modules`].
    Modules = 4,
    /// [`Message::Comm`].
    Comm = 5,
    /// [`Message::Mmap`].
    Mmap = 6,
    /// [`Message::Task`].
    Task = 7,
    /// [`Message::Switches`].
    Switches = 8,
    /// [`Message::SymtabBegin`].
    SymtabBegin = 9,
    /// [`Message::SymtabChunk`].
    SymtabChunk = 10,
    /// [`Message::SymtabEnd`].
    SymtabEnd = 11,
    /// [`Message::Samples`].
    Samples = 12,
    /// [`Message::Lost`].
    Lost = 13,
    /// [`Message::Pong`].
    Pong = 14,
    /// [`Message::Note`].
    Note = 15,
    /// [`Message::Bye`].
    Bye = 16,
    /// [`Message::Ready`].
    Ready = 17,
    /// [`Message::HostHello`] (host → guest).
    HostHello = 64,
    /// [`Message::Ping`] (host → guest).
    Ping = 65,
}

impl MsgType {
    /// The type for a code, if known.
    pub fn from_code(c: u16) -> Option<MsgType> {
        use MsgType::*;
        Some(match c {
            1 => Hello,
            2 => KallsymsChunk,
            3 => KallsymsEnd,
            4 => Modules,
            5 => Comm,
            6 => Mmap,
            7 => Task,
            8 => Switches,
            9 => SymtabBegin,
            10 => SymtabChunk,
            11 => SymtabEnd,
            12 => Samples,
            13 => Lost,
            14 => Pong,
            15 => Note,
            16 => Bye,
            17 => Ready,
            64 => HostHello,
            65 => Ping,
            _ => return None,
        })
    }
}

/// Clock id value meaning "perf's default event clock" (`local_clock()`, no `use_clockid`).
pub const CLOCK_PERF_LOCAL: i32 = -1;

/// The guest's event clock, from the guest's perf mmap page (`struct perf_event_mmap_page`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockInfo {
    /// Clock of every guest timestamp: [`CLOCK_PERF_LOCAL`], or a `clockid_t`
    /// (`CLOCK_MONOTONIC` = 1) used with `use_clockid`.
    pub clock_id: i32,
    /// `cap_user_time_zero`: the three fields below convert a guest TSC value to the perf
    /// local clock (`time = time_zero + (tsc * time_mult) >> time_shift`, in the overflow-safe
    /// form of perf_event.h).
    pub cap_user_time_zero: bool,
    /// `time_shift`.
    pub time_shift: u16,
    /// `time_mult`.
    pub time_mult: u32,
    /// `time_zero`, ns.
    pub time_zero: u64,
}

/// The helper's greeting: who the guest is and how its clock works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Helper version (`CARGO_PKG_VERSION`).
    pub helper_version: String,
    /// Guest kernel release (`uname -r`).
    pub kernel_release: String,
    /// `/proc/sys/kernel/random/boot_id`: changes when the guest reboots.
    pub boot_id: String,
    /// Guest host name.
    pub hostname: String,
    /// Guest CPUs (configured); guest CPU numbers are `0..cpus`.
    pub cpus: u32,
    /// The event clock.
    pub clock: ClockInfo,
    /// Guest event-clock time in ns when the hello was written.
    pub now_ns: u64,
    /// Sampling frequency in Hz of the helper's own samples, 0 when not sampling.
    pub sampling_hz: u32,
    /// [`HELLO_KALLSYMS`] | [`HELLO_MMAP_BUILD_ID`] | [`HELLO_SIDEBAND`].
    pub flags: u32,
}

/// [`Hello::flags`]: the guest's kallsyms show addresses (kptr_restrict allows).
pub const HELLO_KALLSYMS: u32 = 1;
/// [`Hello::flags`]: the guest kernel puts build-ids in MMAP2 records.
pub const HELLO_MMAP_BUILD_ID: u32 = 2;
/// [`Hello::flags`]: the sideband stream (comm, mmap, switch) is open.
pub const HELLO_SIDEBAND: u32 = 4;

/// A guest kernel module (`/proc/modules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Module name.
    pub name: String,
    /// Load address (guest kernel VA).
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Fork or exit of a guest task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// `PERF_RECORD_FORK`.
    Fork,
    /// `PERF_RECORD_EXIT`.
    Exit,
}

/// One guest context switch (`PERF_RECORD_SWITCH_CPU_WIDE`).
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

/// One guest sample taken by the helper (cpu-clock inside the guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireSample {
    /// Guest virtual address.
    pub ip: u64,
    /// Guest pid.
    pub pid: u32,
    /// Guest tid.
    pub tid: u32,
    /// Guest event-clock time, ns.
    pub time: u64,
    /// Guest CPU.
    pub cpu: u32,
    /// `perf_event_header.misc` (cpumode in bits 0–2, as seen by the guest kernel: 1 kernel,
    /// 2 user).
    pub misc: u16,
    /// Period in ns (cpu-clock).
    pub period: u64,
}

/// A PT_LOAD segment of a guest ELF file, for file offset → symbol address conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
}

/// One function symbol of a guest file: `[start, start + size)` in the file's own addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireSymbol {
    /// Start address (ELF `st_value`, an SVMA).
    pub start: u64,
    /// Size in bytes (0: unknown; the host bounds it by the next symbol).
    pub size: u64,
    /// Raw (possibly mangled) name.
    pub name: String,
}

/// Which stream lost data, in [`Message::Lost`].
pub const LOST_SIDEBAND: u8 = 0;
/// [`Message::Lost`]: the sampling stream.
pub const LOST_SAMPLES: u8 = 1;
/// [`Message::Lost`]: the helper dropped data itself (disconnected, queue full).
pub const LOST_HELPER: u8 = 2;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Guest → host, first message of every session.
    Hello(Hello),
    /// A piece of the guest's `/proc/kallsyms` text; lines may straddle pieces.
    KallsymsChunk(Vec<u8>),
    /// End of the kallsyms text.
    KallsymsEnd {
        /// Total bytes sent in chunks.
        total: u64,
    },
    /// Guest kernel modules.
    Modules(Vec<Module>),
    /// A task's name (`PERF_RECORD_COMM`, or read from /proc at start).
    Comm {
        /// Guest pid.
        pid: u32,
        /// Guest tid.
        tid: u32,
        /// Guest event-clock ns (0: existed before the helper started).
        time: u64,
        /// Set by an `exec`: earlier maps of `pid` are gone.
        exec: bool,
        /// The name.
        comm: String,
    },
    /// An executable file mapping (`PERF_RECORD_MMAP2`, or /proc/PID/maps at start).
    Mmap {
        /// Guest pid.
        pid: u32,
        /// Guest tid.
        tid: u32,
        /// Guest event-clock ns (0: existed before the helper started).
        time: u64,
        /// Start (guest VA).
        start: u64,
        /// Length in bytes.
        len: u64,
        /// File offset of `start`.
        pgoff: u64,
        /// `PROT_*` bits.
        prot: u32,
        /// Key of the file's symbol table ([`Message::SymtabBegin`]); empty: none will come.
        file_key: Vec<u8>,
        /// GNU build-id, empty if unknown.
        build_id: Vec<u8>,
        /// Path in the guest (display only: the host never opens it).
        path: String,
    },
    /// Fork or exit.
    Task {
        /// Which.
        kind: TaskKind,
        /// Guest pid.
        pid: u32,
        /// Parent pid.
        ppid: u32,
        /// Guest tid.
        tid: u32,
        /// Parent tid.
        ptid: u32,
        /// Guest event-clock ns.
        time: u64,
    },
    /// A batch of context switches.
    Switches(Vec<WireSwitch>),
    /// Start of a guest file's symbol table.
    SymtabBegin {
        /// Key (build-id, or a helper-made key for files without one).
        file_key: Vec<u8>,
        /// Build-id, empty if none.
        build_id: Vec<u8>,
        /// Path (display only).
        path: String,
        /// ELF `e_type` (2 EXEC, 3 DYN).
        elf_type: u16,
        /// PT_LOAD segments.
        segments: Vec<Segment>,
        /// Symbols that will follow in chunks.
        symbol_count: u32,
    },
    /// Some of a table's symbols.
    SymtabChunk {
        /// Key of the table.
        file_key: Vec<u8>,
        /// Symbols.
        symbols: Vec<WireSymbol>,
    },
    /// End of a table.
    SymtabEnd {
        /// Key of the table.
        file_key: Vec<u8>,
    },
    /// A batch of the helper's samples.
    Samples(Vec<WireSample>),
    /// Records lost.
    Lost {
        /// Guest CPU (`u32::MAX`: not per CPU).
        cpu: u32,
        /// [`LOST_SIDEBAND`], [`LOST_SAMPLES`] or [`LOST_HELPER`].
        kind: u8,
        /// How many records.
        count: u64,
    },
    /// Answer to [`Message::Ping`].
    Pong {
        /// The ping's sequence number.
        seq: u32,
        /// The ping's host time, echoed.
        host_time: u64,
        /// Guest event-clock time when the ping was answered, ns.
        guest_time: u64,
    },
    /// A diagnostic from the helper (0 info, 1 warning, 2 error).
    Note {
        /// Level.
        level: u8,
        /// Text.
        text: String,
    },
    /// The helper is stopping.
    Bye {
        /// Why.
        reason: String,
    },
    /// The state that follows a hello (kallsyms, modules, processes, maps, tables) is
    /// complete; live records follow.
    Ready {
        /// Guest event-clock time, ns.
        now_ns: u64,
    },
    /// Host → guest: the host (re)attached; the helper answers with a full resend, starting
    /// with a hello.
    HostHello {
        /// Host's hvprof version.
        host_version: String,
    },
    /// Host → guest: clock probe.
    Ping {
        /// Sequence number.
        seq: u32,
        /// Host time when sent, ns (host clock).
        host_time: u64,
    },
}

impl Message {
    /// Its type code.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Hello(_) => MsgType::Hello,
            Message::KallsymsChunk(_) => MsgType::KallsymsChunk,
            Message::KallsymsEnd { .. } => MsgType::KallsymsEnd,
            Message::Modules(_) => MsgType::Modules,
            Message::Comm { .. } => MsgType::Comm,
            Message::Mmap { .. } => MsgType::Mmap,
            Message::Task { .. } => MsgType::Task,
            Message::Switches(_) => MsgType::Switches,
            Message::SymtabBegin { .. } => MsgType::SymtabBegin,
            Message::SymtabChunk { .. } => MsgType::SymtabChunk,
            Message::SymtabEnd { .. } => MsgType::SymtabEnd,
            Message::Samples(_) => MsgType::Samples,
            Message::Lost { .. } => MsgType::Lost,
            Message::Pong { .. } => MsgType::Pong,
            Message::Note { .. } => MsgType::Note,
            Message::Bye { .. } => MsgType::Bye,
            Message::Ready { .. } => MsgType::Ready,
            Message::HostHello { .. } => MsgType::HostHello,
            Message::Ping { .. } => MsgType::Ping,
        }
    }

    /// Appends this message as one frame to `out`.
    ///
    /// Strings longer than [`MAX_STR`] bytes are cut (at a character boundary), key fields
    /// longer than [`MAX_KEY`] too, so what is encoded always decodes. Callers keep payloads
    /// under [`MAX_PAYLOAD`] by chunking (the helper's [`crate::sender::Sender`] does).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.msg_type() as u16).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let body = out.len();
        let mut w = Enc(out);
        match self {
            Message::Hello(h) => {
                w.str(&h.helper_version);
                w.str(&h.kernel_release);
                w.str(&h.boot_id);
                w.str(&h.hostname);
                w.u32(h.cpus);
                w.i32(h.clock.clock_id);
                w.u8(h.clock.cap_user_time_zero as u8);
                w.u16(h.clock.time_shift);
                w.u32(h.clock.time_mult);
                w.u64(h.clock.time_zero);
                w.u64(h.now_ns);
                w.u32(h.sampling_hz);
                w.u32(h.flags);
            }
            Message::KallsymsChunk(b) => w.blob(b),
            Message::KallsymsEnd { total } => w.u64(*total),
            Message::Modules(m) => {
                w.u32(m.len() as u32);
                for m in m {
                    w.str(&m.name);
                    w.u64(m.base);
                    w.u64(m.size);
                }
            }
            Message::Comm {
                pid,
                tid,
                time,
                exec,
                comm,
            } => {
                w.u32(*pid);
                w.u32(*tid);
                w.u64(*time);
                w.u8(*exec as u8);
                w.str(comm);
            }
            Message::Mmap {
                pid,
                tid,
                time,
                start,
                len,
                pgoff,
                prot,
                file_key,
                build_id,
                path,
            } => {
                w.u32(*pid);
                w.u32(*tid);
                w.u64(*time);
                w.u64(*start);
                w.u64(*len);
                w.u64(*pgoff);
                w.u32(*prot);
                w.bytes(file_key);
                w.bytes(build_id);
                w.str(path);
            }
            Message::Task {
                kind,
                pid,
                ppid,
                tid,
                ptid,
                time,
            } => {
                w.u8(match kind {
                    TaskKind::Fork => 0,
                    TaskKind::Exit => 1,
                });
                w.u32(*pid);
                w.u32(*ppid);
                w.u32(*tid);
                w.u32(*ptid);
                w.u64(*time);
            }
            Message::Switches(s) => {
                w.u32(s.len() as u32);
                for s in s {
                    w.u32(s.cpu);
                    w.u64(s.time);
                    w.u32(s.pid);
                    w.u32(s.tid);
                    w.u8(s.out as u8 | (s.preempt as u8) << 1);
                }
            }
            Message::SymtabBegin {
                file_key,
                build_id,
                path,
                elf_type,
                segments,
                symbol_count,
            } => {
                w.bytes(file_key);
                w.bytes(build_id);
                w.str(path);
                w.u16(*elf_type);
                let n = segments.len().min(MAX_SEGMENTS);
                w.u32(n as u32);
                for s in &segments[..n] {
                    w.u64(s.offset);
                    w.u64(s.vaddr);
                    w.u64(s.filesz);
                    w.u64(s.memsz);
                }
                w.u32(*symbol_count);
            }
            Message::SymtabChunk { file_key, symbols } => {
                w.bytes(file_key);
                w.u32(symbols.len() as u32);
                for s in symbols {
                    w.u64(s.start);
                    w.u64(s.size);
                    w.str(&s.name);
                }
            }
            Message::SymtabEnd { file_key } => w.bytes(file_key),
            Message::Samples(s) => {
                w.u32(s.len() as u32);
                for s in s {
                    w.u64(s.ip);
                    w.u32(s.pid);
                    w.u32(s.tid);
                    w.u64(s.time);
                    w.u32(s.cpu);
                    w.u16(s.misc);
                    w.u64(s.period);
                }
            }
            Message::Lost { cpu, kind, count } => {
                w.u32(*cpu);
                w.u8(*kind);
                w.u64(*count);
            }
            Message::Pong {
                seq,
                host_time,
                guest_time,
            } => {
                w.u32(*seq);
                w.u64(*host_time);
                w.u64(*guest_time);
            }
            Message::Note { level, text } => {
                w.u8(*level);
                w.str(text);
            }
            Message::Bye { reason } => w.str(reason),
            Message::Ready { now_ns } => w.u64(*now_ns),
            Message::HostHello { host_version } => w.str(host_version),
            Message::Ping { seq, host_time } => {
                w.u32(*seq);
                w.u64(*host_time);
            }
        }
        let len = (out.len() - body) as u32;
        out[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
    }

    /// Encodes into a fresh buffer.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        let s = truncate_str(s, MAX_STR);
        self.u16(s.len() as u16);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        let b = &b[..b.len().min(MAX_KEY)];
        self.u16(b.len() as u16);
        self.0.extend_from_slice(b);
    }
    fn blob(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message type code.
    pub kind: u16,
    /// Payload length in bytes.
    pub len: u32,
}

/// Parses and checks a frame header (magic, version, length limit). The type is checked by
/// [`decode_payload`].
///
/// # Errors
/// [`ProtoError::BadMagic`], [`ProtoError::BadVersion`], [`ProtoError::TooLong`].
pub fn parse_header(h: &[u8; HEADER_LEN], limits: &Limits) -> Result<FrameHeader, ProtoError> {
    let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if magic != MAGIC {
        return Err(ProtoError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != VERSION {
        return Err(ProtoError::BadVersion { found: version });
    }
    let kind = u16::from_le_bytes([h[6], h[7]]);
    let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if len > limits.max_payload {
        return Err(ProtoError::TooLong {
            kind,
            len,
            max: limits.max_payload,
        });
    }
    Ok(FrameHeader { kind, len })
}

struct Dec<'a> {
    b: &'a [u8],
    msg: &'static str,
    max_str: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ProtoError> {
        if self.b.len() < n {
            return Err(ProtoError::Truncated {
                msg: self.msg,
                field,
                need: n,
                left: self.b.len(),
            });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn arr<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtoError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, f: &'static str) -> Result<u8, ProtoError> {
        Ok(self.arr::<1>(f)?[0])
    }
    fn u16(&mut self, f: &'static str) -> Result<u16, ProtoError> {
        Ok(u16::from_le_bytes(self.arr(f)?))
    }
    fn u32(&mut self, f: &'static str) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(self.arr(f)?))
    }
    fn i32(&mut self, f: &'static str) -> Result<i32, ProtoError> {
        Ok(i32::from_le_bytes(self.arr(f)?))
    }
    fn u64(&mut self, f: &'static str) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(self.arr(f)?))
    }
    fn bool(&mut self, f: &'static str) -> Result<bool, ProtoError> {
        match self.u8(f)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(ProtoError::Invalid {
                msg: self.msg,
                field: f,
                value: v as u64,
            }),
        }
    }
    fn str(&mut self, f: &'static str) -> Result<String, ProtoError> {
        let n = self.u16(f)? as usize;
        if n > self.max_str {
            return Err(ProtoError::FieldTooLong {
                msg: self.msg,
                field: f,
                len: n,
                max: self.max_str,
            });
        }
        let b = self.take(n, f)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }
    fn bytes(&mut self, f: &'static str) -> Result<Vec<u8>, ProtoError> {
        let n = self.u16(f)? as usize;
        if n > MAX_KEY {
            return Err(ProtoError::FieldTooLong {
                msg: self.msg,
                field: f,
                len: n,
                max: MAX_KEY,
            });
        }
        Ok(self.take(n, f)?.to_vec())
    }
    fn blob(&mut self, f: &'static str) -> Result<Vec<u8>, ProtoError> {
        let n = self.u32(f)? as usize;
        Ok(self.take(n, f)?.to_vec())
    }
    /// Reads an element count and checks that `count * min_size` bytes are present, so the
    /// allocation that follows is bounded by the payload.
    fn count(&mut self, f: &'static str, min_size: usize) -> Result<usize, ProtoError> {
        let n = self.u32(f)? as usize;
        let need = n.saturating_mul(min_size);
        if need > self.b.len() {
            return Err(ProtoError::Truncated {
                msg: self.msg,
                field: f,
                need,
                left: self.b.len(),
            });
        }
        Ok(n)
    }
    fn end(self) -> Result<(), ProtoError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Trailing {
                msg: self.msg,
                extra: self.b.len(),
            })
        }
    }
}

fn msg_name(t: MsgType) -> &'static str {
    match t {
        MsgType::Hello => "hello",
        MsgType::KallsymsChunk => "kallsyms-chunk",
        MsgType::KallsymsEnd => "kallsyms-end",
        MsgType::Modules => "modules",
        MsgType::Comm => "comm",
        MsgType::Mmap => "mmap",
        MsgType::Task => "task",
        MsgType::Switches => "switches",
        MsgType::SymtabBegin => "symtab-begin",
        MsgType::SymtabChunk => "symtab-chunk",
        MsgType::SymtabEnd => "symtab-end",
        MsgType::Samples => "samples",
        MsgType::Lost => "lost",
        MsgType::Pong => "pong",
        MsgType::Note => "note",
        MsgType::Bye => "bye",
        MsgType::Ready => "ready",
        MsgType::HostHello => "host-hello",
        MsgType::Ping => "ping",
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(msg_name(*self))
    }
}

/// Decodes one payload of type `kind`.
///
/// # Errors
/// [`ProtoError::UnknownType`], [`ProtoError::Truncated`], [`ProtoError::FieldTooLong`],
/// [`ProtoError::Trailing`], [`ProtoError::Invalid`].
pub fn decode_payload(kind: u16, payload: &[u8], limits: &Limits) -> Result<Message, ProtoError> {
    let t = MsgType::from_code(kind).ok_or(ProtoError::UnknownType(kind))?;
    let mut d = Dec {
        b: payload,
        msg: msg_name(t),
        max_str: limits.max_str,
    };
    let m = match t {
        MsgType::Hello => Message::Hello(Hello {
            helper_version: d.str("helper_version")?,
            kernel_release: d.str("kernel_release")?,
            boot_id: d.str("boot_id")?,
            hostname: d.str("hostname")?,
            cpus: d.u32("cpus")?,
            clock: ClockInfo {
                clock_id: d.i32("clock_id")?,
                cap_user_time_zero: d.bool("cap_user_time_zero")?,
                time_shift: d.u16("time_shift")?,
                time_mult: d.u32("time_mult")?,
                time_zero: d.u64("time_zero")?,
            },
            now_ns: d.u64("now_ns")?,
            sampling_hz: d.u32("sampling_hz")?,
            flags: d.u32("flags")?,
        }),
        MsgType::KallsymsChunk => Message::KallsymsChunk(d.blob("data")?),
        MsgType::KallsymsEnd => Message::KallsymsEnd {
            total: d.u64("total")?,
        },
        MsgType::Modules => {
            let n = d.count("count", 18)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(Module {
                    name: d.str("name")?,
                    base: d.u64("base")?,
                    size: d.u64("size")?,
                });
            }
            Message::Modules(v)
        }
        MsgType::Comm => Message::Comm {
            pid: d.u32("pid")?,
            tid: d.u32("tid")?,
            time: d.u64("time")?,
            exec: d.bool("exec")?,
            comm: d.str("comm")?,
        },
        MsgType::Mmap => Message::Mmap {
            pid: d.u32("pid")?,
            tid: d.u32("tid")?,
            time: d.u64("time")?,
            start: d.u64("start")?,
            len: d.u64("len")?,
            pgoff: d.u64("pgoff")?,
            prot: d.u32("prot")?,
            file_key: d.bytes("file_key")?,
            build_id: d.bytes("build_id")?,
            path: d.str("path")?,
        },
        MsgType::Task => {
            let k = d.u8("kind")?;
            let kind = match k {
                0 => TaskKind::Fork,
                1 => TaskKind::Exit,
                v => {
                    return Err(ProtoError::Invalid {
                        msg: "task",
                        field: "kind",
                        value: v as u64,
                    })
                }
            };
            Message::Task {
                kind,
                pid: d.u32("pid")?,
                ppid: d.u32("ppid")?,
                tid: d.u32("tid")?,
                ptid: d.u32("ptid")?,
                time: d.u64("time")?,
            }
        }
        MsgType::Switches => {
            let n = d.count("count", SWITCH_WIRE_LEN)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let cpu = d.u32("cpu")?;
                let time = d.u64("time")?;
                let pid = d.u32("pid")?;
                let tid = d.u32("tid")?;
                let flags = d.u8("flags")?;
                if flags & !3 != 0 {
                    return Err(ProtoError::Invalid {
                        msg: "switches",
                        field: "flags",
                        value: flags as u64,
                    });
                }
                v.push(WireSwitch {
                    cpu,
                    time,
                    pid,
                    tid,
                    out: flags & 1 != 0,
                    preempt: flags & 2 != 0,
                });
            }
            Message::Switches(v)
        }
        MsgType::SymtabBegin => {
            let file_key = d.bytes("file_key")?;
            let build_id = d.bytes("build_id")?;
            let path = d.str("path")?;
            let elf_type = d.u16("elf_type")?;
            let n = d.count("segments", 32)?;
            if n > MAX_SEGMENTS {
                return Err(ProtoError::FieldTooLong {
                    msg: "symtab-begin",
                    field: "segments",
                    len: n,
                    max: MAX_SEGMENTS,
                });
            }
            let mut segments = Vec::with_capacity(n);
            for _ in 0..n {
                segments.push(Segment {
                    offset: d.u64("p_offset")?,
                    vaddr: d.u64("p_vaddr")?,
                    filesz: d.u64("p_filesz")?,
                    memsz: d.u64("p_memsz")?,
                });
            }
            Message::SymtabBegin {
                file_key,
                build_id,
                path,
                elf_type,
                segments,
                symbol_count: d.u32("symbol_count")?,
            }
        }
        MsgType::SymtabChunk => {
            let file_key = d.bytes("file_key")?;
            let n = d.count("count", 18)?;
            let mut symbols = Vec::with_capacity(n);
            for _ in 0..n {
                symbols.push(WireSymbol {
                    start: d.u64("start")?,
                    size: d.u64("size")?,
                    name: d.str("name")?,
                });
            }
            Message::SymtabChunk { file_key, symbols }
        }
        MsgType::SymtabEnd => Message::SymtabEnd {
            file_key: d.bytes("file_key")?,
        },
        MsgType::Samples => {
            let n = d.count("count", SAMPLE_WIRE_LEN)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(WireSample {
                    ip: d.u64("ip")?,
                    pid: d.u32("pid")?,
                    tid: d.u32("tid")?,
                    time: d.u64("time")?,
                    cpu: d.u32("cpu")?,
                    misc: d.u16("misc")?,
                    period: d.u64("period")?,
                });
            }
            Message::Samples(v)
        }
        MsgType::Lost => Message::Lost {
            cpu: d.u32("cpu")?,
            kind: d.u8("kind")?,
            count: d.u64("count")?,
        },
        MsgType::Pong => Message::Pong {
            seq: d.u32("seq")?,
            host_time: d.u64("host_time")?,
            guest_time: d.u64("guest_time")?,
        },
        MsgType::Note => Message::Note {
            level: d.u8("level")?,
            text: d.str("text")?,
        },
        MsgType::Bye => Message::Bye {
            reason: d.str("reason")?,
        },
        MsgType::Ready => Message::Ready {
            now_ns: d.u64("now_ns")?,
        },
        MsgType::HostHello => Message::HostHello {
            host_version: d.str("host_version")?,
        },
        MsgType::Ping => Message::Ping {
            seq: d.u32("seq")?,
            host_time: d.u64("host_time")?,
        },
    };
    d.end()?;
    Ok(m)
}

/// An incremental frame decoder: push bytes as they arrive, pop messages.
///
/// Holds at most one partial frame: `max_payload + HEADER_LEN` bytes plus what one `push`
/// added. A frame's payload buffer grows only as bytes actually arrive.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: Limits,
    buf: Vec<u8>,
    pos: usize,
    failed: Option<ProtoError>,
    frames: u64,
    bytes: u64,
}

impl FrameDecoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> FrameDecoder {
        FrameDecoder {
            limits,
            buf: Vec::new(),
            pos: 0,
            failed: None,
            frames: 0,
            bytes: 0,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > (1 << 20) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
        self.bytes += data.len() as u64;
    }

    /// Bytes pushed but not yet consumed by complete frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes pushed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Pops the next complete message: `Ok(None)` when more bytes are needed.
    ///
    /// After an error the decoder stays failed and returns the same error: the stream
    /// cannot be trusted past it.
    ///
    /// # Errors
    /// Any [`ProtoError`].
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.next_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Message>, ProtoError> {
        let avail = &self.buf[self.pos..];
        let Some(h) = avail.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let h = parse_header(h, &self.limits)?;
        let total = HEADER_LEN + h.len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let m = decode_payload(h.kind, &avail[HEADER_LEN..total], &self.limits)?;
        self.pos += total;
        self.frames += 1;
        Ok(Some(m))
    }

    /// Skips at least one byte, then up to the next position where a frame header starts
    /// (magic and version), for joining a stream mid-way (a virtio-serial port keeps the
    /// guest's half-written frame when the host reattaches) or stepping over a bad frame.
    /// Returns the bytes skipped and clears a failure. Progress is guaranteed: repeated
    /// `next_message`/`resync` calls always consume the buffer.
    pub fn resync(&mut self) -> usize {
        self.failed = None;
        let mut skipped = 0;
        if self.pos < self.buf.len() {
            self.pos += 1;
            skipped = 1;
        }
        loop {
            let avail = &self.buf[self.pos..];
            if avail.len() < 6 {
                return skipped;
            }
            if avail[..4] == MAGIC.to_le_bytes() && avail[4..6] == VERSION.to_le_bytes() {
                return skipped;
            }
            self.pos += 1;
            skipped += 1;
        }
    }
}

/// Reads one frame from a blocking reader: `Ok(None)` on a clean end of stream at a frame
/// boundary.
///
/// # Errors
/// `std::io::Error` from the reader (an EOF inside a frame is `UnexpectedEof`), or an
/// `InvalidData` error wrapping the [`ProtoError`].
pub fn read_message(
    r: &mut impl std::io::Read,
    limits: &Limits,
) -> std::io::Result<Option<Message>> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let hdr = parse_header(&h, limits).map_err(std::io::Error::other)?;
    let mut payload = Vec::new();
    // Grow with the data actually read, never to the announced size up front.
    let n = std::io::Read::take(&mut *r, hdr.len as u64).read_to_end(&mut payload)?;
    if n < hdr.len as usize {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    decode_payload(hdr.kind, &payload, limits)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

use std::io::Read as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                helper_version: "0.1.0".into(),
                kernel_release: "6.1.0-18-amd64".into(),
                boot_id: "b0e7c9d2-0000-4000-8000-000000000001".into(),
                hostname: "guest".into(),
                cpus: 2,
                clock: ClockInfo {
                    clock_id: CLOCK_PERF_LOCAL,
                    cap_user_time_zero: true,
                    time_shift: 31,
                    time_mult: 1_234_567,
                    time_zero: 42,
                },
                now_ns: 123,
                sampling_hz: 1000,
                flags: HELLO_KALLSYMS | HELLO_SIDEBAND,
            }),
            Message::KallsymsChunk(b"ffffffff81000000 T _stext\n".to_vec()),
            Message::KallsymsEnd { total: 26 },
            Message::Modules(vec![Module {
                name: "virtio_console".into(),
                base: 0xffff_ffff_c000_0000,
                size: 4096,
            }]),
            Message::Comm {
                pid: 7,
                tid: 8,
                time: 9,
                exec: true,
                comm: "hvprof-workload".into(),
            },
            Message::Mmap {
                pid: 7,
                tid: 7,
                time: 10,
                start: 0x40_0000,
                len: 0x1000,
                pgoff: 0,
                prot: 5,
                file_key: vec![1, 2, 3],
                build_id: vec![1, 2, 3],
                path: "/bin/hvprof-workload".into(),
            },
            Message::Task {
                kind: TaskKind::Exit,
                pid: 1,
                ppid: 0,
                tid: 1,
                ptid: 0,
                time: 5,
            },
            Message::Switches(vec![WireSwitch {
                cpu: 1,
                time: 2,
                pid: 3,
                tid: 4,
                out: true,
                preempt: true,
            }]),
            Message::SymtabBegin {
                file_key: vec![9; 20],
                build_id: vec![9; 20],
                path: "/lib/libc.so.6".into(),
                elf_type: 3,
                segments: vec![Segment {
                    offset: 0,
                    vaddr: 0,
                    filesz: 10,
                    memsz: 10,
                }],
                symbol_count: 1,
            },
            Message::SymtabChunk {
                file_key: vec![9; 20],
                symbols: vec![WireSymbol {
                    start: 0x1000,
                    size: 16,
                    name: "hot_alpha".into(),
                }],
            },
            Message::SymtabEnd {
                file_key: vec![9; 20],
            },
            Message::Samples(vec![WireSample {
                ip: 1,
                pid: 2,
                tid: 3,
                time: 4,
                cpu: 5,
                misc: 2,
                period: 1_000_000,
            }]),
            Message::Lost {
                cpu: 0,
                kind: LOST_SAMPLES,
                count: 3,
            },
            Message::Pong {
                seq: 1,
                host_time: 2,
                guest_time: 3,
            },
            Message::Note {
                level: 1,
                text: "kptr_restrict".into(),
            },
            Message::Bye {
                reason: "duration".into(),
            },
            Message::HostHello {
                host_version: "0.1.0".into(),
            },
            Message::Ready { now_ns: 77 },
            Message::Ping {
                seq: 1,
                host_time: 99,
            },
        ]
    }

    #[test]
    fn round_trip_every_message() {
        let mut wire = Vec::new();
        let msgs = all_messages();
        for m in &msgs {
            m.encode(&mut wire);
        }
        // Byte at a time: the incremental decoder must not care about boundaries.
        let mut d = FrameDecoder::new(Limits::default());
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
        // And through the blocking reader.
        let mut r = &wire[..];
        let mut got = Vec::new();
        while let Some(m) = read_message(&mut r, &Limits::default()).unwrap() {
            got.push(m);
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn header_layout_is_pinned() {
        let f = Message::Bye { reason: "x".into() }.to_frame();
        assert_eq!(&f[..4], b"HVPG");
        assert_eq!(&f[4..6], &[1, 0]);
        assert_eq!(&f[6..8], &[16, 0]);
        assert_eq!(&f[8..12], &[3, 0, 0, 0]);
        assert_eq!(&f[12..], &[1, 0, b'x']);
    }

    #[test]
    fn oversized_length_is_rejected_before_reading() {
        let mut f = Message::Bye { reason: "x".into() }.to_frame();
        f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut d = FrameDecoder::new(Limits::default());
        d.push(&f);
        assert!(matches!(
            d.next_message(),
            Err(ProtoError::TooLong { len: u32::MAX, .. })
        ));
        // Stays failed.
        assert!(d.next_message().is_err());
    }

    #[test]
    fn huge_count_in_small_payload() {
        // Samples: count 1e9 with 4 payload bytes.
        let mut f = Vec::new();
        f.extend_from_slice(&MAGIC.to_le_bytes());
        f.extend_from_slice(&VERSION.to_le_bytes());
        f.extend_from_slice(&(MsgType::SymtabChunk as u16).to_le_bytes());
        f.extend_from_slice(&6u32.to_le_bytes());
        f.extend_from_slice(&0u16.to_le_bytes());
        f.extend_from_slice(&1_000_000_000u32.to_le_bytes());
        let mut d = FrameDecoder::new(Limits::default());
        d.push(&f);
        assert!(matches!(
            d.next_message(),
            Err(ProtoError::Truncated { field: "count", .. })
        ));
    }

    #[test]
    fn truncated_frames_wait_or_fail() {
        let f = all_messages()[0].to_frame();
        for cut in 0..f.len() {
            let mut d = FrameDecoder::new(Limits::default());
            d.push(&f[..cut]);
            assert_eq!(d.next_message(), Ok(None), "cut at {cut}");
            let mut r = &f[..cut];
            let res = read_message(&mut r, &Limits::default());
            if cut == 0 {
                assert!(matches!(res, Ok(None)));
            } else {
                assert!(res.is_err());
            }
        }
        // A frame whose declared length is shorter than its fields.
        let mut g = f.clone();
        let len = u32::from_le_bytes(g[8..12].try_into().unwrap()) - 5;
        g[8..12].copy_from_slice(&len.to_le_bytes());
        let mut d = FrameDecoder::new(Limits::default());
        d.push(&g);
        assert!(matches!(
            d.next_message(),
            Err(ProtoError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_magic_version_type_trailing() {
        let f = Message::Bye { reason: "x".into() }.to_frame();
        let mut g = f.clone();
        g[0] = b'X';
        assert!(matches!(decode_all(&g), Err(ProtoError::BadMagic { .. })));
        let mut g = f.clone();
        g[4] = 2;
        assert_eq!(decode_all(&g), Err(ProtoError::BadVersion { found: 2 }));
        let mut g = f.clone();
        g[6] = 200;
        assert_eq!(decode_all(&g), Err(ProtoError::UnknownType(200)));
        let mut g = f.clone();
        g.push(0);
        g[8] = 4;
        assert!(matches!(
            decode_all(&g),
            Err(ProtoError::Trailing { extra: 1, .. })
        ));
    }

    fn decode_all(b: &[u8]) -> Result<Vec<Message>, ProtoError> {
        let mut d = FrameDecoder::new(Limits::default());
        d.push(b);
        let mut v = Vec::new();
        while let Some(m) = d.next_message()? {
            v.push(m);
        }
        Ok(v)
    }

    #[test]
    fn non_utf8_names_are_replaced_not_rejected() {
        let mut f = Message::Note {
            level: 0,
            text: "ab".into(),
        }
        .to_frame();
        let n = f.len();
        f[n - 1] = 0xff;
        let m = decode_all(&f).unwrap();
        assert_eq!(
            m,
            vec![Message::Note {
                level: 0,
                text: "a\u{fffd}".into()
            }]
        );
    }

    #[test]
    fn long_strings_are_cut_by_encoder_and_rejected_by_decoder() {
        let long = "é".repeat(MAX_STR);
        let f = Message::Bye {
            reason: long.clone(),
        }
        .to_frame();
        match &decode_all(&f).unwrap()[0] {
            Message::Bye { reason } => {
                assert!(reason.len() <= MAX_STR && long.starts_with(reason.as_str()))
            }
            m => panic!("{m:?}"),
        }
        let mut g = Vec::new();
        g.extend_from_slice(&MAGIC.to_le_bytes());
        g.extend_from_slice(&VERSION.to_le_bytes());
        g.extend_from_slice(&(MsgType::Bye as u16).to_le_bytes());
        g.extend_from_slice(&(2 + 5000u32).to_le_bytes());
        g.extend_from_slice(&5000u16.to_le_bytes());
        g.extend(std::iter::repeat_n(b'a', 5000));
        assert!(matches!(
            decode_all(&g),
            Err(ProtoError::FieldTooLong { len: 5000, .. })
        ));
    }

    #[test]
    fn resync_finds_next_frame() {
        let mut wire = b"garbage-HVP".to_vec();
        Message::Bye { reason: "r".into() }.encode(&mut wire);
        let mut d = FrameDecoder::new(Limits::default());
        d.push(&wire);
        assert!(d.next_message().is_err());
        assert_eq!(d.resync(), 11);
        assert_eq!(
            d.next_message().unwrap(),
            Some(Message::Bye { reason: "r".into() })
        );
    }
}
