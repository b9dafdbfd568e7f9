//! Host ⇄ guest clock conversion, with an error bound.
//!
//! Stage: host sample times → **guest times** (to find the guest thread on a guest CPU at the
//! instant of a host-tagged sample), and back (to place helper samples on the host's time
//! axis). Two methods:
//!
//! - **TSC offset** (exact up to rounding): host perf time → host TSC (inverting the host's
//!   perf mmap page: `time_zero`, `time_mult`, `time_shift`) → guest TSC
//!   (`guest_tsc = host_tsc * ratio + tsc_offset`, KVM debugfs
//!   `/sys/kernel/debug/kvm/PID-FD/vcpuN/tsc-offset` and `tsc-scaling-ratio`) → guest perf time
//!   (the guest page from the helper's hello). Needs the guest's event clock to be perf's local
//!   clock on the TSC (`cap_user_time_zero`; not so with kvm-clock as sched_clock).
//! - **Round trip**: the host sends a ping stamped `t0`; the helper answers with its clock
//!   `g`; the host receives at `t1`. `offset = g − (t0 + t1)/2`, error bound `(t1 − t0)/2`.
//!   The estimate with the smallest bound wins, its bound growing with distance in time at
//!   [`DRIFT_PPM`].
//!
//! ```
//! use hvprof::active::clock::RoundTrip;
//! let mut rt = RoundTrip::default();
//! rt.add(1_000, 1_100, 501_060); // guest ahead by 500_010 ns, ±50 ns
//! assert_eq!(rt.host_to_guest(2_000), Some((502_010, 50)));
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Assumed worst-case drift between host and guest clocks, in parts per million, added to a
/// round-trip estimate's bound per unit of time away from it.
pub const DRIFT_PPM: u64 = 100;

/// `time_shift`, `time_mult`, `time_zero` of a perf mmap page: `ns = time_zero +
/// (tsc * time_mult) >> time_shift` (perf_event.h, overflow-safe form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PerfClockParams {
    /// `time_shift`.
    pub time_shift: u16,
    /// `time_mult`.
    pub time_mult: u32,
    /// `time_zero`, ns.
    pub time_zero: u64,
}

impl PerfClockParams {
    /// TSC → perf ns.
    pub fn tsc_to_ns(&self, tsc: u64) -> u64 {
        let shift = u32::from(self.time_shift.min(63));
        let quot = tsc >> shift;
        let rem = tsc & ((1u64 << shift) - 1);
        let m = u64::from(self.time_mult);
        self.time_zero
            .wrapping_add(quot.wrapping_mul(m))
            .wrapping_add(rem.wrapping_mul(m) >> shift)
    }

    /// perf ns → TSC (the inverse of [`PerfClockParams::tsc_to_ns`], rounded down); None for
    /// a time before `time_zero` or a zero multiplier.
    pub fn ns_to_tsc(&self, ns: u64) -> Option<u64> {
        if self.time_mult == 0 {
            return None;
        }
        let d = ns.checked_sub(self.time_zero)? as u128;
        let shift = u32::from(self.time_shift.min(63));
        let t = (d << shift) / u128::from(self.time_mult);
        u64::try_from(t).ok()
    }

    /// Rounding error of one round trip through the TSC, in ns (one TSC tick plus one ns).
    pub fn rounding_ns(&self) -> u64 {
        let shift = u32::from(self.time_shift.min(63));
        (u64::from(self.time_mult) >> shift) + 2
    }
}

/// One vCPU's TSC relation: `guest_tsc = (host_tsc * ratio) >> frac_bits + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuTsc {
    /// `tsc-offset` (signed, guest TSC ticks).
    pub offset: i64,
    /// `tsc-scaling-ratio`, or None for no scaling.
    pub ratio: Option<u64>,
    /// `tsc-scaling-ratio-frac-bits`.
    pub frac_bits: u32,
}

