//! IO-free decoding of tracepoint samples: `PERF_RECORD_SAMPLE` with
//! `sample_type = TID | TIME | CPU | RAW` (the layout hvprof stat requests), and
//! `PERF_RECORD_LOST`.
//!
//! Record body after the 8-byte header (include/uapi/linux/perf_event.h, the
//! `PERF_RECORD_SAMPLE` comment, in `sample_type` bit order):
//! `u32 pid, tid; u64 time; u32 cpu, res; u32 raw_size; u8 raw[raw_size]` (the raw part is
//! padded so the record stays 8-byte aligned). The raw bytes are the tracepoint's record as
//! described by its tracefs `format` file. `PERF_RECORD_LOST` is `u64 id; u64 lost`.

use perf_event_open_sys::bindings as b;

use crate::sys::abi;

/// The `sample_type` of every event opened by `hvprof stat`.
pub const STAT_SAMPLE_TYPE: u64 =
    abi::SAMPLE_TID | abi::SAMPLE_TIME | abi::SAMPLE_CPU | b::PERF_SAMPLE_RAW as u64;

/// One tracepoint hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpSample<'a> {
    /// Process id of the task that hit the tracepoint.
    pub pid: i32,
    /// Thread id.
    pub tid: i32,
    /// Time in ns of the event's clock (hvprof stat asks for `CLOCK_MONOTONIC`).
    pub time_ns: u64,
    /// Host CPU.
    pub cpu: u32,
    /// The tracepoint's record (`PERF_SAMPLE_RAW`), laid out as its `format` file says.
    pub raw: &'a [u8],
}

/// A decoded record of a `hvprof stat` ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpRecord<'a> {
    /// A sample.
    Sample(TpSample<'a>),
    /// `PERF_RECORD_LOST`: this many records were dropped (ring full).
    Lost(u64),
    /// Another record type (skipped).
    Other(u32),
    /// A record whose size is inconsistent; decoding stops here.
    Corrupt,
}

/// Iterates over the records in `bytes` (as appended by `RingBuffer::drain_into`).
pub fn records(bytes: &[u8]) -> impl Iterator<Item = TpRecord<'_>> {
    let mut pos = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || pos + abi::HEADER_SIZE > bytes.len() {
            return None;
        }
        let h = &bytes[pos..];
        let ty = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
        let size = usize::from(u16::from_ne_bytes([h[6], h[7]]));
        if size < abi::HEADER_SIZE || pos + size > bytes.len() {
            done = true;
            return Some(TpRecord::Corrupt);
        }
        let body = &bytes[pos + abi::HEADER_SIZE..pos + size];
        pos += size;
        Some(match ty {
            abi::RECORD_SAMPLE => match decode_sample(body) {
                Some(s) => TpRecord::Sample(s),
                None => {
                    done = true;
                    TpRecord::Corrupt
                }
            },
            abi::RECORD_LOST => match body.get(8..16) {
                Some(l) => TpRecord::Lost(u64::from_ne_bytes(l.try_into().unwrap_or([0; 8]))),
                None => TpRecord::Corrupt,
            },
            t => TpRecord::Other(t),
        })
    })
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn decode_sample(body: &[u8]) -> Option<TpSample<'_>> {
    let pid = u32_at(body, 0)? as i32;
    let tid = u32_at(body, 4)? as i32;
    let time_ns = u64_at(body, 8)?;
    let cpu = u32_at(body, 16)?;
    let raw_size = u32_at(body, 24)? as usize;
    let raw = body.get(28..28usize.checked_add(raw_size)?)?;
    Some(TpSample {
        pid,
        tid,
        time_ns,
        cpu,
        raw,
    })
}

/// Encodes a sample record exactly as the kernel lays it out for [`STAT_SAMPLE_TYPE`]
/// (for fixtures and tests).
pub fn encode_sample(pid: i32, tid: i32, time_ns: u64, cpu: u32, raw: &[u8]) -> Vec<u8> {
    let body_len = 28 + raw.len();
    let size = (abi::HEADER_SIZE + body_len).div_ceil(8) * 8;
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&abi::RECORD_SAMPLE.to_ne_bytes());
    v.extend_from_slice(&0u16.to_ne_bytes());
    v.extend_from_slice(&(size as u16).to_ne_bytes());
    v.extend_from_slice(&(pid as u32).to_ne_bytes());
    v.extend_from_slice(&(tid as u32).to_ne_bytes());
    v.extend_from_slice(&time_ns.to_ne_bytes());
    v.extend_from_slice(&cpu.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    // The kernel pads the raw part (u32 size + data) to a multiple of 8 and counts the padding
    // in `raw_size`; keep the tracepoint's bytes first.
    let padded = size - abi::HEADER_SIZE - 24 - 4;
    v.extend_from_slice(&(padded as u32).to_ne_bytes());
    v.extend_from_slice(raw);
    v.resize(size, 0);
    v
}

/// Encodes a `PERF_RECORD_LOST` record (`id`, `lost`), without a `sample_id` trailer.
pub fn encode_lost(lost: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&abi::RECORD_LOST.to_ne_bytes());
    v.extend_from_slice(&0u16.to_ne_bytes());
    v.extend_from_slice(&24u16.to_ne_bytes());
    v.extend_from_slice(&0u64.to_ne_bytes());
    v.extend_from_slice(&lost.to_ne_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let raw = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        let mut bytes = encode_sample(10, 11, 12345, 3, &raw);
        assert_eq!(bytes.len() % 8, 0);
        bytes.extend(encode_lost(7));
        bytes.extend(encode_sample(10, 12, 5, 0, &[]));
        let recs: Vec<_> = records(&bytes).collect();
        assert_eq!(recs.len(), 3);
        match recs[0] {
            TpRecord::Sample(s) => {
                assert_eq!((s.pid, s.tid, s.time_ns, s.cpu), (10, 11, 12345, 3));
                assert_eq!(&s.raw[..13], &raw);
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(recs[1], TpRecord::Lost(7));
        assert!(matches!(recs[2], TpRecord::Sample(s) if s.tid == 12));
    }

    #[test]
    fn corrupt_stops() {
        let mut bytes = encode_sample(1, 1, 1, 1, &[0; 4]);
        bytes[6] = 4; // size < header
        bytes[7] = 0;
        let recs: Vec<_> = records(&bytes).collect();
        assert_eq!(recs, vec![TpRecord::Corrupt]);
        let bytes = encode_sample(1, 1, 1, 1, &[0; 4]);
        assert_eq!(records(&bytes[..20]).count(), 1); // truncated: Corrupt
        assert!(records(&[]).next().is_none());
    }
}
