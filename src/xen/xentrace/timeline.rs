//! Which (domain, vCPU) ran on which pCPU when: a pCPU × time → (domain, vCPU) timeline from
//! the scheduler's runstate changes, and its use for Xen's vPMU samples.
//!
//! With Xen's vPMU on (`vpmu=on`, `/sys/hypervisor/pmu/pmu_mode` = `all`), dom0's perf gets
//! PMU interrupts for other domains too, but Linux's `xen_guest_state()`
//! (arch/x86/xen/pmu.c) only says *guest* kernel/user: the sample has no domain id. The
//! sample's pCPU and time, looked up here, name the domain and vCPU that ran there.
//!
//! ```
//! use hvprof::xen::xentrace::timeline::{Segment, Timeline};
//! let mut t = Timeline::default();
//! t.push(0, Segment { start: 100, end: 200, domid: 1, vcpu: 0 });
//! assert_eq!(t.at(0, 150).map(|s| s.domid), Some(1));
//! assert!(t.at(0, 250).is_none());
//! ```

use std::collections::BTreeMap;

/// One span during which a vCPU was running on a pCPU, in TSC cycles (`[start, end)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First cycle.
    pub start: u64,
    /// Cycle after the last.
    pub end: u64,
    /// Its domain.
    pub domid: u32,
    /// Its vCPU.
    pub vcpu: u32,
}

/// Segments per pCPU, sorted by start, non-overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    by_pcpu: BTreeMap<u32, Vec<Segment>>,
}

/// Segments kept at most (a trace of hours; more are dropped and counted by the caller).
pub const MAX_SEGMENTS: usize = 1 << 24;

impl Timeline {
    /// Appends a segment of `pcpu` (segments arrive in time order per pCPU; one that starts
    /// before the previous one's end is clipped to it, and dropped when nothing is left).
    pub fn push(&mut self, pcpu: u32, mut s: Segment) -> bool {
        let v = self.by_pcpu.entry(pcpu).or_default();
        if let Some(last) = v.last() {
            s.start = s.start.max(last.end);
        }
        if s.end <= s.start || v.len() >= MAX_SEGMENTS {
            return false;
        }
        v.push(s);
        true
    }

    /// The segment running on `pcpu` at cycle `tsc`.
    pub fn at(&self, pcpu: u32, tsc: u64) -> Option<&Segment> {
        let v = self.by_pcpu.get(&pcpu)?;
        let i = v.partition_point(|s| s.start <= tsc);
        let s = v.get(i.checked_sub(1)?)?;
        (tsc < s.end).then_some(s)
    }

    /// Segments of every pCPU.
    pub fn len(&self) -> usize {
        self.by_pcpu.values().map(Vec::len).sum()
    }

    /// No segment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pCPUs with segments.
    pub fn pcpus(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_pcpu.keys().copied()
    }
}

/// The relation between dom0's perf clock (ns) and Xen's TSC: `tsc = (ns - ns0) * khz / 1e6 +
/// tsc0`. Dom0's perf clock under Xen is Linux's `local_clock`, fed by Xen's time info; a pair
/// of readings taken together and the TSC rate give the relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TscClock {
    /// TSC kHz.
    pub tsc_khz: u64,
    /// A perf time, ns.
    pub ns0: u64,
    /// The TSC at that time.
    pub tsc0: u64,
}

impl TscClock {
    /// The TSC at perf time `ns` (saturating).
    pub fn tsc_at(&self, ns: u64) -> u64 {
        let d = ns as i128 - self.ns0 as i128;
        let t = self.tsc0 as i128 + d * self.tsc_khz as i128 / 1_000_000;
        t.clamp(0, u64::MAX as i128) as u64
    }

    /// Cycles as ns.
    pub fn cycles_to_ns(&self, cycles: u64) -> u64 {
        if self.tsc_khz == 0 {
            return 0;
        }
        (cycles as u128 * 1_000_000 / self.tsc_khz as u128).min(u64::MAX as u128) as u64
    }
}

/// `struct xen_pmu_data`'s header (Xen 4.17, `xen/include/public/pmu.h`): `uint32_t vcpu_id;
/// uint32_t pcpu_id; domid_t domain_id; uint8_t pad[6];` then `xen_pmu_arch_t pmu`. This is the
/// per-pCPU page Xen shares with dom0's PMU interrupt handler; Linux does not pass it to perf,
/// so a test reads it to check the timeline's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XenPmuDataHeader {
    /// The interrupted vCPU.
    pub vcpu_id: u32,
    /// The pCPU.
    pub pcpu_id: u32,
    /// The interrupted vCPU's domain.
    pub domain_id: u16,
}