/// Reads `tsc-offset` (and scaling, when present) of every vCPU of VM `vm_pid` under KVM's
/// debugfs directory (`/sys/kernel/debug/kvm`): directories `PID-FD/vcpuN`. Host paths only.
pub fn read_tsc_offsets(kvm_debugfs: &Path, vm_pid: i32) -> Vec<(u32, VcpuTsc)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(kvm_debugfs) else {
        return out;
    };
    let prefix = format!("{vm_pid}-");
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if !n.starts_with(&prefix) {
            continue;
        }
        let Ok(vd) = std::fs::read_dir(e.path()) else {
            continue;
        };
        for v in vd.flatten() {
            let vn = v.file_name();
            let Some(idx) = vn
                .to_str()
                .and_then(|s| s.strip_prefix("vcpu"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let read = |f: &str| {
                std::fs::read_to_string(v.path().join(f))
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            let Some(offset) = read("tsc-offset").and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            let frac_bits = read("tsc-scaling-ratio-frac-bits")
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            let ratio = read("tsc-scaling-ratio")
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&r| frac_bits > 0 && frac_bits < 64 && r != 1u64 << frac_bits);
            out.push((
                idx,
                VcpuTsc {
                    offset,
                    ratio,
                    frac_bits,
                },
            ));
        }
    }
    out.sort_by_key(|x| x.0);
    out
}

/// Host → guest conversion through the TSC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TscConversion {
    /// The host's perf page.
    pub host: PerfClockParams,
    /// The guest's perf page (from the hello).
    pub guest: PerfClockParams,
    /// Per vCPU index.
    pub vcpus: Vec<(u32, VcpuTsc)>,
}

impl TscConversion {
    fn vcpu(&self, vcpu: u32) -> Option<&VcpuTsc> {
        self.vcpus
            .iter()
            .find(|v| v.0 == vcpu)
            .or_else(|| self.vcpus.first())
            .map(|v| &v.1)
    }

    /// Host perf ns → guest perf ns on `vcpu`.
    pub fn host_to_guest(&self, host_ns: u64, vcpu: u32) -> Option<u64> {
        let v = self.vcpu(vcpu)?;
        let h = self.host.ns_to_tsc(host_ns)?;
        let scaled = match v.ratio {
            Some(r) => u64::try_from((u128::from(h) * u128::from(r)) >> v.frac_bits).ok()?,
            None => h,
        };
        let g = scaled.wrapping_add(v.offset as u64);
        Some(self.guest.tsc_to_ns(g))
    }

    /// Guest perf ns → host perf ns (unscaled TSC only; None with scaling).
    pub fn guest_to_host(&self, guest_ns: u64, vcpu: u32) -> Option<u64> {
        let v = self.vcpu(vcpu)?;
        if v.ratio.is_some() {
            return None;
        }
        let g = self.guest.ns_to_tsc(guest_ns)?;
        let h = g.wrapping_sub(v.offset as u64);
        Some(self.host.tsc_to_ns(h))
    }

    /// Error bound in ns.
    pub fn error_ns(&self) -> u64 {
        self.host.rounding_ns() + self.guest.rounding_ns()
    }
}

/// Round-trip estimates of `guest − host`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundTrip {
    /// `(host midpoint ns, offset ns, error bound ns)`, at most [`RoundTrip::MAX`].
    pub estimates: Vec<(u64, i64, u64)>,
    /// Pongs discarded as inconsistent (t1 < t0).
    pub rejected: u64,
}

impl RoundTrip {
    /// Most estimates kept (the best ones).
    pub const MAX: usize = 256;

