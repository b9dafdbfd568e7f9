//! Frame constants and the decoder's bounds: every number the wire format pins
//! (`docs/protocol.md`, "Framing" and "Limits").

/// Frame magic: the bytes `H V P G`, read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HVPG");
/// Protocol version this crate speaks.
pub const VERSION: u16 = 1;
/// Frame header size in bytes (magic, version, type, length).
pub const HEADER_LEN: usize = 12;
/// Default largest payload in bytes (16 MiB).
pub const MAX_PAYLOAD: u32 = 16 << 20;
/// Default longest string in bytes (4 KiB); also the length the encoder cuts strings to.
pub const MAX_STR: usize = 4096;
/// Longest `bytes` field (file keys, build ids) in bytes.
pub const MAX_KEY: usize = 64;
/// Most ELF segments in one symbol table header.
pub const MAX_SEGMENTS: usize = 256;
/// Size in bytes of one encoded [`WireSample`](crate::WireSample).
pub const SAMPLE_WIRE_LEN: usize = 38;
/// Size in bytes of one encoded [`WireSwitch`](crate::WireSwitch).
pub const SWITCH_WIRE_LEN: usize = 21;
/// Most frames in one [`StackSample`](crate::StackSample)'s callchain (`PERF_CONTEXT_*`
/// markers not counted). 128 is one more than Linux's default `kernel.perf_event_max_stack`
/// (127, kernel/events/callchain.c), so no chain the guest kernel builds by default is cut
/// on the wire; the helper asks for fewer (`attr.sample_max_stack`).
pub const MAX_CALLCHAIN: usize = 128;
/// Size in bytes of one encoded [`StackSample`](crate::StackSample) with an empty
/// callchain (a [`WireSample`](crate::WireSample), `u16 kernel_frames`, `u32 count`).
pub const STACK_SAMPLE_MIN_LEN: usize = SAMPLE_WIRE_LEN + 2 + 4;

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
