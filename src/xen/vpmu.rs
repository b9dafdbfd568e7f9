//! Xen's vPMU path: dom0's perf samples of other domains, re-homed to their domain and vCPU
//! through the xentrace timeline, then attributed and aggregated like every other sample.
//!
//! With `vpmu=on` and `/sys/hypervisor/pmu/pmu_mode` = `all`, Xen forwards PMU interrupts of
//! every domain to dom0; Linux's `xen_guest_state()` (arch/x86/xen/pmu.c) marks those taken
//! outside dom0 as guest kernel/user samples but perf gets no domain id (the `xen_pmu_data`
//! page that has it, pmu.h, stays inside the interrupt handler). Each guest-mode sample's pCPU
//! and time, looked up in the pCPU × time timeline ([`super::xentrace::timeline`]), name the
//! domain and vCPU; the sample then carries that vCPU's synthetic thread
//! ([`super::domains::vcpu_tid`]) into the one [`Attributor`] and [`Aggregator`].
//!
//! ```no_run
//! # use hvprof::xen::vpmu::attribute_records;
//! # fn f(d: &hvprof::perf::RecordDecoder, b: &[u8], t: &hvprof::xen::xentrace::timeline::Timeline,
//! #      c: &hvprof::xen::xentrace::timeline::TscClock, a: &mut hvprof::attribute::Attributor,
//! #      g: &mut hvprof::aggregate::Aggregator) {
//! let stats = attribute_records(d, b, t, c, a, g);
//! println!("{} samples placed in domains", stats.rehomed);
//! # }
//! ```

use hvprof_perf::{Record, RecordDecoder};
use serde::Serialize;

use super::xentrace::timeline::{rehome_vpmu_sample, Timeline, TscClock};
use crate::aggregate::Aggregator;
use crate::attribute::Attributor;

/// What happened to the samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VpmuStats {
    /// Guest-mode samples placed in a domain's vCPU.
    pub rehomed: u64,
    /// Host-mode samples (dom0 and Xen itself), attributed as they are.
    pub host: u64,
    /// Guest-mode samples at a pCPU and time no timeline segment covers: attributed to an
    /// unknown guest, never to a guessed one.
    pub unplaced: u64,
}

