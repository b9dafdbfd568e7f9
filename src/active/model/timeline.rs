//! The context-switch timeline of each guest CPU: who ran from which guest instant on; the
//! handler of `Switches` messages and what a disconnect does to the timelines.

use hvprof_proto::WireSwitch;

use super::{limit, GuestModel, ModelError};

/// Who was on a guest CPU from an instant on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCpu {
    /// This task was switched in.
    Task {
        /// pid.
        pid: u32,
        /// tid.
        tid: u32,
    },
    /// Not known (switched out, data lost, or the helper reconnected).
    Unknown,
}

/// A guest CPU's switch timeline: `(time, who from then on)`, sorted by time (guest
/// event-clock ns).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    entries: Vec<(u64, OnCpu)>,
    dropped: u64,
}

impl Timeline {
    /// Inserts an entry, keeping time order (appends in the common case). Returns false (and
    /// counts it dropped) when the timeline already holds `max` entries.
    pub fn insert(&mut self, time: u64, who: OnCpu, max: usize) -> bool {
        if self.entries.len() >= max {
            self.dropped += 1;
            return false;
        }
        let i = self.entries.partition_point(|e| e.0 <= time);
        self.entries.insert(i, (time, who));
        true
    }

    /// Who ran at `time`; None before the first entry.
    pub fn at(&self, time: u64) -> Option<OnCpu> {
        let i = self.entries.partition_point(|e| e.0 <= time);
        i.checked_sub(1).map(|i| self.entries[i].1)
    }

    /// True when an entry lies within `±err` of `time` (the lookup may be off by a switch).
    pub fn switch_near(&self, time: u64, err: u64) -> bool {
        let lo = time.saturating_sub(err);
        let i = self.entries.partition_point(|e| e.0 < lo);
        self.entries
            .get(i)
            .is_some_and(|e| e.0 <= time.saturating_add(err))
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Time of the last entry.
    pub fn last_time(&self) -> Option<u64> {
        self.entries.last().map(|e| e.0)
    }
}

impl GuestModel {
    /// A batch of context switches, each put on its CPU's timeline.
    pub(super) fn on_switches(&mut self, v: Vec<WireSwitch>) -> Result<(), ModelError> {
        let max = self.budget.max_switches_per_cpu;
        let max_cpus = self.budget.max_cpus;
        self.stats.switches += v.len() as u64;
        for s in v {
            if s.cpu >= max_cpus {
                return Err(limit(format!("switch on guest cpu {}", s.cpu)));
            }
            self.see_time(s.time);
            let who = if s.out {
                OnCpu::Unknown
            } else {
                OnCpu::Task {
                    pid: s.pid,
                    tid: s.tid,
                }
            };
            if !self.timelines.contains_key(&s.cpu) {
                self.charge(64)?;
            }
            let tl = self.timelines.entry(s.cpu).or_default();
            if tl.insert(s.time, who, max) {
                self.bytes = self.bytes.saturating_add(24);
            } else {
                self.stats.switches_dropped += 1;
            }
        }
        if self.bytes > self.budget.max_bytes {
            return Err(limit(
                "switch timelines exceed the host memory budget".into(),
            ));
        }
        Ok(())
    }

    /// The connection to the helper ended: from the last guest time seen, every CPU's
    /// occupant is unknown until its next switch (switches during the gap are lost).
    pub fn disconnected(&mut self) {
        let t = self.max_time;
        let max = self.budget.max_switches_per_cpu;
        for tl in self.timelines.values_mut() {
            if tl.entries.last().is_some_and(|e| e.1 != OnCpu::Unknown) {
                tl.insert(t, OnCpu::Unknown, max);
            }
        }
        self.ready = false;
    }

    /// The timeline of guest CPU `cpu`.
    pub fn timeline(&self, cpu: u32) -> Option<&Timeline> {
        self.timelines.get(&cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{hello, sw};
    use super::super::Budget;
    use super::*;
    use hvprof_proto::Message;

    #[test]
    fn timeline_lookup_before_first_switch_and_across_reconnect() {
        let mut m = GuestModel::new(1, Budget::default());
        m.apply(hello("b1")).unwrap();
        m.apply(Message::Switches(vec![
            sw(0, 100, 10, 11, false),
            sw(0, 200, 10, 11, true),
            sw(0, 200, 20, 21, false),
            // Out of order arrival is put in place.
            sw(0, 150, 10, 12, false),
        ]))
        .unwrap();
        let tl = m.timeline(0).unwrap();
        assert_eq!(tl.at(99), None, "before the first switch");
        assert_eq!(tl.at(100), Some(OnCpu::Task { pid: 10, tid: 11 }));
        assert_eq!(tl.at(160), Some(OnCpu::Task { pid: 10, tid: 12 }));
        assert_eq!(tl.at(200), Some(OnCpu::Task { pid: 20, tid: 21 }));
        assert_eq!(tl.at(1_000_000), Some(OnCpu::Task { pid: 20, tid: 21 }));
        assert!(tl.switch_near(195, 10));
        assert!(!tl.switch_near(180, 10));
        // The helper reconnects (same boot): unknown from the last time seen until the next
        // switch.
        m.disconnected();
        m.apply(hello("b1")).unwrap();
        m.apply(Message::Switches(vec![sw(0, 500, 30, 31, false)]))
            .unwrap();
        let tl = m.timeline(0).unwrap();
        assert_eq!(tl.at(199), Some(OnCpu::Task { pid: 10, tid: 12 }));
        assert_eq!(tl.at(300), Some(OnCpu::Unknown));
        assert_eq!(tl.at(500), Some(OnCpu::Task { pid: 30, tid: 31 }));
        // A reboot drops everything.
        m.apply(hello("b2")).unwrap();
        assert!(m.timeline(0).is_none());
        assert!(m.notes().iter().any(|n| n.contains("rebooted")));
    }
}
