//! Frames: the 12-byte header around each payload, the encoder's entry point
//! ([`Message::encode`]) and the decoders of untrusted bytes — incremental
//! ([`FrameDecoder`]) and blocking ([`read_message`]).
//!
//! Stage: **wire**. Input: [`Message`]s or bytes from the channel; output: frames or
//! [`Message`]s. Layout (`docs/protocol.md`, "Framing"), little-endian:
//!
//! ```text
//! offset size field
//!      0    4 magic    b"HVPG" (0x47505648 as a LE u32)
//!      4    2 version  1
//!      6    2 type     MsgType
//!      8    4 length   payload bytes, at most Limits::max_payload (16 MiB by default)
//!     12  len payload
//! ```

use std::io::Read as _;

use crate::codec::{Dec, Enc};
use crate::error::ProtoError;
use crate::limits::{Limits, HEADER_LEN, MAGIC, VERSION};
use crate::message::{Message, MsgType};

impl Message {
    /// Appends this message as one frame to `out`.
    ///
    /// Strings longer than [`MAX_STR`](crate::MAX_STR) bytes are cut (at a character
    /// boundary), key fields longer than [`MAX_KEY`](crate::MAX_KEY) too, so what is encoded
    /// always decodes. Callers keep payloads under [`MAX_PAYLOAD`](crate::MAX_PAYLOAD) by
    /// chunking (the helper's `hvprof_guest::sender::Sender` does).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.msg_type() as u16).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let body = out.len();
        self.put_payload(&mut Enc(out));
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

/// Decodes one payload of type `kind`.
///
/// # Errors
/// [`ProtoError::UnknownType`], [`ProtoError::Truncated`], [`ProtoError::FieldTooLong`],
/// [`ProtoError::Trailing`], [`ProtoError::Invalid`].
pub fn decode_payload(kind: u16, payload: &[u8], limits: &Limits) -> Result<Message, ProtoError> {
    let t = MsgType::from_code(kind).ok_or(ProtoError::UnknownType(kind))?;
    let mut d = Dec::new(payload, t.name(), limits.max_str);
    let m = Message::get_payload(t, &mut d)?;
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
