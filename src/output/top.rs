//! `hvprof top`'s frames: what changed in the aggregate since the last refresh, per VM → vCPU
//! → class → symbols, beside the latest `hvprof stat` interval (VM exits by reason, steal per
//! vCPU), as a [`TopFrame`]; and its one text rendering (the lines of batch mode and of the
//! terminal UI's rows) and its JSON rendering (one object per frame).
//!
//! Stage: aggregation → **output**. Input: successive cumulative [`Profile`] snapshots of one
//! session (`crate::session::record_live`) and, optionally, a [`StatReport`] interval; output:
//! a [`TopFrame`] of the interval between the last two snapshots. No IO: whether a VM's process
//! still exists is the caller's question ([`TopState::frame`]'s `alive`).
//!
//! ```
//! use hvprof::output::top::{render_text, TopState};
//! # fn profile() -> hvprof::report::Profile { unimplemented!() }
//! # fn run() {
//! let mut state = TopState::default();
//! let frame = state.frame(&profile(), None, &|_pid| true);
//! print!("{}", render_text(&frame, 5));
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use serde::Serialize;

use crate::attribute::{Class, Symbol};
use crate::counters::Rate;
use crate::report::{ClassRow, Profile, SymbolRow, ThreadReport, VmReport};
use crate::stat::{StatReport, VmStat};

/// Symbols kept per VM and per thread in a frame, most samples first.
pub const FRAME_SYMBOLS: usize = 20;

/// Exit reasons kept per VM in a frame, most frequent first.
pub const FRAME_REASONS: usize = 6;

/// The class columns of top's rows: a label and the classes whose samples it adds up
/// (hypervisor: KVM, the rest of the host kernel and Xen together).
pub const COLUMNS: [(&str, &[Class]); 6] = [
    (
        "hyp",
        &[
            Class::HypervisorKvm,
            Class::HypervisorKernel,
            Class::HypervisorXen,
        ],
    ),
    ("vmm", &[Class::Vmm]),
    ("g-kern", &[Class::GuestKernel]),
    ("g-user", &[Class::GuestUser]),
    ("g-hid", &[Class::GuestHidden]),
    ("emul", &[Class::Emulation]),
];

/// Whether a VM's process is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// Its process exists.
    Running,
    /// Its process exited (or it dropped out of the session's machines); shown with zeros.
    Gone,
}

/// One refresh of `hvprof top`: the interval between two snapshots of the aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopFrame {
    /// Frame number, from 1.
    pub frame: u64,
    /// End of the interval, seconds since sampling started.
    pub time_s: f64,
    /// Length of the interval in seconds.
    pub interval_s: f64,
    /// Event sampled, e.g. `cpu-clock`.
    pub event: String,
    /// Sampling rate.
    pub rate: Rate,
    /// `threads` (`-p`) or `system-wide` (`-a`).
    pub mode: String,
    /// Whether `cpu_percent` is measured: the event's period is in ns (cpu-clock, task-clock),
    /// so a row's summed periods are its time on CPU. Otherwise rows carry `share` only.
    pub cpu_measured: bool,
    /// Samples of the interval, everything included.
    pub samples: u64,
    /// Records lost in the interval.
    pub lost: u64,
    /// VMs, most CPU first (most samples when CPU is not measured); gone VMs last.
    pub vms: Vec<TopVm>,
    /// Host processes that are not VMs (system-wide).
    pub host_other: Option<TopThread>,
    /// `hvprof stat`'s exit source of the latest interval (`StatReport::exit_source`), when
    /// its figures are attached.
    pub exit_source: Option<String>,
    /// Number of that stat interval.
    pub stat_interval: Option<u64>,
    /// Notes of the session and of the stat interval first seen in this frame.
    pub notes: Vec<String>,
}

/// One VM's interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopVm {
    /// VMM pid (KVM), -1 for a VM with no VMM process.
    pub pid: i32,
    /// VM name.
    pub name: String,
    /// Running or gone.
    pub state: VmState,
    /// vCPUs found.
    pub vcpu_count: usize,
    /// Time on CPU in the interval as a percentage of one CPU (above 100 for several busy
    /// vCPUs), when the frame's `cpu_measured`.
    pub cpu_percent: Option<f64>,
    /// Percent of the interval's samples (0–100).
    pub share: f64,
    /// Samples in the interval.
    pub samples: u64,
    /// Records lost in the interval.
    pub lost: u64,
    /// Class shares of the interval, percent of `samples`.
    pub classes: Vec<ClassRow>,
    /// Top symbols of the interval, percent of `samples`.
    pub top_symbols: Vec<SymbolRow>,
    /// vCPU threads, by index.
    pub vcpus: Vec<TopThread>,
    /// Other VMM threads with samples in the interval.
    pub other_threads: Vec<TopThread>,
    /// VM exits of the latest stat interval.
    pub exits: Option<TopExits>,
}

