//! Timer samples of domU vCPUs taken from dom0: each running vCPU's instruction pointer read
//! through its vCPU context (`XEN_DOMCTL_getvcpucontext`, libxenctrl's `xc_vcpu_getcontext`),
//! at a bounded rate, as [`Sample`]s for the one attribution path.
//!
//! These are **not** PMU samples: hvprof wakes on a timer in dom0 and asks Xen for the vCPU's
//! registers; Xen pauses that vCPU while it copies them (`vcpu_pause` in
//! xen/common/domctl.c), so every sample costs the guest a pause. hvprof measures the time
//! each read takes (an upper bound of the pause) and keeps its share of the run under
//! [`SamplerOptions::max_cost`] by lowering the rate when reads are slow (as under TCG).
//! Ticks are jittered (±50 % of the period) so that they cannot alias with a guest's own
//! periodic work. A vCPU that `XEN_DOMCTL_getvcpuinfo` reports blocked is not sampled (its IP would be the
//! guest's idle hypercall) but counted.
//!
//! ```no_run
//! use hvprof::xen::{ffi::XenCtrl, vcpu_sampler::{sample_vcpus, SamplerOptions}};
//! let mut xc = XenCtrl::open()?;
//! let opts = SamplerOptions::default();
//! let report = sample_vcpus(&mut xc, &[(1, vec![0, 1])], &opts, &mut |s| println!("{:#x}", s.ip));
//! # Ok::<(), hvprof::xen::XenError>(())
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hvprof_perf::{CpuMode, Sample};
use hvprof_rt::StopToken;
use serde::Serialize;

use super::domains::vcpu_tid;
use super::ffi::VcpuSource;

/// Rates asked for are capped here (Hz per vCPU).
pub const MAX_HZ: u32 = 1000;

/// How to sample.
#[derive(Debug, Clone)]
pub struct SamplerOptions {
    /// Samples per second per vCPU asked for (at most [`MAX_HZ`]).
    pub hz: u32,
    /// How long; `None` until `stop`.
    pub duration: Option<Duration>,
    /// The largest share of each vCPU's wall time its context reads may take (0.02 = 2 %).
    pub max_cost: f64,
    /// Stops the run.
    pub stop: StopToken,
    /// Skip vCPUs the hypervisor reports blocked.
    pub skip_blocked: bool,
}

impl Default for SamplerOptions {
    fn default() -> SamplerOptions {
        SamplerOptions {
            hz: 100,
            duration: Some(Duration::from_secs(10)),
            max_cost: 0.02,
            stop: StopToken::new(),
            skip_blocked: true,
        }
    }
}

/// What one vCPU's sampling cost and gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct VcpuSampling {
    /// Samples taken.
    pub samples: u64,
    /// Ticks where the vCPU was blocked (not sampled).
    pub blocked: u64,
    /// Context reads that failed.
    pub failed: u64,
    /// Time spent in context reads, ns: an upper bound of the time Xen kept the vCPU paused.
    pub read_ns: u64,
}

/// A sampling run's account.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SamplerReport {
    /// Per (domid, vCPU).
    pub vcpus: BTreeMap<String, VcpuSampling>,
    /// Wall time, ns.
    pub elapsed_ns: u64,
    /// The rate asked for, Hz per vCPU.
    pub hz_asked: u32,
    /// The rate used at the end (lowered to keep the cost bound), Hz per vCPU.
    pub hz_used: f64,
    /// The cost bound, a share of wall time.
    pub max_cost: f64,
    /// The measured cost: the largest vCPU's read time over the wall time.
    pub cost: f64,
    /// Why it stopped.
    pub stopped_because: String,
}

impl SamplerReport {
    /// One paragraph for the user: what these samples are and what they cost.
    pub fn describe(&self) -> String {
        format!(
            "Timer samples taken from dom0 (not PMU samples): every {:.1} ms hvprof read each running vCPU's registers with XEN_DOMCTL_getvcpucontext, which pauses that vCPU while Xen copies them. The reads took {:.2} % of the busiest vCPU's time, an upper bound of its pause (bound {:.1} %; rate asked {} Hz, used {:.0} Hz per vCPU).",
            if self.hz_used > 0.0 { 1000.0 / self.hz_used } else { 0.0 },
            self.cost * 100.0,
            self.max_cost * 100.0,
            self.hz_asked,
            self.hz_used
        )
    }
}