    /// Adds one exchange: sent at host `t0`, guest answered `guest`, received at host `t1`.
    pub fn add(&mut self, t0: u64, t1: u64, guest: u64) {
        if t1 < t0 {
            self.rejected += 1;
            return;
        }
        let mid = t0 + (t1 - t0) / 2;
        let err = (t1 - t0).div_ceil(2);
        let offset = (guest as i128 - mid as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        self.estimates.push((mid, offset, err));
        if self.estimates.len() > Self::MAX {
            // Drop the worst bound.
            if let Some((i, _)) = self.estimates.iter().enumerate().max_by_key(|e| e.1 .2) {
                self.estimates.swap_remove(i);
            }
        }
    }

    fn best_for(&self, host_ns: u64) -> Option<(i64, u64)> {
        self.estimates
            .iter()
            .map(|&(mid, off, err)| {
                let drift = host_ns.abs_diff(mid) / 1_000_000 * DRIFT_PPM;
                (off, err.saturating_add(drift))
            })
            .min_by_key(|e| e.1)
    }

    /// Host ns → (guest ns, error bound ns).
    pub fn host_to_guest(&self, host_ns: u64) -> Option<(u64, u64)> {
        let (off, err) = self.best_for(host_ns)?;
        Some(((host_ns as i128 + off as i128).max(0) as u64, err))
    }

    /// Guest ns → (host ns, error bound ns).
    pub fn guest_to_host(&self, guest_ns: u64) -> Option<(u64, u64)> {
        // Offsets are tiny next to the drift window, so use the guest time as the host time
        // to choose the estimate, then refine once.
        let (off, _) = self.best_for(guest_ns)?;
        let approx = (guest_ns as i128 - off as i128).max(0) as u64;
        let (off, err) = self.best_for(approx)?;
        Some(((guest_ns as i128 - off as i128).max(0) as u64, err))
    }

    /// The smallest error bound of any estimate, ns.
    pub fn best_error_ns(&self) -> Option<u64> {
        self.estimates.iter().map(|e| e.2).min()
    }
}

/// How host and guest times are related for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum ClockSync {
    /// No relation known: guest times stay guest times.
    None,
    /// Through the TSC offset.
    Tsc(TscConversion),
    /// Through round trips over the channel.
    RoundTrip(RoundTrip),
}

impl ClockSync {
    /// Host perf ns → (guest ns, error bound ns) on `vcpu`.
    pub fn host_to_guest(&self, host_ns: u64, vcpu: u32) -> Option<(u64, u64)> {
        match self {
            ClockSync::None => None,
            ClockSync::Tsc(t) => Some((t.host_to_guest(host_ns, vcpu)?, t.error_ns())),
            ClockSync::RoundTrip(r) => r.host_to_guest(host_ns),
        }
    }

    /// Guest ns → (host ns, error bound ns) on `vcpu`.
    pub fn guest_to_host(&self, guest_ns: u64, vcpu: u32) -> Option<(u64, u64)> {
        match self {
            ClockSync::None => None,
            ClockSync::Tsc(t) => Some((t.guest_to_host(guest_ns, vcpu)?, t.error_ns())),
            ClockSync::RoundTrip(r) => r.guest_to_host(guest_ns),
        }
    }

    /// The method's name and its best error bound, for reports.
    pub fn describe(&self) -> String {
        match self {
            ClockSync::None => "none (guest times not related to host times)".into(),
            ClockSync::Tsc(t) => format!(
                "TSC offset from KVM debugfs ({} vCPUs), error bound {} ns",
                t.vcpus.len(),
                t.error_ns()
            ),
            ClockSync::RoundTrip(r) => format!(
                "round trip over the helper channel ({} exchanges), error bound {}",
                r.estimates.len(),
                r.best_error_ns()
                    .map_or("unknown".to_string(), |e| format!("{e} ns"))
            ),
        }
    }