/// One thread's interval (a vCPU, another VMM thread, or the host's other processes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopThread {
    /// Thread id (-1 for the host's other processes).
    pub tid: i32,
    /// vCPU index.
    pub vcpu: Option<u32>,
    /// Thread name.
    pub name: String,
    /// Time on CPU in the interval, percent of one CPU, when measured.
    pub cpu_percent: Option<f64>,
    /// Percent of the interval's samples (0–100).
    pub share: f64,
    /// Samples in the interval.
    pub samples: u64,
    /// Class shares, percent of `samples`.
    pub classes: Vec<ClassRow>,
    /// Top symbols, percent of `samples`.
    pub top_symbols: Vec<SymbolRow>,
    /// Steal of the latest stat interval (vCPUs).
    pub steal: Option<TopSteal>,
    /// VM exits per second of the latest stat interval (vCPUs).
    pub exits_per_s: Option<f64>,
}

/// A VM's exits in the latest stat interval (`VmStat::exits`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopExits {
    /// The `source` field of the stat report (`tracepoint kvm:kvm_exit`, `debugfs`, `none`, ...).
    pub source: String,
    /// Exits counted.
    pub total: u64,
    /// Exits per second.
    pub per_s: f64,
    /// By reason, most frequent first.
    pub by_reason: Vec<TopReason>,
}

/// One exit reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopReason {
    /// Reason name (`HLT`, `IO_INSTRUCTION`, ...).
    pub name: String,
    /// Exits.
    pub count: u64,
    /// Per second.
    pub per_s: f64,
    /// Percent of the VM's exits.
    pub percent: f64,
}

/// A vCPU's steal in the latest stat interval (`VcpuStat::steal`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopSteal {
    /// The `source` field of the stat report (`schedstat`: run_delay of the vCPU thread).
    pub source: String,
    /// Runnable but not running, ms per second of wall time.
    pub ms_per_s: f64,
    /// The same as a percentage of wall time.
    pub percent: f64,
    /// Time on a CPU, percent of wall time.
    pub on_cpu_percent: f64,
}

/// What a VM looked like when last seen, to show it as gone.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    vcpu_count: usize,
}

/// Turns successive cumulative snapshots into frames: keeps the previous snapshot and the VMs
/// seen so far.
#[derive(Debug, Default)]
pub struct TopState {
    prev: Option<Profile>,
    frames: u64,
    seen: BTreeMap<i32, Seen>,
    notes_seen: HashSet<String>,
}

