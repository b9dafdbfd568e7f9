//! [`RunningVm`]: the handle of a started test VM. Reads the guest's
//! counters while it runs, summarises it, and stops it.
//!
//! Input: the [`Shared`] state and the vCPU threads' join handles, from
//! [`TestVm::start`](crate::TestVm::start). Output: live per-vCPU readings
//! (progress, exits, TSC, shares, failures), a [`VmSummary`] snapshot, and the
//! final summary from [`RunningVm::stop`], which kicks every vCPU thread out
//! of `KVM_RUN` with [`kick_signal`] and joins it.

use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::kick::kick_signal;
use super::summary::{robust_shares, shares_from_tsc, ExitCounts, VcpuSummary, VmSummary};
use super::vcpu::Shared;
use crate::layout::{self, ctl_addr};
use crate::payload::{self, CTL_PROGRESS};
use crate::{Error, TestVmConfig};

/// How long [`RunningVm::stop`] keeps kicking vCPU threads before giving up.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval between kicks of a vCPU thread that has not left its run loop.
const KICK_INTERVAL: Duration = Duration::from_micros(500);

/// A started test VM. Dropping it stops it (like [`RunningVm::stop`], but
/// discarding the summary and errors).
pub struct RunningVm {
    pub(super) shared: Arc<Shared>,
    /// `None` once joined or detached.
    pub(super) threads: Vec<Option<JoinHandle<()>>>,
    /// Host tids of the vCPU threads, indexed by vCPU; 0 until reported.
    pub(super) tids: Vec<i32>,
    /// When the vCPU threads were started.
    pub(super) started: Instant,
    pub(super) cfg: TestVmConfig,
}

