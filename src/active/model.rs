//! The host's model of one guest, built from helper messages: processes and threads with
//! their names over time, executable maps per process, symbol tables per file key, guest
//! kallsyms, a context-switch timeline per guest CPU, and the helper's samples. Everything
//! in it came from an untrusted guest and is bounded by a [`Budget`].
//!
//! Stage: wire messages → **guest model** → attribution. Input: [`Message`]s
//! ([`GuestModel::apply`]); output: [`Attributed`] samples with a [`GuestContext`]
//! ([`GuestModel::attribute`] for helper samples, [`GuestModel::attribute_host`] for samples
//! the host kernel tagged as guest mode).
//!
//! ```
//! use hvprof::active::model::{GuestModel, Budget};
//! use hvprof_guest::proto::Message;
//! let mut m = GuestModel::new(1234, Budget::default());
//! m.apply(Message::Comm { pid: 7, tid: 7, time: 0, exec: false, comm: "sh".into() }).unwrap();
//! assert_eq!(m.comm(7, 7, 10), "sh");
//! ```

use std::collections::HashMap;

use hvprof_guest::proto::{self, Hello, Message, Segment, WireSample, WireSymbol};
use hvprof_symbols::{demangle, Kallsyms};
use serde::{Deserialize, Serialize};

use super::clock::ClockSync;
use super::symtab::{file_offset_to_svma, SymbolTable};
use crate::attribute::{Attributed, Class, Symbol};
use crate::record::{CpuMode, Sample};

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

/// Start of the x86-64 kernel half of the address space (canonical high half).
pub const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

impl From<WireSample> for GuestSample {
    fn from(w: WireSample) -> GuestSample {
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

/// Who ran in the guest for an attributed sample.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuestContext {
    /// Guest pid (0: idle), None when unknown.
    pub guest_pid: Option<u32>,
    /// Guest tid.
    pub guest_tid: Option<u32>,
    /// Thread name (`comm` of the thread, or of the process), `[unknown]` when unknown.
    pub comm: String,
    /// Process name (`comm` of the process's main thread), `[unknown]` when unknown.
    pub process: String,
    /// Guest CPU.
    pub guest_cpu: u32,
    /// Guest event-clock time, ns (converted for host samples).
    pub guest_time_ns: Option<u64>,
    /// For host samples: the clock error bound straddles a guest context switch, so the
    /// thread may be the neighbour's.
    pub ambiguous: bool,
}

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

/// A guest CPU's switch timeline: `(time, who from then on)`, sorted by time.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    entries: Vec<(u64, OnCpu)>,
    dropped: u64,
}

impl Timeline {
    /// Inserts an entry, keeping time order (appends in the common case).
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

#[derive(Debug, Clone)]
struct GuestMap {
    time: u64,
    start: u64,
    end: u64,
    pgoff: u64,
    key: Vec<u8>,
    path: String,
}

#[derive(Debug, Clone, Default)]
struct Task {
    /// `(time, comm)`, time order.
    comms: Vec<(u64, String)>,
    /// exec times (processes only).
    execs: Vec<u64>,
    maps: Vec<GuestMap>,
}

#[derive(Debug)]
struct Table {
    build_id: Vec<u8>,
    path: String,
    segments: Vec<Segment>,
    pending: Vec<WireSymbol>,
    table: Option<SymbolTable>,
}

/// Counters of what was received and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStats {
    /// Helper sessions (hellos) seen.
    pub sessions: u64,
    /// Messages applied.
    pub messages: u64,
    /// Samples received.
    pub samples: u64,
    /// Samples dropped over the budget.
    pub samples_dropped: u64,
    /// Switch records received.
    pub switches: u64,
    /// Switch records dropped over the budget.
    pub switches_dropped: u64,
    /// Records the guest kernel or helper reported lost.
    pub lost_sideband: u64,
    /// Samples the guest kernel reported lost.
    pub lost_samples: u64,
    /// Records the helper dropped itself (while disconnected).
    pub lost_helper: u64,
    /// Symbol tables complete.
    pub tables: u64,
    /// Symbols in them.
    pub symbols: u64,
    /// Maps received.
    pub maps: u64,
    /// Messages ignored (before a hello, for an unknown table).
    pub ignored: u64,
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

