//! `hvprof record --domain` in dom0: domains discovered ([`super::domains`]), their vCPUs
//! sampled from outside ([`super::vcpu_sampler`]), every sample through the one
//! [`Attributor`] and [`Aggregator`] with a guest machine per domain
//! ([`crate::model::VmId::XenDomain`]), and the same [`Profile`] every renderer reads.
//!
//! Guest symbols are passive mode's: a map per domain (`--guest-kallsyms [DOMID=]FILE`, a
//! System.map or a non-PIE ELF, merged per domain: [`super::guest_symbols`]) names guest
//! kernel IPs and the guest user IPs it covers.
//!
//! ```no_run
//! use hvprof::xen::record::{record, XenRecordOptions};
//! let out = record(&XenRecordOptions::default())?;
//! println!("{} samples", out.profile.total_samples);
//! # Ok::<(), hvprof::xen::XenError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::domains::{self, vcpu_tid, Domain};
use super::error::{Result, XenError};
use super::ffi::{VcpuSource, XenCtrl, XenStoreLib};
use super::guest_symbols::load_map;
use super::vcpu_sampler::{sample_vcpus, SamplerOptions, SamplerReport};
use super::xenstore::Store;
use crate::aggregate::Aggregator;
use crate::attribute::{Attributor, HostSymbols};
use crate::counters::Rate;
use crate::model::{Machines, VmId};
use crate::report::{Meta, Profile};

/// What to record.
#[derive(Debug, Clone)]
pub struct XenRecordOptions {
    /// Domains by domid or name; empty: every domain but dom0.
    pub domains: Vec<String>,
    /// Guest symbol files: (domid, file), or (None, file) for every domain; System.map-style
    /// or non-PIE ELF, merged per domain.
    pub guest_kallsyms: Vec<(Option<u32>, PathBuf)>,
    /// The sampler's rate, duration, cost bound and stop.
    pub sampler: SamplerOptions,
    /// How long to watch the domains' CPU time before sampling (the slowdown's baseline); zero
    /// measures no slowdown.
    pub baseline: std::time::Duration,
    /// Run xentrace (scheduler records) while sampling to measure the vCPUs' pause time (needs
    /// a duration).
    pub measure_pause: bool,
}

impl Default for XenRecordOptions {
    fn default() -> XenRecordOptions {
        XenRecordOptions {
            domains: Vec::new(),
            guest_kallsyms: Vec::new(),
            sampler: SamplerOptions::default(),
            baseline: std::time::Duration::from_secs(2),
            measure_pause: true,
        }
    }
}

/// A recording's result.
#[derive(Debug, Clone)]
pub struct XenRecordOutcome {
    /// The profile (per domain, vCPU, class, symbol).
    pub profile: Profile,
    /// What sampling cost.
    pub sampler: SamplerReport,
    /// The sampled domains' CPU time per second while sampled, relative to the baseline before:
    /// `1 - during / before` (0.03 = 3 % slower). `None` without a baseline.
    pub slowdown: Option<f64>,
    /// The sampled vCPUs' pause time, from xentrace, when measured.
    pub pause: Option<PauseCost>,
}

/// Records in this dom0: libxenstore and libxenctrl are loaded, the domains found and sampled.
///
/// # Errors
/// Not dom0 or the Xen libraries missing ([`XenError::LibraryMissing`], [`XenError::NotDom0`]),
/// a `--domain` that names no domain, an unreadable symbol file.
pub fn record(opts: &XenRecordOptions) -> Result<XenRecordOutcome> {
    super::check_dom0(Path::new("/")).map_err(XenError::NotDom0)?;
    let store = XenStoreLib::open()?;
    let mut ctl = XenCtrl::open()?;
    record_with(&store, &mut ctl, opts)
}

