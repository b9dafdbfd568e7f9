//! `hvprof stat`'s view of its rings: tracepoint samples (`sample_type = TID | TIME | CPU |
//! RAW`, no `sample_id_all`) decoded by the one perf decoder (`hvprof_perf::record`), seen as
//! [`TpRecord`]s.
//!
//! Record body after the 8-byte header (include/uapi/linux/perf_event.h, the
//! `PERF_RECORD_SAMPLE` comment, in `sample_type` bit order):
//! `u32 pid, tid; u64 time; u32 cpu, res; u32 raw_size; u8 raw[raw_size]` (the raw part is
//! padded so the record stays 8-byte aligned). The raw bytes are the tracepoint's record as
//! described by its tracefs `format` file. `PERF_RECORD_LOST` is `u64 id; u64 lost`.

use hvprof_perf::abi;
use hvprof_perf::record::encode::{Encoder, SampleParts};
use hvprof_perf::record::{Record, RecordDecoder};

/// The `sample_type` of every event opened by `hvprof stat`.
pub const STAT_SAMPLE_TYPE: u64 =
    abi::SAMPLE_TID | abi::SAMPLE_TIME | abi::SAMPLE_CPU | abi::SAMPLE_RAW;

/// The decoder of `hvprof stat`'s rings (its events do not set `sample_id_all`).
pub fn decoder() -> RecordDecoder {
    RecordDecoder::new(STAT_SAMPLE_TYPE).sample_id_all(false)
}

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

/// A record of a `hvprof stat` ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpRecord<'a> {
    /// A sample.
    Sample(TpSample<'a>),
    /// `PERF_RECORD_LOST`: this many records were dropped (ring full).
    Lost(u64),
    /// Another record type (skipped).
    Other(u32),
    /// Bytes that do not form a valid record (counted by the caller).
    Corrupt,
}

/// Iterates over the records in `bytes` (as appended by `RingBuffer::drain_into`).
pub fn records(bytes: &[u8]) -> impl Iterator<Item = TpRecord<'_>> {
    let d = decoder();
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let (r, size) = d.decode_one(bytes.get(off..)?)?;
        off += size;
        Some(match r {
            Record::Sample(s) => TpRecord::Sample(TpSample {
                pid: s.sample.pid,
                tid: s.sample.tid,
                time_ns: s.sample.time_ns,
                cpu: s.sample.cpu,
                raw: s.raw.unwrap_or_default(),
            }),
            Record::Lost { lost, .. } => TpRecord::Lost(lost),
            Record::Corrupt { .. } => TpRecord::Corrupt,
            Record::Other { kind, .. } => TpRecord::Other(kind),
            _ => TpRecord::Other(0),
        })
    })
}

/// Encodes a sample record exactly as the kernel lays it out for [`STAT_SAMPLE_TYPE`]
/// (for fixtures and tests).
pub fn encode_sample(pid: i32, tid: i32, time_ns: u64, cpu: u32, raw: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + raw.len());
    Encoder::new(STAT_SAMPLE_TYPE).sample(
        &mut v,
        &SampleParts {
            pid: pid as u32,
            tid: tid as u32,
            time: time_ns,
            cpu,
            raw,
            ..SampleParts::default()
        },
    );
    v
}

/// Encodes a `PERF_RECORD_LOST` record (`id`, `lost`), without a `sample_id` trailer.
pub fn encode_lost(lost: u64) -> Vec<u8> {
    let mut fields = [0u8; 16];
    fields[8..].copy_from_slice(&lost.to_ne_bytes());
    let mut v = Vec::with_capacity(24);
    // sample_type 0: no trailer, as without sample_id_all.
    Encoder::new(0).sideband(&mut v, abi::RECORD_LOST, 0, &fields, 0, 0, 0, 0);
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
    fn corrupt_is_reported() {
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