impl TopState {
    /// The frame of the interval from the previous snapshot (or the start) to `cur`, with the
    /// latest `stat` interval attached. `alive(pid)` says whether a VM's process still exists;
    /// VMs seen before and missing from `cur` are shown as gone.
    pub fn frame(
        &mut self,
        cur: &Profile,
        stat: Option<&StatReport>,
        alive: &dyn Fn(i32) -> bool,
    ) -> TopFrame {
        self.frames += 1;
        let prev = self.prev.take();
        let prev_ns = prev.as_ref().map_or(0, |p| p.meta.duration_ns);
        let interval_ns = cur.meta.duration_ns.saturating_sub(prev_ns);
        let cpu_measured = cur.meta.period_is_ns;
        let samples = cur
            .total_samples
            .saturating_sub(prev.as_ref().map_or(0, |p| p.total_samples));
        let ctx = Ctx {
            interval_ns,
            cpu_measured,
            samples,
        };
        let mut vms: Vec<TopVm> = cur
            .vms
            .iter()
            .map(|vm| {
                let before = prev
                    .as_ref()
                    .and_then(|p| p.vms.iter().find(|v| v.id == vm.id));
                let mut t = ctx.vm(vm, before);
                if !alive(vm.pid) {
                    t.state = VmState::Gone;
                }
                if let Some(s) = stat.and_then(|s| s.vms.iter().find(|s| s.pid == vm.pid)) {
                    attach_stat(&mut t, s);
                }
                t
            })
            .collect();
        for vm in &cur.vms {
            self.seen.insert(
                vm.pid,
                Seen {
                    name: vm.name.clone(),
                    vcpu_count: vm.vcpu_count,
                },
            );
        }
        for (pid, s) in &self.seen {
            if !cur.vms.iter().any(|v| v.pid == *pid) {
                vms.push(gone_vm(*pid, s));
            }
        }
        sort_vms(&mut vms);
        let host_other = cur.host_other.as_ref().map(|h| {
            let before = prev.as_ref().and_then(|p| p.host_other.as_ref());
            ctx.thread(h, before)
        });
        let stat_notes = stat.map(|s| s.notes.as_slice()).unwrap_or_default();
        let notes: Vec<String> = cur
            .notes
            .iter()
            .chain(stat_notes)
            .filter(|n| self.notes_seen.insert((*n).clone()))
            .cloned()
            .collect();
        let lost = cur
            .total_lost
            .saturating_sub(prev.as_ref().map_or(0, |p| p.total_lost));
        let frame = TopFrame {
            frame: self.frames,
            time_s: cur.meta.duration_ns as f64 / 1e9,
            interval_s: interval_ns as f64 / 1e9,
            event: cur.meta.event.clone(),
            rate: cur.meta.rate,
            mode: cur.meta.mode.clone(),
            cpu_measured,
            samples,
            lost,
            vms,
            host_other,
            exit_source: stat.map(|s| s.exit_source.clone()),
            stat_interval: stat.and_then(|s| s.interval),
            notes,
        };
        self.prev = Some(cur.clone());
        frame
    }
}

/// VMs by CPU (else samples), then pid; gone VMs last.
fn sort_vms(vms: &mut [TopVm]) {
    vms.sort_by(|a, b| {
        (a.state == VmState::Gone)
            .cmp(&(b.state == VmState::Gone))
            .then(
                b.cpu_percent
                    .unwrap_or(b.share)
                    .total_cmp(&a.cpu_percent.unwrap_or(a.share)),
            )
            .then(a.pid.cmp(&b.pid))
    });
}

/// A VM no longer in the session's snapshots.
fn gone_vm(pid: i32, s: &Seen) -> TopVm {
    TopVm {
        pid,
        name: s.name.clone(),
        state: VmState::Gone,
        vcpu_count: s.vcpu_count,
        cpu_percent: None,
        share: 0.0,
        samples: 0,
        lost: 0,
        classes: Vec::new(),
        top_symbols: Vec::new(),
        vcpus: Vec::new(),
        other_threads: Vec::new(),
        exits: None,
    }
}

/// What every row of one frame is measured against.
struct Ctx {
    interval_ns: u64,
    cpu_measured: bool,
    samples: u64,
}

impl Ctx {
    fn cpu(&self, period: u64) -> Option<f64> {
        (self.cpu_measured && self.interval_ns > 0)
            .then(|| period as f64 * 100.0 / self.interval_ns as f64)
    }

    fn share(&self, samples: u64) -> f64 {
        pct(samples, self.samples)
    }

    fn vm(&self, cur: &VmReport, prev: Option<&VmReport>) -> TopVm {
        let classes = sub_classes(&cur.classes, prev.map(|p| p.classes.as_slice()));
        let period: u64 = classes.iter().map(|c| c.period).sum();
        let samples = cur.samples.saturating_sub(prev.map_or(0, |p| p.samples));
        let threads = |cur: &[ThreadReport], prev: Option<&[ThreadReport]>| {
            cur.iter()
                .map(|t| {
                    let before = prev.and_then(|p| p.iter().find(|b| b.tid == t.tid));
                    self.thread(t, before)
                })
                .collect::<Vec<_>>()
        };
        let mut other_threads = threads(&cur.other_threads, prev.map(|p| &p.other_threads[..]));
        other_threads.retain(|t| t.samples > 0);
        TopVm {
            pid: cur.pid,
            name: cur.name.clone(),
            state: VmState::Running,
            vcpu_count: cur.vcpu_count,
            cpu_percent: self.cpu(period),
            share: self.share(samples),
            samples,
            lost: cur.lost.saturating_sub(prev.map_or(0, |p| p.lost)),
            classes: with_percent(classes, samples),
            top_symbols: sub_symbols(
                &cur.top_symbols,
                prev.map(|p| p.top_symbols.as_slice()),
                samples,
            ),
            vcpus: threads(&cur.vcpus, prev.map(|p| &p.vcpus[..])),
            other_threads,
            exits: None,
        }
    }