impl std::fmt::Debug for RunningVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningVm")
            .field("pid", &self.pid())
            .field("tids", &self.tids)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RunningVm {
    /// The VMM's process id: the current process (`getpid`).
    pub fn pid(&self) -> i32 {
        std::process::id() as i32
    }

    /// Host thread ids of the vCPU threads, indexed by vCPU. All threads have
    /// started by the time [`TestVm::start`](crate::TestVm::start) returns, so this never blocks.
    /// An entry is 0 only if that thread died before reporting (see
    /// [`RunningVm::failure`]).
    pub fn vcpu_tids(&self) -> Vec<i32> {
        self.tids.clone()
    }

    /// The configuration the VM was started with.
    pub fn config(&self) -> &TestVmConfig {
        &self.cfg
    }

    /// Number of vCPUs.
    pub fn vcpus(&self) -> usize {
        self.cfg.vcpus
    }

    fn ctl(&self, vcpu: usize) -> u64 {
        assert!(
            vcpu < self.cfg.vcpus,
            "vCPU {vcpu} out of range (VM has {})",
            self.cfg.vcpus
        );
        ctl_addr(vcpu)
    }

    /// Completed rounds of `vcpu_main` on vCPU `vcpu`, read from the
    /// guest's progress counter (control block offset
    /// [`payload::CTL_PROGRESS`]).
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn progress(&self, vcpu: usize) -> u64 {
        self.shared.mem.read_u64(self.ctl(vcpu) + CTL_PROGRESS)
    }

    /// Exits handled so far for vCPU `vcpu`.
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn exits(&self, vcpu: usize) -> ExitCounts {
        self.ctl(vcpu);
        let s = &self.shared.vcpus[vcpu];
        ExitCounts {
            io: s.io.load(Ordering::Relaxed),
            hlt: s.hlt.load(Ordering::Relaxed),
            other: s.other.load(Ordering::Relaxed),
        }
    }

    /// Guest-measured TSC ticks spent in each hot function on vCPU `vcpu`
    /// (accumulated by the guest's `timed_call`), as `(name, ticks)`.
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn function_tsc(&self, vcpu: usize) -> Vec<(&'static str, u64)> {
        let ctl = self.ctl(vcpu);
        vec![
            (
                "hot_loop_a",
                self.shared.mem.read_u64(ctl + payload::CTL_TSC_A),
            ),
            (
                "hot_loop_b",
                self.shared.mem.read_u64(ctl + payload::CTL_TSC_B),
            ),
            (
                "hot_loop_c",
                self.shared.mem.read_u64(ctl + payload::CTL_TSC_C),
            ),
        ]
    }

    /// The completed rounds still in vCPU `vcpu`'s history ring (up to
    /// [`payload::HIST_LEN`] − 1, oldest first), each as the TSC ticks of the
    /// round's two hot-function calls: `[a, 0]` on even vCPUs, `[b, c]` on odd
    /// ones. Rounds the guest overwrote while they were being read are left
    /// out.
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn round_tsc(&self, vcpu: usize) -> Vec<[u64; 2]> {
        let ctl = self.ctl(vcpu);
        let hist = layout::hist_addr(vcpu);
        let mem = &self.shared.mem;
        let p1 = mem.read_u64(ctl + CTL_PROGRESS);
        let raw: Vec<[u64; 2]> = (0..payload::HIST_LEN)
            .map(|slot| {
                let e = hist + slot * payload::HIST_ENTRY;
                [mem.read_u64(e), mem.read_u64(e + 8)]
            })
            .collect();
        let p2 = mem.read_u64(ctl + CTL_PROGRESS);
        // Round r lives in slot r % HIST_LEN and is complete once progress > r;
        // rounds p1..=p2 may have been written during the copy, which
        // clobbers rounds r with r + HIST_LEN <= p2.
        let lo = (p2 + 1).saturating_sub(payload::HIST_LEN);
        (lo..p1)
            .map(|r| raw[(r % payload::HIST_LEN) as usize])
            .collect()
    }

    /// The guest-measured time split of vCPU `vcpu` over the functions of
    /// [`crate::expected_shares`]`(vcpu)`, as fractions summing to 1.
    ///
    /// Computed from [`RunningVm::round_tsc`], ignoring rounds longer than
    /// 1.5 × the median round (the host descheduled the vCPU thread during
    /// them, and the TSC kept counting). With fewer than 16 usable rounds it
    /// falls back to the raw [`RunningVm::function_tsc`] sums; all 0 before
    /// the first measured call completes.
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn measured_shares(&self, vcpu: usize) -> Vec<(&'static str, f64)> {
        robust_shares(vcpu, &self.round_tsc(vcpu))
            .unwrap_or_else(|| shares_from_tsc(vcpu, &self.function_tsc(vcpu)))
    }

    /// Why vCPU `vcpu` stopped, if it failed (it then no longer runs).
    ///
    /// # Panics
    ///
    /// If `vcpu` is not less than the number of vCPUs.
    pub fn failure(&self, vcpu: usize) -> Option<String> {
        self.ctl(vcpu);
        self.shared.vcpus[vcpu]
            .failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether any vCPU has failed.
    pub fn any_failed(&self) -> bool {
        (0..self.cfg.vcpus).any(|v| self.failure(v).is_some())
    }

    /// A snapshot of every vCPU's state while the VM keeps running.
    pub fn summary(&self) -> VmSummary {
        VmSummary {
            config: self.cfg.clone(),
            elapsed: self.started.elapsed(),
            vcpus: (0..self.cfg.vcpus)
                .map(|v| VcpuSummary {
                    index: v,
                    tid: self.tids[v],
                    progress: self.progress(v),
                    exits: self.exits(v),
                    function_tsc: self.function_tsc(v),
                    measured_shares: self.measured_shares(v),
                    failure: self.failure(v),
                })
                .collect(),
        }
    }

    /// Stops all vCPUs and returns what they did.
    ///
    /// Sets the shared stop flag, then sends [`kick_signal`] to every vCPU
    /// thread still in its run loop every 0.5 ms until all have left it (a
    /// kick landing just before a thread re-enters `KVM_RUN` is lost, the next
    /// one is not), and joins them. Typically returns within a few
    /// milliseconds, even for [`crate::Workload::Compute`], which never exits
    /// on its own.
    ///
    /// # Errors
    ///
    /// - [`Error::VcpuFailed`] for the lowest-numbered vCPU that failed
    ///   (the summary is then lost; use [`RunningVm::summary`] before
    ///   stopping to keep it).
    /// - [`Error::StopTimeout`] if some thread did not stop within 2 s.
    pub fn stop(mut self) -> Result<VmSummary, Error> {
        self.shutdown()?;
        let summary = self.summary();
        if let Some(v) = summary.vcpus.iter().find(|v| v.failure.is_some()) {
            return Err(Error::VcpuFailed {
                vcpu: v.index,
                reason: v.failure.clone().unwrap_or_default(),
            });
        }
        Ok(summary)
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        if self.threads.iter().all(Option::is_none) {
            return Ok(());
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        loop {
            let pending: Vec<usize> = (0..self.threads.len())
                .filter(|&i| {
                    self.threads[i].is_some()
                        && !self.shared.vcpus[i].exited.load(Ordering::Acquire)
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            if t0.elapsed() >= STOP_TIMEOUT {
                for &i in &pending {
                    self.threads[i] = None; // detach; it keeps its Arc<Shared>
                }
                self.join_all();
                return Err(Error::StopTimeout {
                    vcpus: pending,
                    waited: t0.elapsed(),
                });
            }
            for &i in &pending {
                if let Some(h) = &self.threads[i] {
                    // SAFETY: the pthread_t comes from a JoinHandle that has
                    // not been joined or detached, so the thread's descriptor
                    // is still valid even if the thread has just returned.
                    unsafe { libc::pthread_kill(h.as_pthread_t(), kick_signal()) };
                }
            }
            std::thread::sleep(KICK_INTERVAL);
        }
        self.join_all();
        Ok(())
    }

    fn join_all(&mut self) {
        for (i, slot) in self.threads.iter_mut().enumerate() {
            if let Some(h) = slot.take() {
                if h.join().is_err() {
                    if let Ok(mut f) = self.shared.vcpus[i].failure.lock() {
                        f.get_or_insert_with(|| "vCPU thread panicked".into());
                    }
                }
            }
        }
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