/// Samples `targets` (domid, vCPUs) until the duration or `opts.stop`; each sample goes to
/// `out` with the vCPU's synthetic thread ([`vcpu_tid`]) as pid and tid, `period` the tick in
/// ns, cpumode guest kernel or guest user ([`super::abi::VcpuRegs::in_kernel`]) and
/// `time_ns` the time since the start.
pub fn sample_vcpus(
    ctl: &mut dyn VcpuSource,
    targets: &[(u32, Vec<u32>)],
    opts: &SamplerOptions,
    out: &mut dyn FnMut(Sample),
) -> SamplerReport {
    let start = Instant::now();
    let hz_asked = opts.hz.clamp(1, MAX_HZ);
    let mut hz = hz_asked as f64;
    let max_cost = opts.max_cost.clamp(0.0001, 0.5);
    let mut acc: BTreeMap<(u32, u32), VcpuSampling> = BTreeMap::new();
    let mut next = start;
    let mut jitter: u64 = 0x9e37_79b9_7f4a_7c15
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let stopped_because = loop {
        if let Some(d) = opts.duration {
            if start.elapsed() >= d {
                break format!("duration of {:.1} s reached", d.as_secs_f64());
            }
        }
        if opts.stop.is_stopped() {
            break opts.stop.reason().unwrap_or_default();
        }
        let now = Instant::now();
        if next > now && opts.stop.sleep(next - now) {
            continue;
        }
        let tick_ns = (1e9 / hz) as u64;
        // Jitter each gap by ±50 % (mean kept): a fixed period can alias with a guest's own
        // periodic work and over-sample one phase of it.
        jitter ^= jitter << 13;
        jitter ^= jitter >> 7;
        jitter ^= jitter << 17;
        let gap = tick_ns / 2 + jitter % tick_ns.max(1);
        next += Duration::from_nanos(gap);
        if next < Instant::now() {
            // Behind (a slow tick): do not burst to catch up.
            next = Instant::now();
        }
        let mut worst_read = 0u64;
        for (domid, vcpus) in targets {
            for &v in vcpus {
                let Some(tid) = vcpu_tid(*domid, v) else {
                    continue;
                };
                let a = acc.entry((*domid, v)).or_default();
                if opts.skip_blocked {
                    if let Ok(i) = ctl.vcpu_info(*domid, v) {
                        if i.blocked || !i.online {
                            a.blocked += 1;
                            continue;
                        }
                    }
                }
                let t0 = Instant::now();
                let r = ctl.vcpu_regs(*domid, v);
                let took = t0.elapsed().as_nanos() as u64;
                a.read_ns += took;
                worst_read = worst_read.max(took);
                match r {
                    Ok(regs) => {
                        a.samples += 1;
                        out(Sample {
                            ip: regs.rip,
                            pid: tid,
                            tid,
                            time_ns: start.elapsed().as_nanos() as u64,
                            cpu: 0,
                            period: tick_ns,
                            cpumode: if regs.in_kernel() {
                                CpuMode::GuestKernel
                            } else {
                                CpuMode::GuestUser
                            },
                            exact_ip: false,
                        })
                    }
                    Err(_) => a.failed += 1,
                }
            }
        }
        // Keep each vCPU's paused share under the bound: one read per tick must take at most
        // `max_cost` of the tick.
        if worst_read > 0 {
            let limit = max_cost * 1e9 / worst_read as f64;
            if hz > limit {
                hz = limit.max(0.5);
            } else if hz < hz_asked as f64 && hz * 1.1 < limit {
                hz = (hz * 1.1).min(hz_asked as f64);
            }
        }
    };
    let elapsed_ns = start.elapsed().as_nanos().max(1) as u64;
    let cost = acc
        .values()
        .map(|a| a.read_ns as f64 / elapsed_ns as f64)
        .fold(0.0, f64::max);
    SamplerReport {
        vcpus: acc
            .into_iter()
            .map(|((d, v), a)| (format!("domain {d} vCPU {v}"), a))
            .collect(),
        elapsed_ns,
        hz_asked,
        hz_used: hz,
        max_cost,
        cost,
        stopped_because,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::abi::VcpuRegs;
    use crate::xen::error::{Result, XenError};
    use crate::xen::ffi::VcpuInfo;

    /// A vCPU table: vCPU 0 cycles through three IPs (two user, one kernel), vCPU 1 is blocked,
    /// vCPU 2's reads fail; each read takes `read` of wall time.
    struct Fake {
        n: u64,
        read: Duration,
    }
    impl VcpuSource for Fake {
        fn vcpu_info(&mut self, _: u32, vcpu: u32) -> Result<VcpuInfo> {
            Ok(VcpuInfo {
                online: true,
                blocked: vcpu == 1,
                running: vcpu != 1,
                cpu_time_ns: 0,
                pcpu: 0,
            })
        }
        fn vcpu_regs(&mut self, domid: u32, vcpu: u32) -> Result<VcpuRegs> {
            std::thread::sleep(self.read);
            if vcpu == 2 {
                return Err(XenError::NoSuchDomain(format!("{domid}")));
            }
            self.n += 1;
            let rip = [0x401000, 0x402000, 0xffff_ffff_8100_0000][(self.n % 3) as usize];
            // A 64-bit PV guest: user and kernel both run with cs 0xe033 (ring 3,
            // FLAT_RING3_CS64 in xen-x86_64.h); VGCF_in_kernel marks kernel mode.
            let flags = if rip > 0xffff_0000_0000_0000 {
                crate::xen::abi::VGCF_IN_KERNEL
            } else {
                0
            };
            Ok(VcpuRegs {
                rip,
                cs: 0xe033,
                flags,
                ..VcpuRegs::default()
            })
        }
    }

    #[test]
    fn samples_running_vcpus_skips_blocked_counts_failures() {
        let mut f = Fake {
            n: 0,
            read: Duration::ZERO,
        };
        let opts = SamplerOptions {
            hz: 200,
            duration: Some(Duration::from_millis(150)),
            ..SamplerOptions::default()
        };
        let mut got = Vec::new();
        let r = sample_vcpus(&mut f, &[(3, vec![0, 1, 2])], &opts, &mut |s| got.push(s));
        let v0 = r.vcpus["domain 3 vCPU 0"];
        assert!(v0.samples >= 3, "{r:?}");
        assert_eq!(v0.samples as usize, got.len());
        assert_eq!(r.vcpus["domain 3 vCPU 1"].samples, 0);
        assert!(r.vcpus["domain 3 vCPU 1"].blocked >= 3);
        assert!(r.vcpus["domain 3 vCPU 2"].failed >= 3);
        // The period is the tick: 5 ms at 200 Hz, longer only if a slow read (a preempted
        // test thread on a busy machine) made the sampler lower its rate.
        assert_eq!(got[0].period, 5_000_000);
        assert!(got
            .iter()
            .all(|s| s.tid == vcpu_tid(3, 0).unwrap() && s.period >= 5_000_000));
        assert!(got.iter().any(|s| s.cpumode == CpuMode::GuestKernel));
        assert!(got.iter().any(|s| s.cpumode == CpuMode::GuestUser));
        assert!(r.describe().contains("not PMU samples"));
    }

    #[test]
    fn slow_reads_lower_the_rate_to_the_cost_bound() {
        // 2 ms per read with a 2 % bound allows at most 10 Hz, whatever was asked.
        let mut f = Fake {
            n: 0,
            read: Duration::from_millis(2),
        };
        let opts = SamplerOptions {
            hz: 1000,
            duration: Some(Duration::from_millis(600)),
            max_cost: 0.02,
            skip_blocked: false,
            ..SamplerOptions::default()
        };
        let r = sample_vcpus(&mut f, &[(1, vec![0])], &opts, &mut |_| {});
        assert!(r.hz_used <= 10.5, "{r:?}");
        // The first tick runs at the asked rate before the bound is known; the rest keep to it.
        assert!(r.vcpus["domain 1 vCPU 0"].samples <= 12, "{r:?}");
    }
}
