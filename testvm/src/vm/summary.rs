//! What a test VM did: exit counts, per-vCPU and per-VM summaries, and the
//! time split computed from the guest's own TSC measurements.
//!
//! Input: counters read from guest memory and the vCPU threads' shared state
//! (by [`RunningVm`](crate::RunningVm)). Output: [`VmSummary`],
//! [`VcpuSummary`], [`ExitCounts`], and shares as `(function name, fraction)`
//! in the order of [`crate::expected_shares`].

use std::time::Duration;

use crate::payload;
use crate::TestVmConfig;

/// Number of VM exits a vCPU took, by kind, as counted by its host thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitCounts {
    /// `KVM_EXIT_IO` exits (port `out` and `in`).
    pub io: u64,
    /// `KVM_EXIT_HLT` exits.
    pub hlt: u64,
    /// Any other non-fatal exit (MMIO, unexpected but harmless reasons).
    /// Signal kicks (`KVM_RUN` failing with `EINTR`) are not counted.
    pub other: u64,
}

/// Final (or snapshot) state of one vCPU.
#[derive(Debug, Clone, PartialEq)]
pub struct VcpuSummary {
    /// vCPU index (the value the guest got in `rdi`).
    pub index: usize,
    /// Host thread id (`gettid`) of the vCPU thread `vcpu<index>`.
    pub tid: i32,
    /// Completed rounds of `vcpu_main` (guest-written counter).
    pub progress: u64,
    /// Exits handled by the host thread.
    pub exits: ExitCounts,
    /// Guest-measured TSC ticks per hot function over the whole run, as
    /// `(name, ticks)` for `hot_loop_a`, `hot_loop_b`, `hot_loop_c`. Raw
    /// sums: they include time the vCPU thread was descheduled on the host.
    pub function_tsc: Vec<(&'static str, u64)>,
    /// Guest-measured time split, see
    /// [`RunningVm::measured_shares`](crate::RunningVm::measured_shares).
    pub measured_shares: Vec<(&'static str, f64)>,
    /// Why the vCPU stopped early, if it failed.
    pub failure: Option<String>,
}

/// What a test VM did, returned by [`RunningVm::stop`](crate::RunningVm::stop)
/// and [`crate::run_foreground`].
#[derive(Debug, Clone, PartialEq)]
pub struct VmSummary {
    /// The configuration it ran with.
    pub config: TestVmConfig,
    /// Wall-clock time from the vCPU threads being started to them having
    /// stopped (or to the snapshot).
    pub elapsed: Duration,
    /// Per-vCPU results, indexed by vCPU.
    pub vcpus: Vec<VcpuSummary>,
}

/// Fewest undisturbed rounds [`robust_shares`] needs.
const MIN_ROUNDS: usize = 16;

/// Shares from the round history: rounds whose total TSC exceeds 1.5 × the
/// median round are dropped (the vCPU thread was descheduled or the host
/// stalled in them; the TSC kept counting), the rest are summed per call slot.
/// `None` with fewer than [`MIN_ROUNDS`] kept rounds or no ticks at all.
pub(super) fn robust_shares(vcpu: usize, rounds: &[[u64; 2]]) -> Option<Vec<(&'static str, f64)>> {
    if rounds.len() < MIN_ROUNDS {
        return None;
    }
    let mut totals: Vec<u64> = rounds.iter().map(|r| r[0] + r[1]).collect();
    totals.sort_unstable();
    let limit = totals[totals.len() / 2].saturating_mul(3) / 2;
    let kept: Vec<&[u64; 2]> = rounds.iter().filter(|r| r[0] + r[1] <= limit).collect();
    if kept.len() < MIN_ROUNDS {
        return None;
    }
    let sums = [
        kept.iter().map(|r| r[0]).sum::<u64>(),
        kept.iter().map(|r| r[1]).sum::<u64>(),
    ];
    let total = sums[0] + sums[1];
    if total == 0 {
        return None;
    }
    Some(
        payload::expected_shares(vcpu)
            .iter()
            .zip(sums)
            .map(|((name, _), t)| (*name, t as f64 / total as f64))
            .collect(),
    )
}

/// Shares from the whole-run per-function TSC sums (`(name, ticks)`), over
/// the functions of [`crate::expected_shares`]`(vcpu)`; all 0 if no ticks.
pub(super) fn shares_from_tsc(
    vcpu: usize,
    tsc: &[(&'static str, u64)],
) -> Vec<(&'static str, f64)> {
    let expected = payload::expected_shares(vcpu);
    let ticks = |name: &str| tsc.iter().find(|(n, _)| *n == name).map_or(0, |(_, t)| *t);
    let total: u64 = expected.iter().map(|(n, _)| ticks(n)).sum();
    expected
        .iter()
        .map(|(n, _)| {
            let share = if total == 0 {
                0.0
            } else {
                ticks(n) as f64 / total as f64
            };
            (*n, share)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_shares_drops_slow_rounds() {
        // Odd vCPU: 75/25 split, plus two rounds stretched by descheduling.
        let mut rounds = vec![[300, 100]; MIN_ROUNDS];
        rounds.push([3000, 100]);
        rounds.push([300, 1000]);
        let shares = robust_shares(1, &rounds).expect("enough rounds");
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0], ("hot_loop_b", 0.75));
        assert_eq!(shares[1], ("hot_loop_c", 0.25));
    }

    #[test]
    fn robust_shares_needs_enough_rounds() {
        assert_eq!(robust_shares(0, &vec![[100, 0]; MIN_ROUNDS - 1]), None);
        assert_eq!(robust_shares(0, &vec![[0, 0]; MIN_ROUNDS]), None);
    }

    #[test]
    fn shares_from_tsc_uses_expected_functions() {
        let tsc = [("hot_loop_a", 7), ("hot_loop_b", 30), ("hot_loop_c", 10)];
        assert_eq!(
            shares_from_tsc(1, &tsc),
            vec![("hot_loop_b", 0.75), ("hot_loop_c", 0.25)]
        );
        assert_eq!(shares_from_tsc(0, &tsc), vec![("hot_loop_a", 1.0)]);
        assert_eq!(shares_from_tsc(0, &[]), vec![("hot_loop_a", 0.0)]);
    }
}
