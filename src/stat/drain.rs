//! The drain step of `hvprof stat`: ring bytes → decoded tracepoint records → the exit
//! tracker, with every record that is not a sample accounted for.
//!
//! Input: the rings of the vCPU threads' tracepoints; output: samples pushed into an
//! [`ExitTracker`], and per ring a [`RingHealth`]: records lost (`PERF_RECORD_LOST`, ring
//! full), corrupt records (inconsistent size or layout) and corrupt ring heads (a drain
//! error). Nothing is dropped silently: these counts end up in the report's `tracepoints`
//! (`lost`, `corrupt`, `ring_errors`) and the first ring errors in its notes.
//!
//! ```ignore
//! // (private module) Decoding a drained batch:
//! let mut health = RingHealth::default();
//! account(&bytes, &mut health, |s| tracker.push(Tp::Pio, s));
//! assert_eq!(health.corrupt, 0);
//! ```

use super::decode::{records, TpRecord, TpSample};
use super::exits::ExitTracker;
use super::report::RingHealth;
use super::vm::VmRt;
use hvprof_perf::RingBuffer;

/// Decodes the records of one drained batch (`bytes`, as appended by
/// [`RingBuffer::drain_into`]): hands each sample to `on_sample` and counts lost and corrupt
/// records in `health`. Other record types are skipped.
pub(super) fn account(
    bytes: &[u8],
    health: &mut RingHealth,
    mut on_sample: impl FnMut(&TpSample<'_>),
) {
    for r in records(bytes) {
        match r {
            TpRecord::Sample(s) => on_sample(&s),
            TpRecord::Lost(n) => health.lost = health.lost.saturating_add(n),
            TpRecord::Corrupt => health.corrupt = health.corrupt.saturating_add(1),
            TpRecord::Other(_) => {}
        }
    }
}

/// Replaces `buf` with every record published in `ring` since the last drain. A drain error
/// (a corrupt ring head) is counted in `health` and its message returned: the ring has moved
/// its tail to the head, so reading goes on, and what was in flight is gone.
pub(super) fn drain_ring(
    ring: &mut RingBuffer,
    buf: &mut Vec<u8>,
    health: &mut RingHealth,
) -> Option<String> {
    buf.clear();
    match ring.drain_into(buf) {
        Ok(_) => None,
        Err(e) => {
            health.ring_errors = health.ring_errors.saturating_add(1);
            Some(crate::error_chain(&e))
        }
    }
}

/// Ring error messages kept as notes; past this, they are only counted.
const MAX_RING_NOTES: usize = 10;

/// Notes about ring errors, bounded: a ring whose head is corrupt at every tick must not grow
/// the report without limit (the counts are in the report's tracepoint figures anyway).
#[derive(Debug, Default)]
pub(super) struct RingNotes {
    seen: usize,
}

impl RingNotes {
    /// Adds a note about error `msg` on the ring of `what` to `notes`, while under the bound.
    pub(super) fn note(&mut self, notes: &mut Vec<String>, what: &str, msg: &str) {
        self.seen = self.seen.saturating_add(1);
        if self.seen <= MAX_RING_NOTES {
            notes.push(format!("{what}: {msg}"));
        } else if self.seen == MAX_RING_NOTES + 1 {
            notes.push(format!(
                "more ring errors after the first {MAX_RING_NOTES} were counted (ring_errors), not listed"
            ));
        }
    }
}

/// Drains the ring of every sampled tracepoint of every vCPU thread into `tracker`, counting
/// lost and corrupt records and ring errors on each tracepoint (until the next span is closed).
pub(super) fn drain_vcpus(
    rts: &mut [VmRt],
    tracker: &mut ExitTracker,
    buf: &mut Vec<u8>,
    ring_notes: &mut RingNotes,
    notes: &mut Vec<String>,
) {
    for vm in rts {
        for c in &mut vm.vcpus {
            for t in &mut c.tps {
                let Some(ring) = &mut t.ring else { continue };
                if let Some(e) = drain_ring(ring, buf, &mut t.health) {
                    let what = match c.tid {
                        Some(tid) => format!("{} ring of thread {tid}", t.tp.full_name()),
                        None => format!("{} ring of vCPU {}", t.tp.full_name(), c.index),
                    };
                    ring_notes.note(notes, &what, &e);
                }
                let tp = t.tp;
                account(buf, &mut t.health, |s| tracker.push(tp, s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::stat::decode::{encode_lost, encode_sample};
    use crate::stat::exits::{Layouts, Tp};
    use crate::stat::interval::{build_report, BuildCtx, Span};
    use crate::stat::render_text;
    use crate::stat::report::{TracepointStatus, XenHypercalls};
    use crate::stat::source::Source;
    use crate::stat::vm::{span_tally, VcpuRt, VmRt};

    /// A batch as a ring would give it: a sample, a LOST record, a sample whose size field
    /// is below the header size (corrupt: decoding stops), and a sample after it.
    fn batch_with_corrupt_record() -> Vec<u8> {
        let mut b = encode_sample(100, 101, 1_000, 0, &[0u8; 16]);
        b.extend(encode_lost(3));
        let mut bad = encode_sample(100, 101, 2_000, 0, &[0u8; 16]);
        bad[6..8].copy_from_slice(&4u16.to_ne_bytes());
        b.extend(bad);
        b.extend(encode_sample(100, 101, 3_000, 0, &[0u8; 16]));
        b
    }

    #[test]
    fn account_counts_lost_and_corrupt_records() {
        let mut health = RingHealth::default();
        let mut tids = Vec::new();
        account(&batch_with_corrupt_record(), &mut health, |s| {
            tids.push(s.tid)
        });
        assert_eq!(
            tids,
            vec![101],
            "the sample before the corrupt record is kept"
        );
        assert_eq!(
            health,
            RingHealth {
                lost: 3,
                corrupt: 1,
                ring_errors: 0
            }
        );
        let mut none = RingHealth::default();
        account(&[], &mut none, |_| panic!("no samples in an empty batch"));
        assert!(none.is_clean());
    }

    #[test]
    fn ring_notes_are_bounded() {
        let mut notes = Vec::new();
        let mut rn = RingNotes::default();
        for _ in 0..100 {
            rn.note(&mut notes, "kvm:kvm_pio ring of thread 7", "corrupt head");
        }
        assert_eq!(notes.len(), MAX_RING_NOTES + 1);
        assert!(notes[0].contains("corrupt head"), "{notes:?}");
    }

    /// A corrupt record and a corrupt ring head go from the drained bytes through the
    /// tracepoint's tally into the span's report, and are shown in text and JSON.
    #[test]
    fn corrupt_records_are_counted_and_shown() {
        // Drain/accounting: what `drain_vcpus` does for one tracepoint of one thread.
        let mut tracker = ExitTracker::new(Layouts::default());
        let mut health = RingHealth::default();
        account(&batch_with_corrupt_record(), &mut health, |s| {
            tracker.push(Tp::Pio, s)
        });
        health.ring_errors += 1; // what `drain_ring` counts on a corrupt head
        tracker.flush(u64::MAX);

        // Closing the span: what `VmRt::fold` does with the counter read back as 5 hits.
        let mut last_count = 0;
        let tally = span_tally(5, &mut last_count, &mut health);
        assert!(health.is_clean(), "taken into the tally");
        let mut vcpu = VcpuRt::new(0, Some(101));
        let counts = tracker.take(101);
        vcpu.interval.counts.merge(&counts);
        vcpu.interval.tally.insert(Tp::Pio, tally);
        vcpu.set_sample_counts();
        let mut rts = vec![VmRt::new(100, "vm".into(), vec![vcpu], None)];

        let ctx = BuildCtx {
            tp_status: vec![TracepointStatus {
                name: Tp::Pio.full_name(),
                state: "sampled".into(),
                detail: "1 vCPU threads".into(),
                count: 0,
                lost: 0,
                corrupt: 0,
                ring_errors: 0,
            }],
            xen_status: XenHypercalls::unavailable("test".into()),
            hz: 100,
        };
        let cum = BTreeMap::from([(Tp::Pio, 5)]);
        let span = Span {
            interval: Some(1),
            start: Duration::ZERO,
            len: Duration::from_secs(1),
            proc_stat: None,
        };
        let r = build_report(&ctx, &mut rts, None, Source::ExitPath, &span, &[], &cum);

        let vm_tp = &r.vms[0].exits.tracepoints[0];
        assert_eq!(vm_tp.name, "kvm:kvm_pio");
        assert_eq!(
            (
                vm_tp.count,
                vm_tp.samples,
                vm_tp.lost,
                vm_tp.corrupt,
                vm_tp.ring_errors
            ),
            (5, 1, 3, 1, 1)
        );
        assert_eq!(r.vms[0].vcpus[0].exits.tracepoints[0].corrupt, 1);
        let st = &r.tracepoints[0];
        assert_eq!((st.lost, st.corrupt, st.ring_errors), (3, 1, 1));
        assert!(
            r.notes.iter().any(|n| n.contains("1 corrupt record")),
            "{:?}",
            r.notes
        );

        let text = render_text(&r);
        assert!(
            text.contains("kvm:kvm_pio 5 (3 lost, 1 corrupt, 1 ring error)"),
            "{text}"
        );
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert!(json.contains(r#""corrupt":1"#), "{json}");
        assert!(json.contains(r#""ring_errors":1"#), "{json}");
    }
}