    fn thread(&self, cur: &ThreadReport, prev: Option<&ThreadReport>) -> TopThread {
        let samples = cur.samples.saturating_sub(prev.map_or(0, |p| p.samples));
        let period = cur.period.saturating_sub(prev.map_or(0, |p| p.period));
        let classes = sub_classes(&cur.classes, prev.map(|p| p.classes.as_slice()));
        TopThread {
            tid: cur.tid,
            vcpu: cur.vcpu,
            name: cur.name.clone(),
            cpu_percent: self.cpu(period),
            share: self.share(samples),
            samples,
            classes: with_percent(classes, samples),
            top_symbols: sub_symbols(
                &cur.top_symbols,
                prev.map(|p| p.top_symbols.as_slice()),
                samples,
            ),
            steal: None,
            exits_per_s: None,
        }
    }
}

/// `part` as a percentage of `whole` (0 for an empty whole).
fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Class rows of the interval: `cur − prev` per class, empty classes dropped.
fn sub_classes(cur: &[ClassRow], prev: Option<&[ClassRow]>) -> Vec<ClassRow> {
    cur.iter()
        .filter_map(|c| {
            let before = prev.and_then(|p| p.iter().find(|b| b.class == c.class));
            let samples = c.samples.saturating_sub(before.map_or(0, |b| b.samples));
            let period = c.period.saturating_sub(before.map_or(0, |b| b.period));
            (samples > 0).then_some(ClassRow {
                class: c.class,
                samples,
                period,
                percent: 0.0,
            })
        })
        .collect()
}

/// Sets each row's percent of `total`.
fn with_percent(mut rows: Vec<ClassRow>, total: u64) -> Vec<ClassRow> {
    for r in &mut rows {
        r.percent = pct(r.samples, total);
    }
    rows
}

