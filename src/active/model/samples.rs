//! The helper's own samples: [`GuestSample`] (decoded from the wire), their callchains
//! ([`GuestChain`]), the handlers of `Samples` and `StackSamples` messages, and access to
//! what was kept.

use hvprof_proto::{StackSample, WireSample};
use serde::{Deserialize, Serialize};

use super::{GuestModel, ModelError};
use hvprof_perf::CpuMode;

/// A sample taken by the helper inside the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSample {
    /// Guest virtual address.
    pub ip: u64,
    /// Guest pid.
    pub guest_pid: u32,
    /// Guest tid.
    pub guest_tid: u32,
    /// Guest event-clock ns.
    pub guest_time_ns: u64,
    /// Guest CPU (= vCPU index).
    pub guest_cpu: u32,
    /// Guest kernel or guest user.
    pub cpumode: CpuMode,
    /// Period in ns (cpu-clock in the guest).
    pub period: u64,
}

/// The callchain of one of the helper's samples (`PERF_SAMPLE_CALLCHAIN` in the guest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestChain {
    /// Index of its sample in [`GuestModel::samples`] (and in what
    /// [`GuestModel::take_samples`] returns).
    pub sample: usize,
    /// How many of the leading `ips` are guest kernel frames; the rest are guest user frames.
    pub kernel_frames: usize,
    /// Guest virtual addresses, leaf first (the interrupted instruction, then return
    /// addresses); at most [`hvprof_proto::MAX_CALLCHAIN`].
    pub ips: Vec<u64>,
}

impl GuestChain {
    /// The cpumode of frame `i` (leaf first).
    pub fn mode(&self, i: usize) -> CpuMode {
        if i < self.kernel_frames {
            CpuMode::GuestKernel
        } else {
            CpuMode::GuestUser
        }
    }
}

/// Start of the x86-64 kernel half of the address space (canonical high half).
pub const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

impl From<WireSample> for GuestSample {
    fn from(w: WireSample) -> GuestSample {
        // `misc & PERF_RECORD_MISC_CPUMODE_MASK` (7): 1 kernel, 2 user
        // (include/uapi/linux/perf_event.h); else by address half.
        let cpumode = match w.misc & 7 {
            1 => CpuMode::GuestKernel,
            2 => CpuMode::GuestUser,
            _ if w.ip >= KERNEL_HALF => CpuMode::GuestKernel,
            _ => CpuMode::GuestUser,
        };
        GuestSample {
            ip: w.ip,
            guest_pid: w.pid,
            guest_tid: w.tid,
            guest_time_ns: w.time,
            guest_cpu: w.cpu,
            cpumode,
            // Bounded so that sums over every sample cannot overflow (4.3 s at most; a
            // cpu-clock period at 1 Hz is 1 s).
            period: w.period.min(u64::from(u32::MAX)),
        }
    }
}

impl GuestModel {
    /// A batch of the helper's samples; those over
    /// [`Budget::max_samples`](super::Budget::max_samples) are counted and dropped.
    pub(super) fn on_samples(&mut self, v: Vec<WireSample>) -> Result<(), ModelError> {
        self.stats.samples += v.len() as u64;
        let mut kept = 0;
        for s in v {
            self.see_time(s.time);
            if self.samples.len() >= self.budget.max_samples {
                self.stats.samples_dropped += 1;
                continue;
            }
            self.samples.push(GuestSample::from(s));
            kept += 1;
        }
        self.charge(kept * std::mem::size_of::<GuestSample>())
    }

    /// A batch of the helper's samples with callchains: each sample is kept as by
    /// [`GuestModel::on_samples`], its chain beside it (empty chains are not kept: the sample
    /// is then leaf-only).
    pub(super) fn on_stack_samples(&mut self, v: Vec<StackSample>) -> Result<(), ModelError> {
        self.stats.samples += v.len() as u64;
        let mut bytes = 0;
        for s in v {
            self.see_time(s.sample.time);
            if self.samples.len() >= self.budget.max_samples {
                self.stats.samples_dropped += 1;
                continue;
            }
            let kernel_frames = usize::from(s.kernel_frames).min(s.ips.len());
            bytes += std::mem::size_of::<GuestSample>();
            if !s.ips.is_empty() {
                bytes += std::mem::size_of::<GuestChain>() + 8 * s.ips.len();
                self.chains.push(GuestChain {
                    sample: self.samples.len(),
                    kernel_frames,
                    ips: s.ips,
                });
            }
            self.samples.push(GuestSample::from(s.sample));
        }
        self.charge(bytes)
    }

    /// The helper's samples received so far.
    pub fn samples(&self) -> &[GuestSample] {
        &self.samples
    }

    /// The callchains of the samples received so far, in sample order.
    pub fn chains(&self) -> &[GuestChain] {
        &self.chains
    }

    /// Takes the helper's samples out of the model (their chains stay, see
    /// [`GuestModel::take_chains`]).
    pub fn take_samples(&mut self) -> Vec<GuestSample> {
        self.bytes = self
            .bytes
            .saturating_sub(self.samples.len() * std::mem::size_of::<GuestSample>());
        std::mem::take(&mut self.samples)
    }

    /// Takes the callchains out of the model; take them with the samples they index
    /// ([`GuestModel::take_samples`]).
    pub fn take_chains(&mut self) -> Vec<GuestChain> {
        let held: usize = self
            .chains
            .iter()
            .map(|c| std::mem::size_of::<GuestChain>() + 8 * c.ips.len())
            .sum();
        self.bytes = self.bytes.saturating_sub(held);
        std::mem::take(&mut self.chains)
    }
}