/// Decodes dom0's perf records in `bytes`, re-homes guest-mode samples through `timeline`
/// and attributes every sample into `agg`.
pub fn attribute_records(
    decoder: &RecordDecoder,
    bytes: &[u8],
    timeline: &Timeline,
    clock: &TscClock,
    attributor: &mut Attributor,
    agg: &mut Aggregator,
) -> VpmuStats {
    let mut st = VpmuStats::default();
    for rec in decoder.records(bytes) {
        let Record::Sample(r) = rec else { continue };
        let s = r.sample;
        if !s.cpumode.is_guest() {
            st.host += 1;
            attributor.attribute_into(&s, agg);
            continue;
        }
        match rehome_vpmu_sample(&s, timeline, clock) {
            Some(h) => {
                st.rehomed += 1;
                attributor.attribute_into(&h, agg);
            }
            None => {
                st.unplaced += 1;
                attributor.attribute_into(&s, agg);
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    use hvprof_perf::record::encode;
    use hvprof_perf::CpuMode;
    use hvprof_symbols::Kallsyms;

    use crate::attribute::HostSymbols;
    use crate::model::VmId;
    use crate::xen::domains::{discover, to_machines};
    use crate::xen::xenstore::MapStore;
    use crate::xen::xentrace::parse::TraceWriter;
    use crate::xen::xentrace::runstate::summarize;
    use crate::xen::xentrace::timeline::XenPmuDataHeader;

    /// A `xen_pmu_data` page (pmu.h) as Xen fills it for an interrupt of (domain, vCPU) on
    /// pCPU: the test's ground truth.
    fn pmu_page(domain: u16, vcpu: u32, pcpu: u32) -> Vec<u8> {
        let mut p = vec![0u8; 4096];
        p[0..4].copy_from_slice(&vcpu.to_le_bytes());
        p[4..8].copy_from_slice(&pcpu.to_le_bytes());
        p[8..10].copy_from_slice(&domain.to_le_bytes());
        p
    }

    #[test]
    fn vpmu_samples_land_in_the_domain_that_ran() {
        // pCPU 0: domain 1 vCPU 0 on [1000, 2000), domain 2 vCPU 1 on [2000, 3000), idle after.
        // pCPU 1: domain 2 vCPU 0 on [1500, 3000).
        let mut w = TraceWriter::new();
        w.cpu_change(0, 0)
            .runstate(1000, 1, 0, 1, 0)
            .runstate(2000, 1, 0, 0, 2)
            .runstate(2000, 2, 1, 1, 0)
            .runstate(3000, 2, 1, 0, 2);
        w.cpu_change(1, 0)
            .runstate(1500, 2, 0, 1, 0)
            .runstate(3000, 2, 0, 0, 1);
        let trace = summarize(&w.bytes);
        // 1 GHz TSC, perf time 0 = TSC 0: ns = cycles.
        let clock = TscClock {
            tsc_khz: 1_000_000,
            ns0: 0,
            tsc0: 0,
        };
        let store = MapStore::new([
            ("/local/domain/1/name", "one"),
            ("/local/domain/1/cpu/0/availability", "online"),
            ("/local/domain/2/name", "two"),
            ("/local/domain/2/cpu/0/availability", "online"),
            ("/local/domain/2/cpu/1/availability", "online"),
        ]);
        let mut machines = to_machines(&discover(&store, None), false);
        let k1 = Kallsyms::parse("ffffffff81000000 T one_kernel_fn\nffffffff81100000 T _etext\n")
            .unwrap();
        let k2 = Kallsyms::parse("ffffffff81000000 T two_kernel_fn\nffffffff81100000 T _etext\n")
            .unwrap();
        machines.set_guest_kernel_symbols(Some(VmId::XenDomain(1)), Arc::new(k1));
        machines.set_guest_kernel_symbols(Some(VmId::XenDomain(2)), Arc::new(k2));
        let machines = Arc::new(machines);
        // dom0's samples: guest kernel at the same guest IP from different domains (pid/tid are
        // whatever dom0 thread was current: 0), one dom0 kernel sample, one at a time no
        // domain ran.
        let mut bytes = Vec::new();
        let mut truth = Vec::new();
        for (t, cpu, dom, vcpu) in [
            (1100, 0, 1, 0),
            (1900, 0, 1, 0),
            (2500, 0, 2, 1),
            (1600, 1, 2, 0),
            (2999, 1, 2, 0),
        ] {
            encode::sample(
                &mut bytes,
                CpuMode::GuestKernel,
                0xffff_ffff_8100_0040,
                0,
                0,
                t,
                cpu,
                1,
            );
            truth.push(pmu_page(dom, vcpu, cpu));
        }
        encode::sample(
            &mut bytes,
            CpuMode::Kernel,
            0xffff_ffff_8200_0000,
            0,
            0,
            1200,
            0,
            1,
        );
        encode::sample(
            &mut bytes,
            CpuMode::GuestKernel,
            0xffff_ffff_8100_0040,
            0,
            0,
            3500,
            0,
            1,
        );
        let decoder = RecordDecoder::new(hvprof_perf::abi::HVPROF_SAMPLE_TYPE);
        // The timeline agrees with what Xen's PMU page said for every sample.
        for (rec, page) in decoder.records(&bytes).zip(&truth) {
            let Record::Sample(r) = rec else { panic!() };
            let h = XenPmuDataHeader::parse(page).unwrap();
            let seg = trace
                .timeline
                .at(r.sample.cpu, clock.tsc_at(r.sample.time_ns))
                .unwrap();
            assert_eq!(
                (seg.domid, seg.vcpu, r.sample.cpu),
                (h.domain_id as u32, h.vcpu_id, h.pcpu_id)
            );
        }
        let mut attributor = Attributor::new(
            HostSymbols::default(),
            Path::new("/proc"),
            Arc::clone(&machines),
        );
        let mut agg = Aggregator::new(Arc::clone(&machines));
        let st = attribute_records(
            &decoder,
            &bytes,
            &trace.timeline,
            &clock,
            &mut attributor,
            &mut agg,
        );
        assert_eq!(
            st,
            VpmuStats {
                rehomed: 5,
                host: 1,
                unplaced: 1
            }
        );
        let meta = crate::report::Meta {
            event: "cycles".into(),
            rate: crate::counters::Rate::Period(1),
            period_is_ns: false,
            duration_ns: 1,
            mode: "xen-dom0".into(),
            host: String::new(),
            kernel: String::new(),
            start_unix_ns: 0,
        };
        let p = agg.snapshot(meta, Some((false, String::new())), usize::MAX);
        let vm = |id| p.vms.iter().find(|v| v.id == VmId::XenDomain(id)).unwrap();
        assert_eq!(vm(1).samples, 2);
        assert_eq!(vm(2).samples, 3);
        assert_eq!(vm(1).top_symbols[0].symbol.name, "one_kernel_fn");
        assert_eq!(vm(2).top_symbols[0].symbol.name, "two_kernel_fn");
        let v2: Vec<(Option<u32>, u64)> = vm(2).vcpus.iter().map(|t| (t.vcpu, t.samples)).collect();
        assert_eq!(v2, [(Some(0), 2), (Some(1), 1)]);
    }
}
