//! The consuming end of a session: decodes each batch of ring bytes, attributes every sample,
//! and routes it to the aggregator, the recording, or (active mode) the merge with the guest.

use std::collections::HashSet;

use hvprof_perf::record::{Record, RecordDecoder};
use hvprof_perf::Target;

use crate::aggregate::Aggregator;
use crate::attribute::Attributed;
use crate::attribute::Attributor;
use crate::collect::Batch;
use crate::error::Result;
use crate::model::VmId;
use crate::recording::Recorder;
use crate::report::GuestView;

/// The consuming side of a session. Live (no `-o`): decodes, attributes and aggregates each
/// record. Recording (`-o`): writes each drain's bytes to the perf.data file as they are and
/// only counts (attribution happens at report time). Either way, active mode's guest-tagged
/// samples of the VM are held back for the merge with the guest.
pub(super) struct Sink {
    pub(super) attributor: Attributor,
    /// Decodes the rings' records (the counters' attr shapes them: `-g` adds callchains).
    pub(super) decoder: RecordDecoder,
    /// Where each batch's buffer goes back to, for the readers to reuse.
    pub(super) pool: crate::collect::BufferPool,
    pub(super) agg: Aggregator,
    pub(super) writer: Option<Recorder>,
    pub(super) hung_up: HashSet<Target>,
    pub(super) notes: Vec<String>,
    /// Active mode: the VM whose guest-tagged samples are held back (with their vCPU index)
    /// for the merge with the helper's view.
    pub(super) active_vm: Option<VmId>,
    pub(super) host_tagged: Vec<(hvprof_perf::Sample, u32)>,
    pub(super) ring_notes: usize,
    /// Active mode: the merged guest samples and the guest's view (for the recording).
    pub(super) active_samples: Vec<Attributed>,
    pub(super) guest_views: Vec<(i32, GuestView)>,
}

/// Notes kept from ring errors and corrupt data; past this, they are counted.
const MAX_RING_NOTES: usize = 20;

impl Sink {
    /// Adds a note about ring data, bounded: a stream of corrupt batches must not grow the
    /// report without limit.
    fn ring_note(&mut self, n: String) {
        self.ring_notes += 1;
        if self.ring_notes <= MAX_RING_NOTES {
            self.notes.push(n);
        } else if self.ring_notes == MAX_RING_NOTES + 1 {
            self.notes.push(format!(
                "more ring errors after the first {MAX_RING_NOTES} were counted, not listed"
            ));
        }
    }

    pub(super) fn handle(&mut self, b: Batch) -> Result<()> {
        let (target, bytes) = match b {
            Batch::Records { target, bytes } => (target, bytes),
            Batch::Hangup { target } => {
                self.hung_up.insert(target);
                return Ok(());
            }
            Batch::Error { target, message } => {
                self.ring_note(format!("{target}: {message}"));
                return Ok(());
            }
        };
        let r = self.records(target, &bytes);
        self.pool.give(bytes);
        r
    }

    /// One batch of ring records: written to the recording, decoded and attributed.
    fn records(&mut self, target: Target, bytes: &[u8]) -> Result<()> {
        // Losses belong to the ring's thread; a per-CPU ring's (tid -1) to no thread: the
        // kernel stamps a LOST record with whatever task runs when it is written.
        let owner_tid = |t: Target| match t {
            Target::Thread(tid) => tid,
            Target::Cpu(_) => -1,
        };
        let recording = self.writer.is_some();
        if let Some(w) = self.writer.as_mut() {
            w.write(bytes)?;
        }
        // A recording is attributed at report time: its bytes need no decoding here, unless
        // active mode holds back the VM's guest-tagged samples.
        if recording && self.active_vm.is_none() {
            return Ok(());
        }
        let decoder = self.decoder;
        for r in decoder.records(bytes) {
            match r {
                Record::Sample(rec) => {
                    let s = rec.sample;
                    if let (Some(vm), true) = (self.active_vm, s.cpumode.is_guest()) {
                        let vcpu = match self.attributor.machines().thread(s.tid) {
                            Some((g, Some(t))) if g.id == vm => t.vcpu,
                            _ => None,
                        };
                        if let Some(i) = vcpu {
                            self.host_tagged.push((s, i));
                            continue;
                        }
                    }
                    if !recording {
                        self.attributor.attribute_record_into(&rec, &mut self.agg);
                    }
                }
                Record::Lost { lost, .. } | Record::LostSamples { lost, .. } => {
                    self.agg.add_lost(owner_tid(target), lost);
                }
                Record::Throttle {
                    throttled: true, ..
                } => self.agg.add_throttle(owner_tid(target)),
                Record::Corrupt {
                    offset,
                    skipped,
                    reason,
                } => {
                    self.ring_note(format!(
                        "{target}: {skipped} bytes of corrupt ring data at offset {offset} skipped ({reason})"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Active mode: merges what the helper told with the held-back guest-tagged samples.
    pub(super) fn finish_active(
        &mut self,
        session: crate::active::ActiveSession,
        vm: i32,
    ) -> Result<()> {
        let held = std::mem::take(&mut self.host_tagged);
        let out = session.finish(&held);
        let in_class_table = !held.is_empty();
        if in_class_table {
            for (a, _) in &out.attributed {
                self.agg.add(a);
                if self.writer.is_some() {
                    self.active_samples.push(a.clone());
                }
            }
        } else {
            self.notes.push(format!(
                "VM {vm}: this host reports no guest IPs for the VM (QEMU TCG, or a host that hides them): the guest breakdown comes from the in-guest helper's own sampling ({} samples at {} Hz) and is shown beside the host's classes, not added to them",
                out.attributed.len(),
                out.summary.sampling_hz
            ));
        }
        self.notes.extend(out.notes.iter().cloned());
        let view = crate::report::GuestView {
            summary: out.summary,
            processes: out.processes,
            samples: out.attributed.len() as u64,
            in_class_table,
            stacks: out.stacks,
        };
        self.guest_views.push((vm, view.clone()));
        self.agg.set_guest_view(VmId::Vmm(vm), view);
        Ok(())
    }
}