/// [`record`] over any xenstore and hypervisor access (tests use tables).
///
/// # Errors
/// As [`record`], less the library loading.
pub fn record_with(
    store: &dyn Store,
    ctl: &mut dyn VcpuSource,
    opts: &XenRecordOptions,
) -> Result<XenRecordOutcome> {
    let all = domains::discover(store, Some(&mut *ctl));
    let chosen: Vec<Domain> = if opts.domains.is_empty() {
        all.iter().filter(|d| d.domid != 0).cloned().collect()
    } else {
        opts.domains
            .iter()
            .map(|w| {
                domains::find(&all, w)
                    .cloned()
                    .ok_or_else(|| XenError::NoSuchDomain(w.clone()))
            })
            .collect::<Result<_>>()?
    };
    let mut machines = domains::to_machines(&chosen, true);
    // Files per domain (None: every domain), merged into one map each.
    let mut by_domain: std::collections::BTreeMap<Option<u32>, Vec<PathBuf>> = Default::default();
    for (domid, path) in &opts.guest_kallsyms {
        by_domain.entry(*domid).or_default().push(path.clone());
    }
    for (domid, files) in by_domain {
        let k = load_map(&files)?;
        machines.set_guest_kernel_symbols(domid.map(VmId::XenDomain), Arc::new(k));
    }
    let machines: Arc<Machines> = Arc::new(machines);
    let mut attributor = Attributor::new(
        HostSymbols::default(),
        Path::new("/proc"),
        Arc::clone(&machines),
    );
    let mut agg = Aggregator::new(Arc::clone(&machines));
    let targets: Vec<(u32, Vec<u32>)> = chosen
        .iter()
        .map(|d| (d.domid, d.vcpus.iter().map(|v| v.index).collect()))
        .collect();
    // Baseline: the domains' CPU time per second before sampling, to measure the slowdown.
    let base0 = (std::time::Instant::now(), cpu_times(ctl, &targets));
    if !opts.baseline.is_zero() {
        opts.sampler.stop.sleep(opts.baseline);
    }
    let cpu_before = cpu_times(ctl, &targets);
    let base_rate = rate(&base0.1, &cpu_before, base0.0.elapsed());
    let t_sampling = std::time::Instant::now();
    let start_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // The guest's cost, measured: xentrace's scheduler records during sampling show how long
    // each sampled vCPU sat paused (runstate offline).
    let tracer = match (opts.measure_pause, opts.sampler.duration) {
        (true, Some(d)) => Some(std::thread::spawn(move || {
            super::xentrace::record(super::xentrace::TRC_SCHED, d, &std::env::temp_dir())
        })),
        _ => None,
    };
    let sampler = sample_vcpus(ctl, &targets, &opts.sampler, &mut |s| {
        attributor.attribute_into(&s, &mut agg)
    });
    let pause = tracer.map(|t| match t.join() {
        Ok(Ok(bytes)) => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            Ok(paused_share(&bytes, &targets, &cpuinfo))
        }
        Ok(Err(e)) => Err(crate::error_chain(&e)),
        Err(_) => Err("the xentrace thread panicked".to_string()),
    });
    match &pause {
        Some(Ok(p)) => agg.note(p.describe()),
        Some(Err(e)) => agg.note(format!("pause time not measured: {e}")),
        None => {}
    }
    let cpu_after = cpu_times(ctl, &targets);
    let sampled_rate = rate(&cpu_before, &cpu_after, t_sampling.elapsed());
    let slowdown = match (base_rate, sampled_rate) {
        (Some(b), Some(d)) if b > 0.0 && !opts.baseline.is_zero() => Some(1.0 - d / b),
        _ => None,
    };
    if let (Some(x), Some(b), Some(d)) = (slowdown, base_rate, sampled_rate) {
        agg.note(format!(
            "Measured slowdown of the sampled domains: their vCPUs ran {:.3} s of CPU per second while sampled against {:.3} s/s in the {:.1} s before (baseline), {:.1} % less (this includes the pCPU time hvprof itself takes in dom0, and the noise of other dom0 work; it reads as the guest's slowdown only when the guest is CPU-bound)",
            d,
            b,
            opts.baseline.as_secs_f64(),
            x * 100.0
        ));
    }
    for ((d, v), after) in cpu_after {
        let before = cpu_before
            .iter()
            .find(|(k, _)| *k == (d, v))
            .map(|(_, t)| *t);
        if let (Some(b), Some(tid)) = (before, vcpu_tid(d, v)) {
            agg.set_on_cpu(tid, after.saturating_sub(b));
        }
    }
    agg.note(sampler.describe());
    let uts = nix::sys::utsname::uname().ok();
    let meta = Meta {
        event: "xen-vcpu-context".into(),
        rate: Rate::Frequency(sampler.hz_used.round().max(1.0) as u64),
        period_is_ns: true,
        duration_ns: sampler.elapsed_ns,
        mode: "xen-dom0".into(),
        host: uts
            .as_ref()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default(),
        kernel: uts
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        start_unix_ns,
    };
    let profile = agg.snapshot(meta, Some((false, String::new())), usize::MAX);
    Ok(XenRecordOutcome {
        profile,
        sampler,
        slowdown,
        pause: pause.and_then(|p| p.ok()),
    })
}

