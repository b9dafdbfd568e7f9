//! # hvprof-proto — the hvprof host ⇄ guest-helper wire protocol
//!
//! Version [`VERSION`]: framing, messages, the encoder and a bounded decoder for untrusted
//! input, and the byte channels it runs on. Both sides use it: the in-guest helper
//! (`hvprof-guest`) encodes, the host (`hvprof record --active`) decodes. The specification,
//! with every field, is `docs/protocol.md`.
//!
//! Stage: helper → **wire** → host model. Input: [`Message`]s (encoder) or bytes from the
//! channel (decoder); output: frames (encoder) or [`Message`]s (decoder).
//!
//! Modules:
//!
//! - [`message`] — the table: each message's type code and fields in wire order, from which
//!   [`Message`], [`MsgType`] and the payload encoder and decoder are generated (so the two
//!   cannot drift apart), and the element records ([`Hello`], [`WireSample`], ...);
//! - [`frame`] — the frame header, [`Message::encode`], [`FrameDecoder`], [`read_message`];
//! - [`limits`] — constants and [`Limits`]; [`ProtoError`] for every violation;
//! - [`transport`] — virtio-serial port, vsock, TCP and unix-socket streams; `unsafe` lives
//!   only in [`sys`] (`poll`, AF_VSOCK).
//!
//! # Encoding
//!
//! Inside a payload: integers are LE; a `str` is `u16 len` + bytes (at most
//! [`Limits::max_str`], decoded as UTF-8 with invalid sequences replaced by U+FFFD); `bytes`
//! is `u16 len` + bytes (at most [`MAX_KEY`]); a `blob` is `u32 len` + bytes; an array is
//! `u32 count` + elements. Trailing bytes after the last field are an error.
//!
//! # Untrusted input
//!
//! The host decodes what a guest wrote. Every length and count is checked against the bytes
//! actually present *before* anything is allocated, so a frame announcing 10⁹ symbols in 40
//! bytes costs nothing; nothing here panics on any input (see the `fuzz/` target and the
//! randomized test `tests/active_fuzz.rs`). Limits on what the host *keeps* (symbols per
//! table, processes, memory) are enforced by the host's model, not here.
//!
//! ```
//! use hvprof_proto::{Message, FrameDecoder, Limits};
//! let mut wire = Vec::new();
//! Message::Note { level: 1, text: "hello".into() }.encode(&mut wire);
//! let mut dec = FrameDecoder::new(Limits::default());
//! dec.push(&wire);
//! assert_eq!(dec.next_message().unwrap(), Some(Message::Note { level: 1, text: "hello".into() }));
//! ```

#[macro_use]
mod table;
mod codec;
mod error;
pub mod frame;
pub mod limits;
pub mod message;
pub mod sys;
pub mod transport;

#[cfg(test)]
mod tests;

pub use codec::truncate_str;
pub use error::ProtoError;
pub use frame::{decode_payload, parse_header, read_message, FrameDecoder, FrameHeader};
pub use limits::{
    Limits, HEADER_LEN, MAGIC, MAX_CALLCHAIN, MAX_KEY, MAX_PAYLOAD, MAX_SEGMENTS, MAX_STR,
    SAMPLE_WIRE_LEN, STACK_SAMPLE_MIN_LEN, SWITCH_WIRE_LEN, VERSION,
};
pub use message::{
    ClockInfo, Hello, Message, Module, MsgType, Segment, StackSample, TaskKind, WireSample,
    WireSwitch, WireSymbol, CLOCK_PERF_LOCAL, HELLO_CALLCHAINS, HELLO_KALLSYMS,
    HELLO_MMAP_BUILD_ID, HELLO_SIDEBAND, LOST_HELPER, LOST_SAMPLES, LOST_SIDEBAND,
};