impl XenPmuDataHeader {
    /// Size of the header in bytes (the `pmu` member follows at offset 16).
    pub const SIZE: usize = 16;

    /// Reads the header from the start of a `xen_pmu_data` page; `None` when too short.
    pub fn parse(b: &[u8]) -> Option<XenPmuDataHeader> {
        let w = |i: usize| -> Option<[u8; 4]> { b.get(i..i + 4)?.try_into().ok() };
        Some(XenPmuDataHeader {
            vcpu_id: u32::from_le_bytes(w(0)?),
            pcpu_id: u32::from_le_bytes(w(4)?),
            domain_id: u16::from_le_bytes(b.get(8..10)?.try_into().ok()?),
        })
    }
}

/// Re-homes a guest-mode perf sample of dom0 (vPMU) to the domain and vCPU that ran on its
/// pCPU at its time: its `tid`/`pid` become the vCPU's synthetic thread
/// ([`crate::xen::domains::vcpu_tid`]) so the one attributor and aggregator account it to
/// that domain. `None` for host-mode samples, samples without a CPU, and times no segment
/// covers (counted by the caller as unattributed).
pub fn rehome_vpmu_sample(
    s: &hvprof_perf::Sample,
    timeline: &Timeline,
    clock: &TscClock,
) -> Option<hvprof_perf::Sample> {
    if !s.cpumode.is_guest() {
        return None;
    }
    let seg = timeline.at(s.cpu, clock.tsc_at(s.time_ns))?;
    let tid = crate::xen::domains::vcpu_tid(seg.domid, seg.vcpu)?;
    Some(hvprof_perf::Sample {
        pid: tid,
        tid,
        ..*s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_half_open_and_per_pcpu() {
        let mut t = Timeline::default();
        assert!(t.push(
            0,
            Segment {
                start: 10,
                end: 20,
                domid: 1,
                vcpu: 0
            }
        ));
        assert!(t.push(
            0,
            Segment {
                start: 20,
                end: 30,
                domid: 2,
                vcpu: 1
            }
        ));
        assert!(t.push(
            1,
            Segment {
                start: 5,
                end: 50,
                domid: 1,
                vcpu: 1
            }
        ));
        // Overlapping start is clipped; empty segment dropped.
        assert!(t.push(
            0,
            Segment {
                start: 25,
                end: 40,
                domid: 3,
                vcpu: 0
            }
        ));
        assert!(!t.push(
            0,
            Segment {
                start: 35,
                end: 40,
                domid: 3,
                vcpu: 0
            }
        ));
        assert_eq!(t.at(0, 9), None);
        assert_eq!(t.at(0, 10).map(|s| s.domid), Some(1));
        assert_eq!(t.at(0, 19).map(|s| s.domid), Some(1));
        assert_eq!(t.at(0, 20).map(|s| s.domid), Some(2));
        assert_eq!(t.at(0, 30).map(|s| s.domid), Some(3));
        assert_eq!(t.at(0, 40), None);
        assert_eq!(t.at(1, 30).map(|s| (s.domid, s.vcpu)), Some((1, 1)));
        assert_eq!(t.at(2, 30), None);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn clock_relation() {
        let c = TscClock {
            tsc_khz: 2_000_000,
            ns0: 1_000,
            tsc0: 10_000,
        };
        assert_eq!(c.tsc_at(1_000), 10_000);
        assert_eq!(c.tsc_at(2_000), 12_000);
        assert_eq!(c.tsc_at(0), 8_000);
        assert_eq!(c.cycles_to_ns(2_000), 1_000);
        assert_eq!(c.tsc_at(u64::MAX), u64::MAX);
    }

    #[test]
    fn pmu_data_header_per_pmu_h() {
        let mut page = vec![0u8; 64];
        page[0..4].copy_from_slice(&3u32.to_le_bytes());
        page[4..8].copy_from_slice(&1u32.to_le_bytes());
        page[8..10].copy_from_slice(&7u16.to_le_bytes());
        let h = XenPmuDataHeader::parse(&page).unwrap();
        assert_eq!((h.vcpu_id, h.pcpu_id, h.domain_id), (3, 1, 7));
        assert!(XenPmuDataHeader::parse(&page[..9]).is_none());
    }
}