/// How long the sampled vCPUs sat paused while sampled, from xentrace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PauseCost {
    /// Sum over the sampled vCPUs of their offline runstate time, ns.
    pub offline_ns: u64,
    /// The largest share of one vCPU's traced time spent offline.
    pub worst_share: f64,
    /// The traced span, ns.
    pub span_ns: u64,
}

impl PauseCost {
    /// One sentence for the report.
    pub fn describe(&self) -> String {
        format!(
            "Measured pause (xentrace runstate offline of the sampled vCPUs): {:.3} ms in all over {:.1} s; the most paused vCPU lost {:.3} % of its time",
            self.offline_ns as f64 / 1e6,
            self.span_ns as f64 / 1e9,
            self.worst_share * 100.0
        )
    }
}

/// The offline time of `targets`' vCPUs in a trace (a paused vCPU is offline: Xen's
/// `schedule()` sets RUNSTATE_offline for a vCPU neither runnable nor blocked).
pub fn paused_share(trace: &[u8], targets: &[(u32, Vec<u32>)], cpuinfo: &str) -> PauseCost {
    let s = super::xentrace::runstate::summarize(trace);
    let span = s.span_cycles();
    let (khz, _) = super::stat::tsc_khz(cpuinfo, span, std::time::Duration::ZERO);
    let ns = |c: u64| {
        if khz == 0 {
            0
        } else {
            (c as u128 * 1_000_000 / khz as u128).min(u64::MAX as u128) as u64
        }
    };
    let mut offline = 0u64;
    let mut worst = 0f64;
    for (d, vs) in targets {
        for v in vs {
            let c = s.vcpus.get(&(*d, *v)).map_or(0, |r| r.cycles[3]);
            offline = offline.saturating_add(c);
            if span > 0 {
                worst = worst.max(c as f64 / span as f64);
            }
        }
    }
    PauseCost {
        offline_ns: ns(offline),
        worst_share: worst,
        span_ns: ns(span),
    }
}

/// CPU seconds per wall second of all vCPUs between two readings of [`cpu_times`] (vCPUs in
/// both only).
fn rate(
    a: &[((u32, u32), u64)],
    b: &[((u32, u32), u64)],
    wall: std::time::Duration,
) -> Option<f64> {
    if wall.is_zero() || a.is_empty() {
        return None;
    }
    let ns: u64 = b
        .iter()
        .filter_map(|(k, t)| Some(t.saturating_sub(a.iter().find(|(j, _)| j == k)?.1)))
        .sum();
    Some(ns as f64 / wall.as_nanos() as f64)
}