    /// Adds a note.
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

    /// Guest kernel symbols, when received and parsed.
    pub fn kallsyms(&self) -> Option<&Kallsyms> {
        self.kallsyms.as_ref()
    }

    /// Guest kernel modules.
    pub fn modules(&self) -> &[proto::Module] {
        &self.modules
    }

    /// The helper's samples received so far.
    pub fn samples(&self) -> &[GuestSample] {
        &self.samples
    }

    /// Takes the helper's samples out of the model.
    pub fn take_samples(&mut self) -> Vec<GuestSample> {
        self.bytes = self
            .bytes
            .saturating_sub(self.samples.len() * std::mem::size_of::<GuestSample>());
        std::mem::take(&mut self.samples)
    }

    /// The timeline of guest CPU `cpu`.
    pub fn timeline(&self, cpu: u32) -> Option<&Timeline> {
        self.timelines.get(&cpu)
    }

    /// Estimated heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.bytes
    }

    /// Number of complete symbol tables.
    pub fn table_count(&self) -> usize {
        self.tables.values().filter(|t| t.table.is_some()).count()
    }

    /// Complete symbol tables: `(guest path, build-id in hex, symbols)`, by path.
    pub fn tables(&self) -> Vec<(String, String, usize)> {
        let mut v: Vec<(String, String, usize)> = self
            .tables
            .values()
            .filter_map(|t| {
                let n = t.table.as_ref()?.len();
                let hex = t.build_id.iter().map(|b| format!("{b:02x}")).collect();
                Some((t.path.clone(), hex, n))
            })
            .collect();
        v.sort();
        v
    }

    /// Guest processes known: `(pid, latest comm)`.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self
            .tasks
            .iter()
            .filter(|(pid, _)| self.thread_pid.get(pid).is_none_or(|p| p == *pid))
            .map(|(pid, t)| {
                (
                    *pid,
                    t.comms.last().map(|c| c.1.clone()).unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    }

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

    fn see_time(&mut self, t: u64) {
        if t > self.max_time {
            self.max_time = t;
        }
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

    fn reset_for_reboot(&mut self) {
        let keep_vcpus = std::mem::take(&mut self.vcpu_tids);
        let notes = std::mem::take(&mut self.notes);
        let stats = std::mem::take(&mut self.stats);
        let samples = std::mem::take(&mut self.samples);
        let budget = self.budget;
        *self = GuestModel::new(self.vm_pid, budget);
        self.vcpu_tids = keep_vcpus;
        self.notes = notes;
        self.stats = stats;
        self.bytes = samples.len() * std::mem::size_of::<GuestSample>();
        self.samples = samples;
    }

    fn task_mut(&mut self, tid: u32) -> Result<&mut Task, ModelError> {
        if !self.tasks.contains_key(&tid) {
            if self.tasks.len() >= self.budget.max_tasks {
                return Err(limit(format!(
                    "more than {} guest tasks",
                    self.budget.max_tasks
                )));
            }
            self.charge(128)?;
        }
        Ok(self.tasks.entry(tid).or_default())
    }

    /// Applies one message.
    ///
    /// # Errors
    /// [`ModelError`] when the guest exceeds the [`Budget`] or breaks the message order; the
    /// caller drops the connection.
    pub fn apply(&mut self, m: Message) -> Result<(), ModelError> {
        self.stats.messages += 1;
        match m {
            Message::Hello(h) => {
                if let Some(old) = self.hello.as_ref().map(|o| o.boot_id.clone()) {
                    if old != h.boot_id {
                        self.reset_for_reboot();
                        self.note(format!(
                            "the guest rebooted (boot id {old} → {}): guest data before the reboot was dropped",
                            h.boot_id
                        ));
                    } else {
                        self.disconnected();
                    }
                }
                if h.cpus > self.budget.max_cpus {
                    return Err(limit(format!(
                        "hello announces {} CPUs (limit {})",
                        h.cpus, self.budget.max_cpus
                    )));
                }
                self.see_time(h.now_ns);
                self.stats.sessions += 1;
                self.kallsyms_text.clear();
                self.ready = false;
                self.hello = Some(h);
            }
            Message::Ready { now_ns } => {
                self.see_time(now_ns);
                self.ready = true;
            }
            Message::KallsymsChunk(b) => {
                if self.kallsyms_text.len() + b.len() > self.budget.max_kallsyms_bytes {
                    return Err(limit(format!(
                        "guest kallsyms larger than {} MiB",
                        self.budget.max_kallsyms_bytes >> 20
                    )));
                }
                self.charge(b.len())?;
                self.kallsyms_text.extend_from_slice(&b);
            }
            Message::KallsymsEnd { total } => {
                let text = std::mem::take(&mut self.kallsyms_text);
                self.bytes = self.bytes.saturating_sub(text.len());
                if total != text.len() as u64 {
                    return Err(ModelError::Sequence(format!(
                        "kallsyms end says {total} bytes, {} received",
                        text.len()
                    )));
                }
                let s = String::from_utf8_lossy(&text);
                match Kallsyms::parse(&s) {
                    Ok(k) => {
                        self.charge(k.len() * 40)?;
                        self.kallsyms = Some(k);
                    }
                    Err(e) => {
                        self.note(format!(
                            "guest kallsyms unusable: {}",
                            crate::error_chain(&e)
                        ));
                    }
                }
            }
            Message::Modules(m) => {
                self.charge(m.len() * 64)?;
                self.modules = m;
            }
            Message::Comm {
                pid,
                tid,
                time,
                exec,
                comm,
            } => {
                self.see_time(time);
                self.thread_pid.insert(tid, pid);
                self.charge(comm.len() + 16)?;
                let t = self.task_mut(tid)?;
                if t.comms.last().map(|c| &c.1) != Some(&comm) {
                    if t.comms.len() >= 64 {
                        t.comms.remove(0);
                    }
                    let i = t.comms.partition_point(|c| c.0 <= time);
                    t.comms.insert(i, (time, comm.clone()));
                }
                if tid != pid {
                    self.task_mut(pid)?;
                }
                if exec {
                    let p = self.task_mut(pid)?;
                    if p.execs.len() < 1024 {
                        p.execs.push(time);
                        p.execs.sort_unstable();
                    }
                    if tid != pid {
                        // The process took the exec'ing thread's name.
                        if p.comms.len() < 64 {
                            let i = p.comms.partition_point(|c| c.0 <= time);
                            p.comms.insert(i, (time, comm));
                        }
                    }
                }
            }
            Message::Mmap {
                pid,
                time,
                start,
                len,
                pgoff,
                file_key,
                path,
                ..
            } => {
                self.see_time(time);
                self.stats.maps += 1;
                let max = self.budget.max_maps_per_process;
                let end = start.saturating_add(len);
                self.charge(path.len() + file_key.len() + 64)?;
                let t = self.task_mut(pid)?;
                let dup = t.maps.iter().any(|m| {
                    m.start == start && m.end == end && m.pgoff == pgoff && m.key == file_key
                });
                if !dup {
                    if t.maps.len() >= max {
                        return Err(limit(format!("more than {max} maps for guest pid {pid}")));
                    }
                    t.maps.push(GuestMap {
                        time,
                        start,
                        end,
                        pgoff,
                        key: file_key,
                        path,
                    });
                }
            }
            Message::Task { kind, time, .. } => {
                let _ = kind;
                self.see_time(time);
            }
            Message::Switches(v) => {
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
            }
            Message::SymtabBegin {
                file_key,
                build_id,
                path,
                segments,
                symbol_count,
                ..
            } => {
                if symbol_count as usize > self.budget.max_symbols_per_table {
                    return Err(limit(format!(
                        "symbol table of {path} announces {symbol_count} symbols (limit {})",
                        self.budget.max_symbols_per_table
                    )));
                }
                if !self.tables.contains_key(&file_key)
                    && self.tables.len() >= self.budget.max_tables
                {
                    return Err(limit(format!(
                        "more than {} symbol tables",
                        self.budget.max_tables
                    )));
                }
                self.charge(path.len() + segments.len() * 32 + 128)?;
                if let Some(old) = self.tables.get(&file_key) {
                    if old.table.is_some() {
                        // Re-sent after a reconnect: keep the one we have.
                        self.stats.ignored += 1;
                        return Ok(());
                    }
                }
                self.tables.insert(
                    file_key,
                    Table {
                        build_id,
                        path,
                        segments,
                        pending: Vec::new(),
                        table: None,
                    },
                );
            }
            Message::SymtabChunk { file_key, symbols } => {
                let max = self.budget.max_symbols_per_table;
                let add: usize = symbols.iter().map(|s| s.name.len() + 40).sum();
                let Some(t) = self.tables.get_mut(&file_key) else {
                    return Err(ModelError::Sequence(
                        "symbol chunk for a table that was never begun".into(),
                    ));
                };
                if t.table.is_some() {
                    self.stats.ignored += 1;
                    return Ok(());
                }
                if t.pending.len() + symbols.len() > max {
                    return Err(limit(format!(
                        "symbol table of {} has more than {max} symbols",
                        t.path
                    )));
                }
                t.pending.extend(symbols);
                self.charge(add)?;
            }
            Message::SymtabEnd { file_key } => {
                let Some(t) = self.tables.get_mut(&file_key) else {
                    return Err(ModelError::Sequence(
                        "symbol table end for a table that was never begun".into(),
                    ));
                };
                if t.table.is_some() {
                    self.stats.ignored += 1;
                    return Ok(());
                }
                let pending = std::mem::take(&mut t.pending);
                let n = pending.len();
                let table = SymbolTable::from_entries(
                    pending
                        .into_iter()
                        .map(|s| (s.start, s.size, s.name))
                        .collect(),
                );
                t.table = Some(table);
                self.stats.tables += 1;
                self.stats.symbols += n as u64;
            }
            Message::Samples(v) => {
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
                self.charge(kept * std::mem::size_of::<GuestSample>())?;
            }
            Message::Lost { kind, count, .. } => match kind {
                proto::LOST_SIDEBAND => {
                    self.stats.lost_sideband = self.stats.lost_sideband.saturating_add(count)
                }
                proto::LOST_SAMPLES => {
                    self.stats.lost_samples = self.stats.lost_samples.saturating_add(count)
                }
                _ => self.stats.lost_helper = self.stats.lost_helper.saturating_add(count),
            },
            Message::Note { text, .. } => self.note(format!("guest helper: {text}")),
            Message::Bye { .. } | Message::Pong { .. } => {}
            Message::HostHello { .. } | Message::Ping { .. } => {
                return Err(ModelError::Sequence(
                    "host-to-guest message received from the guest".into(),
                ))
            }
        }
        Ok(())
    }

    /// The name of guest thread `tid` (process `pid`) at guest time `time`.
    pub fn comm(&self, pid: u32, tid: u32, time: u64) -> String {
        let pick = |t: &Task| -> Option<String> {
            let i = t.comms.partition_point(|c| c.0 <= time);
            let i = if i == 0 { 0 } else { i - 1 };
            t.comms.get(i).map(|c| c.1.clone())
        };
        if let Some(c) = self.tasks.get(&tid).and_then(pick) {
            return c;
        }
        if let Some(c) = self.tasks.get(&pid).and_then(pick) {
            return c;
        }
        if pid == 0 {
            return "swapper".into();
        }
        "[unknown]".into()
    }

    fn find_map(&self, pid: u32, ip: u64, time: u64) -> Option<&GuestMap> {
        let t = self.tasks.get(&pid)?;
        let last_exec = t.execs.iter().rev().find(|&&e| e <= time).copied();
        let containing = t.maps.iter().filter(|m| ip >= m.start && ip < m.end);
        // Latest map at or before `time` and not older than the last exec; else any.
        containing
            .clone()
            .filter(|m| m.time <= time && last_exec.is_none_or(|e| m.time >= e))
            .max_by_key(|m| m.time)
            .or_else(|| containing.max_by_key(|m| m.time))
    }

    /// Resolves a guest kernel address.
    pub fn kernel_symbol(&self, ip: u64) -> Symbol {
        match &self.kallsyms {
            None => Symbol::unknown(
                ip,
                "[guest.kernel]",
                "no guest kallsyms from the helper (kptr_restrict?)",
            ),
            Some(k) => match k.lookup(ip) {
                Some(s) => Symbol::named(
                    s.name,
                    crate::attribute::guest_dso(s.module, crate::record::CpuMode::GuestKernel),
                ),
                None => Symbol::unknown(ip, "[guest.kernel]", "address outside guest kallsyms"),
            },
        }
    }

    /// Resolves a guest user address of process `pid` at guest time `time`.
    pub fn user_symbol(&self, pid: u32, ip: u64, time: u64) -> Symbol {
        let Some(m) = self.find_map(pid, ip, time) else {
            return Symbol::unknown(ip, "[guest.user]", "no guest map contains the address");
        };
        let dso = m
            .path
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(&m.path)
            .to_string();
        let dso = if dso.is_empty() {
            "[guest.user]".to_string()
        } else {
            dso
        };
        if m.key.is_empty() {
            return Symbol::unknown(ip, dso, "the helper sent no symbol table for this file");
        }
        let Some(t) = self.tables.get(&m.key) else {
            return Symbol::unknown(ip, dso, "symbol table announced but never sent");
        };
        let Some(table) = &t.table else {
            return Symbol::unknown(ip, dso, "symbol table incomplete (connection ended)");
        };
        let off = ip.wrapping_sub(m.start).wrapping_add(m.pgoff);
        let Some(svma) = file_offset_to_svma(&t.segments, off) else {
            return Symbol::unknown(ip, dso, "file offset outside the file's segments");
        };
        match table.lookup(svma) {
            Some((name, _)) => Symbol::named(demangle(name), dso),
            None => Symbol::unknown(ip, dso, "no symbol at this address in the guest file"),
        }
    }

    fn vcpu_tid(&self, cpu: u32) -> i32 {
        self.vcpu_tids.get(&cpu).copied().unwrap_or(self.vm_pid)
    }

    /// Attributes one of the helper's samples. The sample's `pid` is the VMM pid, its `tid`
    /// the vCPU thread of the guest CPU (the VMM pid when unknown), its time the host time
    /// when the clock relation is known (else the guest time), its `cpu` `u32::MAX` (the host
    /// CPU is not known).
    pub fn attribute(&self, s: &GuestSample) -> (Attributed, GuestContext) {
        let (class, symbol) = match s.cpumode {
            CpuMode::GuestKernel => (Class::GuestKernel, self.kernel_symbol(s.ip)),
            _ => (
                Class::GuestUser,
                self.user_symbol(s.guest_pid, s.ip, s.guest_time_ns),
            ),
        };
        let time_ns = self
            .clock
            .guest_to_host(s.guest_time_ns, s.guest_cpu)
            .map_or(s.guest_time_ns, |x| x.0);
        let a = Attributed {
            sample: Sample {
                ip: s.ip,
                pid: self.vm_pid,
                tid: self.vcpu_tid(s.guest_cpu),
                time_ns,
                cpu: u32::MAX,
                period: s.period,
                cpumode: s.cpumode,
                exact_ip: false,
            },
            class,
            symbol,
            landing: false,
        };
        let ctx = GuestContext {
            guest_pid: Some(s.guest_pid),
            guest_tid: Some(s.guest_tid),
            comm: self.comm(s.guest_pid, s.guest_tid, s.guest_time_ns),
            process: self.comm(s.guest_pid, s.guest_pid, s.guest_time_ns),
            guest_cpu: s.guest_cpu,
            guest_time_ns: Some(s.guest_time_ns),
            ambiguous: false,
        };
        (a, ctx)
    }

    /// Attributes a sample the *host* kernel tagged as guest mode (VMX/SVM hosts): vCPU
    /// `vcpu` → guest CPU `vcpu` → the guest thread on it at the sample's instant (host time
    /// converted with [`GuestModel::clock`]) → that process's map → symbol. `class` and
    /// `symbol` of the returned sample are the guest's; everything else is kept.
    pub fn attribute_host(&self, s: &Sample, vcpu: u32) -> (Attributed, GuestContext) {
        let conv = self.clock.host_to_guest(s.time_ns, vcpu);
        let tl = self.timelines.get(&vcpu);
        let (who, ambiguous) = match (conv, tl) {
            (Some((g, err)), Some(tl)) => (tl.at(g), tl.switch_near(g, err)),
            _ => (None, false),
        };
        let (pid, tid) = match who {
            Some(OnCpu::Task { pid, tid }) => (Some(pid), Some(tid)),
            _ => (None, None),
        };
        let gtime = conv.map(|c| c.0);
        let (class, symbol) = match s.cpumode {
            CpuMode::GuestUser => (
                Class::GuestUser,
                match (pid, gtime) {
                    (Some(p), Some(t)) => self.user_symbol(p, s.ip, t),
                    _ => Symbol::unknown(
                        s.ip,
                        "[guest.user]",
                        if conv.is_none() {
                            "no host-to-guest clock relation"
                        } else if tl.is_none_or(|t| t.is_empty()) {
                            "no guest context switches received for this CPU"
                        } else if who.is_none() {
                            "sample before the first guest context switch on this CPU"
                        } else {
                            "guest thread unknown at this time (switched out, or the helper reconnected)"
                        },
                    ),
                },
            ),
            _ => (Class::GuestKernel, self.kernel_symbol(s.ip)),
        };
        let (comm, process) = match (pid, tid) {
            (Some(p), Some(t)) => (
                self.comm(p, t, gtime.unwrap_or(0)),
                self.comm(p, p, gtime.unwrap_or(0)),
            ),
            _ => ("[unknown]".into(), "[unknown]".into()),
        };
        (
            Attributed {
                sample: *s,
                class,
                symbol,
                landing: false,
            },
            GuestContext {
                guest_pid: pid,
                guest_tid: tid,
                comm,
                process,
                guest_cpu: vcpu,
                guest_time_ns: gtime,
                ambiguous,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::active::clock::RoundTrip;
    use hvprof_guest::proto::{ClockInfo, WireSwitch};

    fn hello(boot: &str) -> Message {
        Message::Hello(Hello {
            helper_version: "t".into(),
            kernel_release: "6.1".into(),
            boot_id: boot.into(),
            hostname: "g".into(),
            cpus: 2,
            clock: ClockInfo::default(),
            now_ns: 0,
            sampling_hz: 0,
            flags: 0,
        })
    }

    fn sw(cpu: u32, time: u64, pid: u32, tid: u32, out: bool) -> WireSwitch {
        WireSwitch {
            cpu,
            time,
            pid,
            tid,
            out,
            preempt: false,
        }
    }

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

    fn table_msgs(key: &[u8]) -> Vec<Message> {
        vec![
            Message::SymtabBegin {
                file_key: key.to_vec(),
                build_id: key.to_vec(),
                path: "/bin/hvprof-workload".into(),
                elf_type: 3,
                segments: vec![Segment {
                    offset: 0x1000,
                    vaddr: 0x1000,
                    filesz: 0x3000,
                    memsz: 0x3000,
                }],
                symbol_count: 3,
            },
            Message::SymtabChunk {
                file_key: key.to_vec(),
                symbols: vec![
                    WireSymbol {
                        start: 0x1100,
                        size: 0x100,
                        name: "hot_alpha".into(),
                    },
                    WireSymbol {
                        start: 0x1200,
                        size: 0x100,
                        name: "hot_beta".into(),
                    },
                    WireSymbol {
                        start: 0x1300,
                        size: 0x100,
                        name: "_ZN4core3fmt5write17h0123456789abcdefE".into(),
                    },
                ],
            },
            Message::SymtabEnd {
                file_key: key.to_vec(),
            },
        ]
    }

    fn model_with_process() -> GuestModel {
        let mut m = GuestModel::new(4242, Budget::default());
        m.set_vcpu_threads(&[(0, Some(5000)), (1, Some(5001))]);
        m.apply(hello("b")).unwrap();
        for t in table_msgs(b"BID1") {
            m.apply(t).unwrap();
        }
        m.apply(Message::Comm {
            pid: 77,
            tid: 77,
            time: 0,
            exec: false,
            comm: "hvprof-workload".into(),
        })
        .unwrap();
        m.apply(Message::Mmap {
            pid: 77,
            tid: 77,
            time: 0,
            start: 0x5555_0000_1000,
            len: 0x3000,
            pgoff: 0x1000,
            prot: 5,
            file_key: b"BID1".to_vec(),
            build_id: b"BID1".to_vec(),
            path: "/bin/hvprof-workload".into(),
        })
        .unwrap();
        let a = b"ffffffff81000000 T _stext\nffffffff81001000 T do_idle\nffffffff81002000 T ";
        let b = b"schedule\nffffffffc0000000 t vp_notify\t[virtio_pci]\n";
        m.apply(Message::KallsymsChunk(a.to_vec())).unwrap();
        m.apply(Message::KallsymsChunk(b.to_vec())).unwrap();
        m.apply(Message::KallsymsEnd {
            total: (a.len() + b.len()) as u64,
        })
        .unwrap();
        m
    }

    #[test]
    fn helper_samples_resolve_user_and_kernel() {
        let m = model_with_process();
        let s = GuestSample {
            ip: 0x5555_0000_1150,
            guest_pid: 77,
            guest_tid: 77,
            guest_time_ns: 10,
            guest_cpu: 1,
            cpumode: CpuMode::GuestUser,
            period: 1_000_000,
        };
        let (a, ctx) = m.attribute(&s);
        assert_eq!(a.symbol, Symbol::named("hot_alpha", "hvprof-workload"));
        assert_eq!(a.class, Class::GuestUser);
        assert_eq!(a.sample.pid, 4242);
        assert_eq!(a.sample.tid, 5001);
        assert_eq!(ctx.comm, "hvprof-workload");
        assert_eq!(ctx.guest_pid, Some(77));
        let (a, _) = m.attribute(&GuestSample {
            ip: 0x5555_0000_1350,
            ..s
        });
        assert_eq!(a.symbol.name, "core::fmt::write");
        let (a, _) = m.attribute(&GuestSample { ip: 0x9999, ..s });
        assert_eq!(a.symbol.name, "[unknown]");
        let (a, _) = m.attribute(&GuestSample {
            ip: 0xffff_ffff_8100_2010,
            cpumode: CpuMode::GuestKernel,
            ..s
        });
        assert_eq!(a.symbol, Symbol::named("schedule", "[guest.kernel]"));
        let (a, _) = m.attribute(&GuestSample {
            ip: 0xffff_ffff_c000_0004,
            cpumode: CpuMode::GuestKernel,
            ..s
        });
        assert_eq!(a.symbol, Symbol::named("vp_notify", "[guest.virtio_pci]"));
    }

    #[test]
    fn exec_replaces_maps() {
        let mut m = model_with_process();
        m.apply(Message::Comm {
            pid: 77,
            tid: 77,
            time: 1000,
            exec: true,
            comm: "other".into(),
        })
        .unwrap();
        // After the exec, the old map no longer applies... unless nothing else does.
        m.apply(Message::Mmap {
            pid: 77,
            tid: 77,
            time: 1001,
            start: 0x5555_0000_1000,
            len: 0x1000,
            pgoff: 0,
            prot: 5,
            file_key: vec![],
            build_id: vec![],
            path: "/bin/other".into(),
        })
        .unwrap();
        assert_eq!(
            m.user_symbol(77, 0x5555_0000_1150, 500).name,
            "hot_alpha",
            "before the exec"
        );
        let s = m.user_symbol(77, 0x5555_0000_1150, 2000);
        assert_eq!(s.dso, "other");
        assert_eq!(m.comm(77, 77, 500), "hvprof-workload");
        assert_eq!(m.comm(77, 77, 2000), "other");
    }

    #[test]
    fn host_tagged_samples_use_timeline_and_clock() {
        let mut m = model_with_process();
        m.apply(Message::Switches(vec![
            sw(1, 1_000_000, 77, 77, false),
            sw(1, 2_000_000, 77, 77, true),
            sw(1, 2_000_000, 0, 0, false),
        ]))
        .unwrap();
        let host = |t: u64, mode: CpuMode, ip: u64| Sample {
            ip,
            pid: 4242,
            tid: 5001,
            time_ns: t,
            cpu: 3,
            period: 1,
            cpumode: mode,
            exact_ip: false,
        };
        // No clock relation yet.
        let (a, ctx) = m.attribute_host(&host(1_500_000, CpuMode::GuestUser, 0x5555_0000_1150), 1);
        assert_eq!(a.symbol.name, "[unknown]");
        assert!(a.symbol.reason.as_deref().unwrap().contains("clock"));
        assert_eq!(ctx.guest_pid, None);
        // Guest clock = host clock + 500_000, ±10 ns.
        let mut rt = RoundTrip::default();
        rt.add(0, 20, 500_010);
        m.clock = ClockSync::RoundTrip(rt);
        let (a, ctx) = m.attribute_host(&host(1_000_000, CpuMode::GuestUser, 0x5555_0000_1150), 1);
        assert_eq!(a.symbol.name, "hot_alpha");
        assert_eq!(ctx.comm, "hvprof-workload");
        assert_eq!(ctx.guest_time_ns, Some(1_500_000));
        assert!(!ctx.ambiguous);
        assert_eq!(a.sample.cpu, 3, "host fields kept");
        // Converted to guest time 400_000: before the first switch.
        let (a, _) = m.attribute_host(&host(0, CpuMode::GuestUser, 0x5555_0000_1150), 1);
        assert!(a
            .symbol
            .reason
            .as_deref()
            .unwrap()
            .contains("before the first"));
        // Near a switch: ambiguous.
        let (_, ctx) = m.attribute_host(
            &host(1_499_995, CpuMode::GuestKernel, 0xffff_ffff_8100_1004),
            1,
        );
        assert!(ctx.ambiguous);
        // After the switch to idle: kernel symbol and swapper.
        let (a, ctx) = m.attribute_host(
            &host(1_600_000, CpuMode::GuestKernel, 0xffff_ffff_8100_1004),
            1,
        );
        assert_eq!(a.symbol.name, "do_idle");
        assert_eq!(ctx.comm, "swapper");
        // A CPU with no switches.
        let (a, _) = m.attribute_host(&host(1_600_000, CpuMode::GuestUser, 0x5555_0000_1150), 0);
        assert!(a
            .symbol
            .reason
            .as_deref()
            .unwrap()
            .contains("no guest context switches"));
    }

    #[test]
    fn limits_are_enforced() {
        let b = Budget {
            max_symbols_per_table: 10,
            max_tasks: 3,
            max_kallsyms_bytes: 8,
            ..Budget::default()
        };
        let mut m = GuestModel::new(1, b);
        let mut begin = table_msgs(b"k").remove(0);
        if let Message::SymtabBegin { symbol_count, .. } = &mut begin {
            *symbol_count = 11;
        }
        assert!(matches!(m.apply(begin), Err(ModelError::Limit(_))));
        assert!(matches!(
            m.apply(Message::SymtabChunk {
                file_key: b"zz".to_vec(),
                symbols: vec![]
            }),
            Err(ModelError::Sequence(_))
        ));
        for pid in 0..3 {
            m.apply(Message::Comm {
                pid,
                tid: pid,
                time: 0,
                exec: false,
                comm: "x".into(),
            })
            .unwrap();
        }
        assert!(m
            .apply(Message::Comm {
                pid: 9,
                tid: 9,
                time: 0,
                exec: false,
                comm: "x".into()
            })
            .is_err());
        assert!(m.apply(Message::KallsymsChunk(vec![b'a'; 9])).is_err());
        assert!(m
            .apply(Message::Ping {
                seq: 0,
                host_time: 0
            })
            .is_err());
    }
}