    /// Best error bound in ns, when known.
    pub fn error_ns(&self) -> Option<u64> {
        match self {
            ClockSync::None => None,
            ClockSync::Tsc(t) => Some(t.error_ns()),
            ClockSync::RoundTrip(r) => r.best_error_ns(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 3 GHz TSC: 1/3 ns per tick; mult/2^shift = 1/3.
    fn p(zero: u64) -> PerfClockParams {
        PerfClockParams {
            time_shift: 31,
            time_mult: ((1u64 << 31) / 3) as u32,
            time_zero: zero,
        }
    }

    #[test]
    fn tsc_round_trip_is_exact_to_rounding() {
        let c = p(1_000_000);
        for tsc in [0u64, 1, 3, 2999, 3_000_000_000, 123_456_789_012_345] {
            let ns = c.tsc_to_ns(tsc);
            let back = c.ns_to_tsc(ns).unwrap();
            assert!(back.abs_diff(tsc) <= 4, "{tsc} -> {ns} -> {back}");
        }
        assert_eq!(c.ns_to_tsc(5), None);
    }

    #[test]
    fn tsc_offset_path() {
        // Host booted 10 s before the guest: guest TSC = host TSC − 30e9 ticks.
        let conv = TscConversion {
            host: p(0),
            guest: p(0),
            vcpus: vec![(
                0,
                VcpuTsc {
                    offset: -30_000_000_000,
                    ratio: None,
                    frac_bits: 0,
                },
            )],
        };
        // The kernels' own formulas define the truth: one TSC instant T is host time
        // host.tsc_to_ns(T) and guest time guest.tsc_to_ns(T + offset).
        let tsc = 45_000_000_123u64;
        let host_ns = conv.host.tsc_to_ns(tsc);
        let want = conv.guest.tsc_to_ns(tsc - 30_000_000_000);
        let sync = ClockSync::Tsc(conv);
        let (g, err) = sync.host_to_guest(host_ns, 0).unwrap();
        assert!(g.abs_diff(want) <= err, "{g} vs {want} ± {err}");
        assert!(err < 10);
        let (h, _) = sync.guest_to_host(g, 0).unwrap();
        assert!(h.abs_diff(host_ns) <= 2 * err);
        // Unknown vCPUs use the first one's offset (KVM syncs offsets across vCPUs).
        assert!(sync.host_to_guest(15_000_000_000, 7).is_some());
        // Scaling: ratio 0.5 in 48 fractional bits.
        let conv = TscConversion {
            host: p(0),
            guest: p(0),
            vcpus: vec![(
                0,
                VcpuTsc {
                    offset: 0,
                    ratio: Some(1 << 47),
                    frac_bits: 48,
                },
            )],
        };
        let g = conv.host_to_guest(10_000_000_000, 0).unwrap();
        assert!(g.abs_diff(5_000_000_000) < 10, "{g}");
        assert_eq!(conv.guest_to_host(g, 0), None);
    }

    #[test]
    fn round_trip_path_with_error_bound() {
        let mut rt = RoundTrip::default();
        // True offset: guest = host + 1_000_000. Asymmetric delays put the truth inside ±bound.
        let truth = 1_000_000i64;
        for (t0, d_out, d_back) in [(0u64, 300u64, 100u64), (10_000, 20, 40), (20_000, 900, 10)] {
            let g = (t0 + d_out) as i64 + truth;
            rt.add(t0, t0 + d_out + d_back, g as u64);
        }
        rt.add(50, 40, 0); // t1 < t0: rejected
        assert_eq!(rt.rejected, 1);
        assert_eq!(rt.best_error_ns(), Some(30));
        let (g, err) = rt.host_to_guest(10_030).unwrap();
        assert!(
            (g as i64 - (10_030 + truth)).unsigned_abs() <= err,
            "{g} ± {err}"
        );
        assert_eq!(err, 30);
        // Far away in time the bound grows with drift.
        let (_, err_far) = rt.host_to_guest(10_000 + 60_000_000_000).unwrap();
        assert!(err_far >= 30 + 60_000 * DRIFT_PPM - DRIFT_PPM);
        let (h, _) = rt.guest_to_host(10_030 + truth as u64).unwrap();
        assert!(h.abs_diff(10_030) <= 30);
        assert_eq!(ClockSync::None.host_to_guest(1, 0), None);
        assert!(ClockSync::RoundTrip(rt).describe().contains("30 ns"));
    }

    #[test]
    fn debugfs_offsets() {
        let d = tempfile::tempdir().unwrap();
        let v0 = d.path().join("4242-11/vcpu0");
        let v1 = d.path().join("4242-11/vcpu1");
        let other = d.path().join("99-3/vcpu0");
        for p in [&v0, &v1, &other] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(v0.join("tsc-offset"), "-123456\n").unwrap();
        std::fs::write(v1.join("tsc-offset"), "-123456\n").unwrap();
        std::fs::write(v1.join("tsc-scaling-ratio"), "281474976710656\n").unwrap();
        std::fs::write(v1.join("tsc-scaling-ratio-frac-bits"), "48\n").unwrap();
        std::fs::write(other.join("tsc-offset"), "5\n").unwrap();
        let got = read_tsc_offsets(d.path(), 4242);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.offset, -123456);
        assert_eq!(got[1].1.ratio, None, "ratio 1.0 is no scaling");
        assert!(read_tsc_offsets(d.path(), 1).is_empty());
    }
}