/// Symbol rows of the interval: `cur − prev` per (class, symbol), most samples first, at most
/// [`FRAME_SYMBOLS`], percent of `total`.
fn sub_symbols(cur: &[SymbolRow], prev: Option<&[SymbolRow]>, total: u64) -> Vec<SymbolRow> {
    let before: HashMap<(Class, &Symbol), u64> = prev
        .unwrap_or_default()
        .iter()
        .map(|r| ((r.class, &r.symbol), r.samples))
        .collect();
    let mut rows: Vec<SymbolRow> = cur
        .iter()
        .filter_map(|r| {
            let b = before.get(&(r.class, &r.symbol)).copied().unwrap_or(0);
            let samples = r.samples.saturating_sub(b);
            (samples > 0).then(|| SymbolRow {
                class: r.class,
                symbol: r.symbol.clone(),
                samples,
                percent: pct(samples, total),
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.symbol.name.cmp(&b.symbol.name))
    });
    rows.truncate(FRAME_SYMBOLS);
    rows
}

/// Attaches a stat interval's exits (per VM), steal and exit rate (per vCPU).
fn attach_stat(vm: &mut TopVm, s: &VmStat) {
    if s.exited {
        vm.state = VmState::Gone;
    }
    let mut by_reason: Vec<TopReason> = s
        .exits
        .by_reason
        .iter()
        .map(|r| TopReason {
            name: r.name.clone(),
            count: r.count,
            per_s: r.per_s,
            percent: r.percent,
        })
        .collect();
    by_reason.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    by_reason.truncate(FRAME_REASONS);
    vm.exits = Some(TopExits {
        source: s.exits.source.clone(),
        total: s.exits.total,
        per_s: s.exits.per_s,
        by_reason,
    });
    for t in &mut vm.vcpus {
        let Some(v) = s.vcpus.iter().find(|v| Some(v.index) == t.vcpu) else {
            continue;
        };
        t.exits_per_s = Some(v.exits.per_s);
        t.steal = v.steal.as_ref().map(|st| TopSteal {
            source: st.source.clone(),
            ms_per_s: st.ms_per_s,
            percent: st.percent,
            on_cpu_percent: st.on_cpu_percent,
        });
    }
}

/// The share of each of [`COLUMNS`] in `classes`, percent.
pub fn column_shares(classes: &[ClassRow]) -> [f64; COLUMNS.len()] {
    let mut out = [0.0; COLUMNS.len()];
    for (i, (_, members)) in COLUMNS.iter().enumerate() {
        out[i] = classes
            .iter()
            .filter(|c| members.contains(&c.class))
            .fold(0.0, |sum, c| sum + c.percent);
    }
    out
}

/// The frame's first line: number, time, interval, event, mode, samples.
pub fn header_line(f: &TopFrame) -> String {
    let rate = match f.rate {
        Rate::Frequency(hz) => format!("{hz} Hz"),
        Rate::Period(n) => format!("period {n}"),
    };
    format!(
        "hvprof top: frame {} at {:.2} s (interval {:.2} s), event {} {}, {} mode, {} VMs, {} samples, lost {}",
        f.frame,
        f.time_s,
        f.interval_s,
        f.event,
        rate,
        f.mode,
        f.vms.iter().filter(|v| v.state == VmState::Running).count(),
        f.samples,
        f.lost
    )
}

/// The column titles of [`vm_line`] and [`thread_line`]: `CPU%` when CPU time is measured,
/// `SAMP%` (share of the samples) otherwise.
pub fn column_header(cpu_measured: bool) -> String {
    let mut s = format!(
        "{:>8} {:<28} {:<7} {:>6} {:>7}",
        "PID",
        "VM / vCPU",
        "STATE",
        if cpu_measured { "CPU%" } else { "SAMP%" },
        "SAMPLES"
    );
    for (label, _) in COLUMNS {
        let _ = write!(s, " {label:>6}");
    }
    s.push_str("  TOP SYMBOL");
    s
}

/// `CPU%` (or the share) and samples, then the class columns and the top symbol of one row.
fn figures(
    cpu: Option<f64>,
    share: f64,
    samples: u64,
    classes: &[ClassRow],
    top: Option<&SymbolRow>,
) -> String {
    let mut s = format!("{:>6.1} {:>7}", cpu.unwrap_or(share), samples);
    for v in column_shares(classes) {
        if v > 0.0 {
            let _ = write!(s, " {v:>6.1}");
        } else {
            let _ = write!(s, " {:>6}", "-");
        }
    }
    if let Some(t) = top {
        let _ = write!(s, "  {} {}", t.symbol.display_name(), t.symbol.dso);
    }
    s
}

/// Cuts `s` to `n` characters.
fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// One VM's row: pid, name, state, CPU, samples, class columns, top symbol.
pub fn vm_line(v: &TopVm) -> String {
    let state = match v.state {
        VmState::Running => "running",
        VmState::Gone => "gone",
    };
    format!(
        "{:>8} {:<28} {:<7} {}",
        v.pid,
        cut(&format!("{} ({} vCPUs)", v.name, v.vcpu_count), 28),
        state,
        figures(
            v.cpu_percent,
            v.share,
            v.samples,
            &v.classes,
            v.top_symbols.first()
        )
    )
}

/// One thread's row under its VM: `vCPU N tid T` or `thread T NAME`.
pub fn thread_line(t: &TopThread) -> String {
    let who = match t.vcpu {
        Some(i) => format!("vCPU {i} tid {}", t.tid),
        None if t.tid >= 0 => format!("tid {} {}", t.tid, t.name),
        None => t.name.clone(),
    };
    format!(
        "{:>8}   {:<26} {:<7} {}",
        "",
        cut(&who, 26),
        "",
        figures(
            t.cpu_percent,
            t.share,
            t.samples,
            &t.classes,
            t.top_symbols.first()
        )
    )
}

/// One symbol's row under a VM or thread: percent, samples, class, name, object.
pub fn symbol_line(r: &SymbolRow) -> String {
    format!(
        "{:>11}{:>6.1}% {:>7}  {:<17} {} {}",
        "",
        r.percent,
        r.samples,
        r.class.key(),
        r.symbol.display_name(),
        r.symbol.dso
    )
}

/// A VM's exits line: rate, total and top reasons, naming the stat report's source field.
pub fn exits_line(v: &TopVm) -> String {
    let Some(e) = &v.exits else {
        return format!("{:>8} exits: no stat interval for this VM yet", v.pid);
    };
    let mut s = format!(
        "{:>8} exits [source: {}]: {:.0}/s ({} in the interval)",
        v.pid, e.source, e.per_s, e.total
    );
    for r in &e.by_reason {
        let _ = write!(s, ", {} {:.0}/s ({:.0}%)", r.name, r.per_s, r.percent);
    }
    s
}

/// A VM's steal line: each vCPU's run delay (ms/s and percent), naming the source field.
pub fn steal_line(v: &TopVm) -> String {
    let source = v
        .vcpus
        .iter()
        .find_map(|t| t.steal.as_ref())
        .map_or("none", |s| s.source.as_str());
    let mut s = format!("{:>8} steal [source: {source}]:", v.pid);
    let mut any = false;
    for t in &v.vcpus {
        if let (Some(i), Some(st)) = (t.vcpu, &t.steal) {
            let _ = write!(
                s,
                "{} vCPU {i} {:.1} ms/s ({:.1}%, on CPU {:.0}%)",
                if any { "," } else { "" },
                st.ms_per_s,
                st.percent,
                st.on_cpu_percent
            );
            any = true;
        }
    }
    if !any {
        s.push_str(" no stat interval for this VM yet");
    }
    s
}

/// Renders a frame as plain text (batch mode): the header, then per VM its row, its vCPUs and
/// other busy threads, its `top` symbols, its exits and steal; a blank line ends the frame.
pub fn render_text(f: &TopFrame, top: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", header_line(f));
    if let Some(src) = &f.exit_source {
        let _ = writeln!(
            o,
            "exits and steal: hvprof stat interval {} (exit source: {src})",
            f.stat_interval.unwrap_or(0)
        );
    }
    let _ = writeln!(o, "{}", column_header(f.cpu_measured));
    for v in &f.vms {
        let _ = writeln!(o, "{}", vm_line(v));
        for t in v.vcpus.iter().chain(&v.other_threads) {
            let _ = writeln!(o, "{}", thread_line(t));
        }
        for r in v.top_symbols.iter().take(top) {
            let _ = writeln!(o, "{}", symbol_line(r));
        }
        if v.state == VmState::Running {
            let _ = writeln!(o, "{}", exits_line(v));
            let _ = writeln!(o, "{}", steal_line(v));
        }
    }
    if let Some(h) = f.host_other.as_ref().filter(|h| h.samples > 0) {
        let _ = writeln!(o, "{}", thread_line(h));
    }
    for n in &f.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o.push('\n');
    o
}

/// Renders a frame as one line of JSON (no trailing newline).
pub fn render_json(f: &TopFrame) -> String {
    serde_json::to_string(f).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{GuestIpStatus, Meta};

    /// Each sample is 1 ms of cpu-clock (1 kHz).
    const MS: u64 = 1_000_000;

    /// A thread with `(class, symbol, samples)` rows.
    fn thread(tid: i32, vcpu: Option<u32>, rows: &[(Class, &str, u64)]) -> ThreadReport {
        let samples: u64 = rows.iter().map(|r| r.2).sum();
        let mut classes: Vec<ClassRow> = Vec::new();
        for &(class, _, n) in rows {
            match classes.iter_mut().find(|c| c.class == class) {
                Some(c) => {
                    c.samples += n;
                    c.period += n * MS;
                }
                None => classes.push(ClassRow {
                    class,
                    samples: n,
                    period: n * MS,
                    percent: 0.0,
                }),
            }
        }
        ThreadReport {
            tid,
            vcpu,
            name: format!("t{tid}"),
            samples,
            period: samples * MS,
            on_cpu_ns: None,
            expected_samples: None,
            lost: 0,
            throttled: 0,
            classes,
            top_symbols: rows
                .iter()
                .map(|&(class, name, n)| SymbolRow {
                    class,
                    symbol: Symbol::named(name, "[guest]"),
                    samples: n,
                    percent: 0.0,
                })
                .collect(),
        }
    }

    /// A VM whose totals are its threads' sums.
    fn vm(pid: i32, vcpus: Vec<ThreadReport>) -> VmReport {
        let mut classes: Vec<ClassRow> = Vec::new();
        let mut syms: Vec<SymbolRow> = Vec::new();
        for t in &vcpus {
            for c in &t.classes {
                match classes.iter_mut().find(|x| x.class == c.class) {
                    Some(x) => {
                        x.samples += c.samples;
                        x.period += c.period;
                    }
                    None => classes.push(c.clone()),
                }
            }
            for r in &t.top_symbols {
                match syms.iter_mut().find(|x| x.symbol == r.symbol) {
                    Some(x) => x.samples += r.samples,
                    None => syms.push(r.clone()),
                }
            }
        }
        VmReport {
            id: crate::model::VmId::Vmm(pid),
            pid,
            name: format!("vm{pid}"),
            vcpu_count: vcpus.len(),
            samples: vcpus.iter().map(|t| t.samples).sum(),
            lost: 0,
            throttled: 0,
            classes,
            top_symbols: syms,
            vcpus,
            other_threads: Vec::new(),
            guest: None,
        }
    }

    fn profile(secs: u64, vms: Vec<VmReport>) -> Profile {
        Profile {
            schema: crate::report::SCHEMA_VERSION,
            meta: Meta {
                event: "cpu-clock".into(),
                rate: Rate::Frequency(1000),
                period_is_ns: true,
                duration_ns: secs * 1_000_000_000,
                mode: "threads".into(),
                host: "h".into(),
                kernel: "k".into(),
                start_unix_ns: 0,
            },
            guest_ips: GuestIpStatus::default(),
            notes: vec!["a note".into()],
            total_samples: vms.iter().map(|v| v.samples).sum(),
            vms,
            host_other: None,
            total_lost: 0,
            total_throttled: 0,
        }
    }

    #[test]
    fn a_frame_is_the_difference_of_two_snapshots() {
        let mut st = TopState::default();
        let p1 = profile(
            1,
            vec![vm(
                10,
                vec![
                    thread(11, Some(0), &[(Class::GuestUser, "hot_a", 900)]),
                    thread(12, Some(1), &[(Class::GuestUser, "hot_b", 100)]),
                ],
            )],
        );
        let f1 = st.frame(&p1, None, &|_| true);
        assert_eq!(f1.frame, 1);
        assert_eq!(f1.samples, 1000);
        assert_eq!(f1.notes, vec!["a note".to_string()]);
        let v = &f1.vms[0];
        assert!((v.cpu_percent.unwrap() - 100.0).abs() < 1e-9, "{v:?}");
        assert_eq!(v.top_symbols[0].symbol.name, "hot_a");

        // Second second: vCPU 1 takes over, vCPU 0 spends time in the hypervisor.
        let p2 = profile(
            2,
            vec![vm(
                10,
                vec![
                    thread(
                        11,
                        Some(0),
                        &[
                            (Class::GuestUser, "hot_a", 950),
                            (Class::HypervisorKvm, "vmx_vcpu_run", 50),
                        ],
                    ),
                    thread(12, Some(1), &[(Class::GuestUser, "hot_b", 1000)]),
                ],
            )],
        );
        let f2 = st.frame(&p2, None, &|_| true);
        assert!(f2.notes.is_empty(), "notes are shown once: {:?}", f2.notes);
        assert!((f2.interval_s - 1.0).abs() < 1e-9);
        assert_eq!(f2.samples, 1000);
        let v = &f2.vms[0];
        assert_eq!(v.samples, 1000);
        assert!((v.cpu_percent.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(v.top_symbols[0].symbol.name, "hot_b");
        assert_eq!(v.top_symbols[0].samples, 900);
        assert!((v.top_symbols[0].percent - 90.0).abs() < 1e-9);
        let v0 = &v.vcpus[0];
        assert_eq!(v0.samples, 100);
        assert!((v0.cpu_percent.unwrap() - 10.0).abs() < 1e-9);
        let cols = column_shares(&v0.classes);
        assert!((cols[0] - 50.0).abs() < 1e-9, "hyp column: {cols:?}");
        assert!((cols[3] - 50.0).abs() < 1e-9, "g-user column: {cols:?}");
        let text = render_text(&f2, 5);
        assert!(text.contains("      10 vm10 (2 vCPUs)"), "{text}");
        assert!(text.contains("vCPU 1 tid 12"), "{text}");
        assert!(text.contains("hot_b [guest]"), "{text}");
        assert!(text.contains("exits: no stat interval"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&f2)).unwrap();
        assert_eq!(json["frame"], 2);
        assert_eq!(json["vms"][0]["pid"], 10);
        assert_eq!(json["vms"][0]["state"], "running");
    }

    #[test]
    fn vms_sort_by_cpu_and_gone_vms_stay_marked() {
        let mut st = TopState::default();
        let small = |s| {
            vm(
                20,
                vec![thread(21, Some(0), &[(Class::GuestKernel, "idle", s)])],
            )
        };
        let big = |s| {
            vm(
                30,
                vec![thread(31, Some(0), &[(Class::GuestUser, "spin", s)])],
            )
        };
        let f = st.frame(&profile(1, vec![small(10), big(900)]), None, &|_| true);
        let pids: Vec<i32> = f.vms.iter().map(|v| v.pid).collect();
        assert_eq!(pids, [30, 20]);
        // VM 30 leaves the machines (system-wide rediscovery); VM 20's process is gone too.
        let f = st.frame(&profile(2, vec![small(20)]), None, &|pid| pid != 20);
        let states: Vec<(i32, VmState)> = f.vms.iter().map(|v| (v.pid, v.state)).collect();
        assert_eq!(states, [(20, VmState::Gone), (30, VmState::Gone)]);
        assert_eq!(f.vms[1].name, "vm30");
        assert!(
            !render_text(&f, 5).contains("exits"),
            "gone VMs have no exits line"
        );
    }

    fn exits(per_s: f64, reasons: &[(&str, u64)]) -> crate::stat::ExitStat {
        let total: u64 = reasons.iter().map(|r| r.1).sum();
        crate::stat::ExitStat {
            source: "tracepoint kvm:kvm_exit".into(),
            total,
            per_s,
            by_reason: reasons
                .iter()
                .map(|&(name, count)| crate::stat::ReasonStat {
                    isa: None,
                    code: None,
                    name: name.into(),
                    count,
                    per_s: count as f64,
                    percent: pct(count, total),
                    latency: None,
                })
                .collect(),
            latency_source: None,
            latency: None,
            unmatched: 0,
            undecodable: 0,
            userspace_exits: Vec::new(),
            pio: Vec::new(),
            mmio: Vec::new(),
            mmio_other: 0,
            hypercalls: Vec::new(),
            tracepoints: Vec::new(),
        }
    }

    /// One second of `hvprof stat` for VM `pid` with one vCPU: 300 exits, 12.5 ms/s steal.
    fn stat_fixture(pid: i32) -> StatReport {
        let reasons = [("IO_INSTRUCTION", 100), ("HLT", 200)];
        StatReport {
            interval: Some(1),
            start_s: 0.0,
            duration_s: 1.0,
            exit_source: "tracepoint kvm:kvm_exit".into(),
            vms: vec![VmStat {
                pid,
                name: "vm".into(),
                exited: false,
                exits: exits(300.0, &reasons),
                vcpus: vec![crate::stat::VcpuStat {
                    index: 0,
                    tid: Some(pid + 1),
                    exited: false,
                    exits: exits(300.0, &reasons),
                    steal: Some(crate::stat::steal::VcpuSteal {
                        source: "schedstat".into(),
                        run_delay_ns: 12_500_000,
                        ms_per_s: 12.5,
                        percent: 1.25,
                        on_cpu_ns: 900_000_000,
                        on_cpu_percent: 90.0,
                        per_tick: None,
                        tick_ms: 20.0,
                    }),
                }],
                debugfs: None,
            }],
            guest_steal: None,
            xen_hypercalls: crate::stat::XenHypercalls {
                source: "none".into(),
                available: false,
                detail: None,
                total: 0,
                by_op: Vec::new(),
                lost: 0,
                corrupt: 0,
                ring_errors: 0,
            },
            tracepoints: Vec::new(),
            notes: vec!["stat note".into()],
        }
    }

    #[test]
    fn stat_figures_name_their_source() {
        let mut st = TopState::default();
        let p = profile(
            1,
            vec![vm(
                40,
                vec![thread(41, Some(0), &[(Class::GuestUser, "f", 5)])],
            )],
        );
        let stat = stat_fixture(40);
        let f = st.frame(&p, Some(&stat), &|_| true);
        let v = &f.vms[0];
        let line = exits_line(v);
        assert!(
            line.contains("[source: tracepoint kvm:kvm_exit]: 300/s"),
            "{line}"
        );
        assert!(line.contains("HLT 200/s (67%)"), "{line}");
        let steal = steal_line(v);
        assert!(
            steal.contains("[source: schedstat]: vCPU 0 12.5 ms/s (1.2%"),
            "{steal}"
        );
        assert_eq!(f.exit_source.as_deref(), Some("tracepoint kvm:kvm_exit"));
        assert_eq!(v.vcpus[0].exits_per_s, Some(300.0));
    }
}
