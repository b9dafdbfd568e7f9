//! The host's model of one guest, built from helper messages: processes and threads with
//! their names over time, executable maps per process, symbol tables per file key, guest
//! kallsyms, a context-switch timeline per guest CPU, and the helper's samples. Everything
//! in it came from an untrusted guest and is bounded by a [`Budget`].
//!
//! Stage: wire messages → **guest model** → attribution. Input: helper
//! [`Message`](hvprof_proto::Message)s ([`GuestModel::apply`]); output:
//! [`Attributed`](crate::attribute::Attributed) samples with a [`GuestContext`]
//! ([`GuestModel::attribute`] for helper samples, [`GuestModel::attribute_host`] for samples
//! the host kernel tagged as guest mode).
//!
//! One file per part of the model, each with the handlers of the messages that feed it:
//! `apply` (the dispatcher, session messages), `tasks` (processes, threads, names, maps),
//! `symbols` (kallsyms, modules, symbol tables, symbol lookups), `timeline` (context
//! switches per guest CPU), `samples` (the helper's samples and their callchains),
//! `attribution` (samples → attributed samples with guest context), `stacks` (callchains →
//! guest stack rows).
//!
//! ```
//! use hvprof::active::model::{GuestModel, Budget};
//! use hvprof_proto::Message;
//! let mut m = GuestModel::new(1234, Budget::default());
//! m.apply(Message::Comm { pid: 7, tid: 7, time: 0, exec: false, comm: "sh".into() }).unwrap();
//! assert_eq!(m.comm(7, 7, 10), "sh");
//! ```

mod apply;
mod attribution;
mod samples;
mod stacks;
mod symbols;
mod tasks;
#[cfg(test)]
mod testutil;
mod timeline;

use std::collections::HashMap;

use hvprof_proto::{self as proto, Hello};
use hvprof_symbols::Kallsyms;

use super::clock::ClockSync;

pub use attribution::GuestContext;
pub use samples::{GuestChain, GuestSample, KERNEL_HALF};
pub use stacks::MAX_STACK_FRAMES;
pub use timeline::{OnCpu, Timeline};

pub use crate::report::guest::ModelStats;
use symbols::Table;
use tasks::Task;

/// What the host keeps from one guest, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Symbols per table (2 M).
    pub max_symbols_per_table: usize,
    /// Symbol tables (4096).
    pub max_tables: usize,
    /// Processes plus threads (1 M).
    pub max_tasks: usize,
    /// Maps per process (8192).
    pub max_maps_per_process: usize,
    /// kallsyms text in bytes (64 MiB).
    pub max_kallsyms_bytes: usize,
    /// Guest CPUs (4096).
    pub max_cpus: u32,
    /// Switch entries per CPU (4 M).
    pub max_switches_per_cpu: usize,
    /// Samples kept (16 M).
    pub max_samples: usize,
    /// Total estimated heap bytes (1 GiB).
    pub max_bytes: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            max_symbols_per_table: 2_000_000,
            max_tables: 4096,
            max_tasks: 1 << 20,
            max_maps_per_process: 8192,
            max_kallsyms_bytes: 64 << 20,
            max_cpus: 4096,
            max_switches_per_cpu: 4 << 20,
            max_samples: 16 << 20,
            max_bytes: 1 << 30,
        }
    }
}

/// Why the model refused a message: the connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A limit of the [`Budget`] was exceeded.
    #[error("guest exceeded a limit: {0}")]
    Limit(String),
    /// A message out of order (e.g. a symbol chunk for a table never begun).
    #[error("guest protocol sequence error: {0}")]
    Sequence(String),
}

/// Everything known about one guest.
#[derive(Debug)]
pub struct GuestModel {
    vm_pid: i32,
    budget: Budget,
    vcpu_tids: HashMap<u32, i32>,
    hello: Option<Hello>,
    ready: bool,
    kallsyms_text: Vec<u8>,
    kallsyms: Option<Kallsyms>,
    modules: Vec<proto::Module>,
    tasks: HashMap<u32, Task>,
    thread_pid: HashMap<u32, u32>,
    tables: HashMap<Vec<u8>, Table>,
    timelines: HashMap<u32, Timeline>,
    samples: Vec<GuestSample>,
    chains: Vec<GuestChain>,
    notes: Vec<String>,
    stats: ModelStats,
    bytes: usize,
    max_time: u64,
    /// The host ⇄ guest clock relation.
    pub clock: ClockSync,
}

fn limit(what: String) -> ModelError {
    ModelError::Limit(what)
}

impl GuestModel {
    /// An empty model for the VM whose VMM is `vm_pid`.
    pub fn new(vm_pid: i32, budget: Budget) -> GuestModel {
        GuestModel {
            vm_pid,
            budget,
            vcpu_tids: HashMap::new(),
            hello: None,
            ready: false,
            kallsyms_text: Vec::new(),
            kallsyms: None,
            modules: Vec::new(),
            tasks: HashMap::new(),
            thread_pid: HashMap::new(),
            tables: HashMap::new(),
            timelines: HashMap::new(),
            samples: Vec::new(),
            chains: Vec::new(),
            notes: Vec::new(),
            stats: ModelStats::default(),
            bytes: 0,
            max_time: 0,
            clock: ClockSync::None,
        }
    }

    /// Declares the host thread of each vCPU (vCPU index = guest CPU number), so helper
    /// samples land on the vCPU thread in the report.
    pub fn set_vcpu_threads(&mut self, vcpus: &[(u32, Option<i32>)]) {
        self.vcpu_tids = vcpus.iter().filter_map(|&(i, t)| Some((i, t?))).collect();
    }

    /// The VMM pid.
    pub fn vm_pid(&self) -> i32 {
        self.vm_pid
    }

    /// The last hello.
    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    /// True once the helper said its initial state is complete.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Notes for the report (helper notes, refused data, reboots).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Adds a note (at most 256, each once).
    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        if self.notes.len() < 256 && !self.notes.contains(&s) {
            self.notes.push(s);
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ModelStats {
        &self.stats
    }

    /// Estimated heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `n` estimated heap bytes.
    ///
    /// # Errors
    /// [`ModelError::Limit`] past [`Budget::max_bytes`].
    fn charge(&mut self, n: usize) -> Result<(), ModelError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.budget.max_bytes {
            return Err(limit(format!(
                "guest data would exceed the host memory budget of {} MiB",
                self.budget.max_bytes >> 20
            )));
        }
        Ok(())
    }

    /// Records the latest guest time seen (ns, guest event clock).
    fn see_time(&mut self, t: u64) {
        if t > self.max_time {
            self.max_time = t;
        }
    }

    /// Forgets everything the previous boot of the guest sent; keeps the vCPU threads, the
    /// notes, the counters and the samples.
    fn reset_for_reboot(&mut self) {
        let keep_vcpus = std::mem::take(&mut self.vcpu_tids);
        let notes = std::mem::take(&mut self.notes);
        let stats = std::mem::take(&mut self.stats);
        let samples = std::mem::take(&mut self.samples);
        let chains = std::mem::take(&mut self.chains);
        let budget = self.budget;
        *self = GuestModel::new(self.vm_pid, budget);
        self.vcpu_tids = keep_vcpus;
        self.notes = notes;
        self.stats = stats;
        self.bytes = samples.len() * std::mem::size_of::<GuestSample>()
            + chains
                .iter()
                .map(|c| std::mem::size_of::<GuestChain>() + 8 * c.ips.len())
                .sum::<usize>();
        self.samples = samples;
        self.chains = chains;
    }
}