/// Each vCPU's CPU time now (ns), for the vCPUs the hypervisor answers for.
fn cpu_times(ctl: &mut dyn VcpuSource, targets: &[(u32, Vec<u32>)]) -> Vec<((u32, u32), u64)> {
    let mut v = Vec::new();
    for (d, vcpus) in targets {
        for &i in vcpus {
            if let Ok(info) = ctl.vcpu_info(*d, i) {
                v.push(((*d, i), info.cpu_time_ns));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::Class;
    use crate::xen::abi::VcpuRegs;
    use crate::xen::ffi::VcpuInfo;
    use crate::xen::xenstore::MapStore;
    use std::io::Write;
    use std::time::Duration;

    /// Domain 1's vCPU 0 runs user code at three IPs 60/30/10 and kernel code in between.
    struct Guest {
        n: u64,
    }
    impl VcpuSource for Guest {
        fn vcpu_info(&mut self, _: u32, vcpu: u32) -> Result<VcpuInfo> {
            Ok(VcpuInfo {
                online: true,
                blocked: vcpu == 1,
                running: vcpu == 0,
                cpu_time_ns: self.n * 1_000_000,
                pcpu: 0,
            })
        }
        fn vcpu_regs(&mut self, _: u32, _: u32) -> Result<VcpuRegs> {
            self.n += 1;
            let rip = match self.n % 10 {
                0..=5 => 0x40_1010,
                6..=8 => 0x40_2010,
                _ => 0x40_3010,
            };
            Ok(VcpuRegs {
                rip,
                cs: 0xe033,
                ..VcpuRegs::default()
            })
        }
    }

    #[test]
    fn pause_is_the_offline_time_of_the_sampled_vcpus() {
        use crate::xen::xentrace::parse::TraceWriter;
        // 1 GHz: vCPU 0 of domain 1 paused twice (running → offline → runnable → running).
        let mut w = TraceWriter::new();
        w.cpu_change(0, 0)
            .runstate(0, 1, 0, 1, 0)
            .runstate(1_000_000, 1, 0, 0, 3)
            .runstate(1_050_000, 1, 0, 3, 1)
            .runstate(1_060_000, 1, 0, 1, 0)
            .runstate(5_000_000, 1, 0, 0, 3)
            .runstate(5_150_000, 1, 0, 3, 0)
            .runstate(10_000_000, 2, 0, 0, 3);
        let p = paused_share(&w.bytes, &[(1, vec![0, 1])], "cpu MHz : 1000.0");
        assert_eq!(p.offline_ns, 200_000);
        assert_eq!(p.span_ns, 10_000_000);
        assert!((p.worst_share - 0.02).abs() < 1e-9);
        assert!(p.describe().contains("0.200 ms"), "{}", p.describe());
    }

    #[test]
    fn cpu_rate_between_readings() {
        let a = [((1, 0), 1_000_000_000), ((1, 1), 0)];
        let b = [((1, 0), 1_500_000_000), ((1, 1), 250_000_000), ((2, 0), 9)];
        let r = rate(&a, &b, Duration::from_secs(1)).unwrap();
        assert!((r - 0.75).abs() < 1e-9, "{r}");
        assert_eq!(rate(&a, &b, Duration::ZERO), None);
        assert_eq!(rate(&[], &b, Duration::from_secs(1)), None);
    }

    #[test]
    fn samples_go_through_the_one_attribution_path() {
        let mut syms = tempfile::NamedTempFile::new().unwrap();
        writeln!(syms, "0000000000401000 T hot_alpha\n0000000000402000 T hot_beta\n0000000000403000 T hot_gamma\n0000000000404000 T _end").unwrap();
        let store = MapStore::new([
            ("/local/domain/0/name", "Domain-0"),
            ("/local/domain/1/name", "domu"),
            ("/local/domain/1/cpu/0/availability", "online"),
            ("/local/domain/1/cpu/1/availability", "online"),
        ]);
        let opts = XenRecordOptions {
            domains: vec!["domu".into()],
            guest_kallsyms: vec![(Some(1), syms.path().to_path_buf())],
            sampler: SamplerOptions {
                hz: 1000,
                duration: Some(Duration::from_millis(300)),
                max_cost: 0.5,
                ..SamplerOptions::default()
            },
            baseline: Duration::from_millis(50),
            measure_pause: false,
        };
        let out = record_with(&store, &mut Guest { n: 0 }, &opts).unwrap();
        let p = &out.profile;
        assert_eq!(p.vms.len(), 1);
        let vm = &p.vms[0];
        assert_eq!(vm.id, VmId::XenDomain(1));
        assert!(vm.samples >= 20, "{}", vm.samples);
        let share = |name: &str| {
            vm.top_symbols
                .iter()
                .filter(|r| r.symbol.name == name)
                .map(|r| r.samples)
                .sum::<u64>() as f64
                / vm.samples as f64
        };
        assert!(
            (share("hot_alpha") - 0.6).abs() < 0.1,
            "{:?}",
            vm.top_symbols
        );
        assert!((share("hot_beta") - 0.3).abs() < 0.1);
        assert!(vm.classes.iter().all(|c| c.class == Class::GuestUser));
        assert_eq!(
            vm.vcpus
                .iter()
                .find(|t| t.vcpu == Some(0))
                .map(|t| t.samples),
            Some(vm.samples)
        );
        assert!(p.notes.iter().any(|n| n.contains("not PMU samples")));
        // The fake's CPU time only grows while it is sampled: no baseline rate, no slowdown.
        assert_eq!(out.slowdown, None);
        let err = record_with(
            &store,
            &mut Guest { n: 0 },
            &XenRecordOptions {
                domains: vec!["nope".into()],
                ..opts
            },
        )
        .unwrap_err();
        assert!(matches!(err, XenError::NoSuchDomain(_)));
    }
}
