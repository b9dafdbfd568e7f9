//! pprof output (`--format pprof`): the [`Profile`]'s call stacks as a gzipped `profile.proto`
//! (google/pprof's format, [`proto`]), which `go tool pprof`, Grafana Pyroscope, Parca and
//! Polar Signals read.
//!
//! Input: a [`Profile`] snapshot (built with an unlimited symbol count, `top = usize::MAX`, so
//! nothing is cut). Output: [`build`] gives the message, [`write()`] and [`render`] its gzipped
//! bytes.
//!
//! What goes in (docs/formats.md, "pprof"):
//! - **sample types**: `samples`/`count`, then `cpu`/`nanoseconds` when the event's period is
//!   in ns (cpu-clock, task-clock), else `<event>`/`count` (e.g. `cycles`/`count`). The default
//!   sample type is `samples`, so `go tool pprof -top` shows the same shares as hvprof's text
//!   report; `-sample_index=cpu` switches to time.
//! - **period**: `cpu`/`nanoseconds` and `1e9 / Hz` for a clock event at a frequency; the
//!   event and `-c N` for a fixed period; 0 when the kernel adjusts the period (`-F` on a
//!   hardware event).
//! - **stacks**: each [`StackRow`] becomes one sample with its locations **leaf first** (pprof's
//!   order; `StackRow::frames` is root first). One `Location` per distinct (symbol, dso,
//!   class), with one `Line` to its `Function` (`name` = [`Symbol::display_name`],
//!   `system_name` = [`Symbol::name`], `filename` = the dso); one `Mapping` per dso, marked
//!   `has_functions` so readers do not try to symbolize. An `[unknown]` frame's location keeps
//!   its address.
//! - **labels** on every sample, all strings: `vm` (name), `vm_id` (the VMM pid on KVM, the
//!   domid on Xen), `vcpu` (index), `class` (the leaf frame's class key, e.g. `guest-user`),
//!   `thread` (host thread name), `guest_pid` and `comm` (guest process, active mode), `origin`
//!   (`host` or `helper`). Labels that do not apply are left out. Numbers are string labels
//!   too: Go's pprof drops a numeric label whose value is 0 and has no unit (vCPU 0, the
//!   guest's idle pid 0), and Pyroscope ingests string labels only.
//! - **no double counting** in active mode: when the VM's guest view is not in the class table
//!   ([`GuestView::in_class_table`] `== false`), the helper's stacks describe the same time as
//!   the host's vCPU samples; they are written as separate samples labelled `origin=helper`, so
//!   `go tool pprof -tagignore=origin=helper -relative_percentages` gives the host's view (the
//!   text report's shares) and `-tagfocus=origin=helper` the guest's. When it is in the class
//!   table, the helper's stacks replace the host's guest-kernel and guest-user samples of that
//!   VM (which are left out).
//! - **profiles built without stacks** (no [`VmReport::stacks`]): one-frame stacks from each
//!   thread's top symbols, as [`super::flame::folded`] does, with the thread's period shared in
//!   proportion to samples; likewise the guest processes' top symbols (labelled
//!   `origin=helper`) when the guest view is not in the class table.
//! - `time_nanos` = the start (Unix ns), `duration_nanos` = the collection's duration, and
//!   comments (`go tool pprof -comments`) with the event, host and the report's notes.
//!
//! ```
//! # fn demo(profile: &hvprof::report::Profile) -> std::io::Result<()> {
//! let gz: Vec<u8> = hvprof::output::pprof::render(profile)?;
//! std::fs::write("hvprof.pb.gz", gz)?; // go tool pprof -top hvprof.pb.gz
//! # Ok(()) }
//! ```

pub mod proto;

use std::io::Write;

use rustc_hash::FxHashMap;

use crate::attribute::{Class, Symbol};
use crate::counters::Rate;
use crate::report::{GuestProc, GuestView, Profile, StackOrigin, StackRow, ThreadReport, VmReport};

/// Builds the pprof message of `p` (see the module docs for what goes in).
pub fn build(p: &Profile) -> proto::Profile {
    let mut b = Builder::default();
    b.string(""); // index 0 is "" (profile.proto)
    let m = &p.meta;
    let samples_type = vt(&mut b, "samples", "count");
    let (period_type, period) = if m.period_is_ns {
        let period = match m.rate {
            Rate::Frequency(hz) if hz > 0 => 1_000_000_000 / hz,
            Rate::Frequency(_) => 0,
            Rate::Period(n) => n,
        };
        (vt(&mut b, "cpu", "nanoseconds"), period)
    } else {
        let period = match m.rate {
            Rate::Frequency(_) => 0,
            Rate::Period(n) => n,
        };
        (vt(&mut b, &m.event, "count"), period)
    };
    let rate = match m.rate {
        Rate::Frequency(hz) => format!("{hz} Hz"),
        Rate::Period(n) => format!("period {n}"),
    };
    let mut comment = vec![b.string(&format!(
        "hvprof: event {}, {rate}, {} mode, host {} (Linux {})",
        m.event, m.mode, m.host, m.kernel
    ))];
    for n in &p.notes {
        comment.push(b.string(&format!("note: {n}")));
    }
    for vm in &p.vms {
        b.vm(vm);
    }
    if let Some(h) = &p.host_other {
        let who = Who::thread(None, h, StackOrigin::Host);
        if p.host_stacks.is_empty() {
            b.thread_symbols(&who, h, false);
        } else {
            for s in &p.host_stacks {
                b.stack_row(None, s);
            }
        }
    }
    proto::Profile {
        sample_type: vec![samples_type.clone(), period_type.clone()],
        sample: b.samples,
        mapping: b.mappings,
        location: b.locations,
        function: b.functions,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: i64_sat(m.start_unix_ns),
        duration_nanos: i64_sat(m.duration_ns),
        period_type: Some(period_type),
        period: i64_sat(period),
        comment,
        default_sample_type: samples_type.r#type,
        doc_url: 0,
        string_table: b.strings,
    }
}

/// Writes `p` as a gzipped `profile.proto` to `w`.
///
/// # Errors
/// The writer's error.
pub fn write(p: &Profile, w: impl Write) -> std::io::Result<()> {
    let bytes = prost::Message::encode_to_vec(&build(p));
    let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?.flush()
}

/// `p` as gzipped `profile.proto` bytes, what `go tool pprof` reads from a file.
///
/// # Errors
/// Only the compressor's error (writing to memory does not fail otherwise).
pub fn render(p: &Profile) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    write(p, &mut out)?;
    Ok(out)
}

fn vt(b: &mut Builder, ty: &str, unit: &str) -> proto::ValueType {
    proto::ValueType {
        r#type: b.string(ty),
        unit: b.string(unit),
    }
}

fn i64_sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Whose samples these are: the labels of a sample.
struct Who<'a> {
    vm: Option<&'a VmReport>,
    vcpu: Option<u32>,
    thread: &'a str,
    guest: Option<&'a GuestProc>,
    origin: StackOrigin,
}

impl<'a> Who<'a> {
    fn thread(vm: Option<&'a VmReport>, t: &'a ThreadReport, origin: StackOrigin) -> Who<'a> {
        Who {
            vm,
            vcpu: t.vcpu,
            thread: &t.name,
            guest: None,
            origin,
        }
    }
}

/// The tables being built; ids are 1-based indices into the vectors.
#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: FxHashMap<String, i64>,
    mappings: Vec<proto::Mapping>,
    mapping_ids: FxHashMap<String, u64>,
    functions: Vec<proto::Function>,
    function_ids: FxHashMap<(String, String), u64>,
    locations: Vec<proto::Location>,
    location_ids: FxHashMap<(String, String, Class), u64>,
    samples: Vec<proto::Sample>,
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_ids.get(s) {
            return i;
        }
        let i = i64_sat(self.strings.len() as u64);
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), i);
        i
    }

    fn mapping(&mut self, dso: &str) -> u64 {
        if let Some(&id) = self.mapping_ids.get(dso) {
            return id;
        }
        let id = self.mappings.len() as u64 + 1;
        let filename = self.string(dso);
        self.mappings.push(proto::Mapping {
            id,
            filename,
            has_functions: true,
            ..Default::default()
        });
        self.mapping_ids.insert(dso.to_string(), id);
        id
    }

    fn function(&mut self, sym: &Symbol) -> u64 {
        let name = sym.display_name();
        let key = (name, sym.dso.clone());
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let f = proto::Function {
            id,
            name: self.string(&key.0),
            system_name: self.string(&sym.name),
            filename: self.string(&sym.dso),
            start_line: 0,
        };
        self.functions.push(f);
        self.function_ids.insert(key, id);
        id
    }

    fn location(&mut self, class: Class, sym: &Symbol) -> u64 {
        let key = (sym.display_name(), sym.dso.clone(), class);
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        let mapping_id = self.mapping(&sym.dso);
        let function_id = self.function(sym);
        self.locations.push(proto::Location {
            id,
            mapping_id,
            address: sym.addr.unwrap_or(0),
            line: vec![proto::Line {
                function_id,
                line: 0,
                column: 0,
            }],
            is_folded: false,
        });
        self.location_ids.insert(key, id);
        id
    }

    fn str_label(&mut self, key: &str, value: &str) -> proto::Label {
        proto::Label {
            key: self.string(key),
            str: self.string(value),
            ..Default::default()
        }
    }

    /// Adds one sample; `frames` are root first, as in [`StackRow::frames`].
    fn sample(&mut self, who: &Who, frames: &[(Class, &Symbol)], samples: u64, period: u64) {
        let location_id = frames
            .iter()
            .rev()
            .map(|&(class, sym)| self.location(class, sym))
            .collect();
        let mut label = Vec::new();
        if let Some(vm) = who.vm {
            label.push(self.str_label("vm", &vm.name));
            let id = match vm.id {
                crate::model::VmId::Vmm(pid) => pid.to_string(),
                crate::model::VmId::XenDomain(d) => d.to_string(),
            };
            label.push(self.str_label("vm_id", &id));
        }
        if let Some(v) = who.vcpu {
            label.push(self.str_label("vcpu", &v.to_string()));
        }
        if let Some(&(class, _)) = frames.last() {
            label.push(self.str_label("class", class.key()));
        }
        if !who.thread.is_empty() {
            label.push(self.str_label("thread", who.thread));
        }
        if let Some(g) = who.guest {
            if let Some(pid) = g.pid {
                label.push(self.str_label("guest_pid", &pid.to_string()));
            }
            if !g.comm.is_empty() {
                label.push(self.str_label("comm", &g.comm));
            }
        }
        let origin = match who.origin {
            StackOrigin::Host => "host",
            StackOrigin::Helper => "helper",
        };
        label.push(self.str_label("origin", origin));
        self.samples.push(proto::Sample {
            location_id,
            value: vec![i64_sat(samples), i64_sat(period)],
            label,
        });
    }

    fn stack_row(&mut self, vm: Option<&VmReport>, s: &StackRow) {
        let who = Who {
            vm,
            vcpu: s.vcpu,
            thread: &s.thread_name,
            guest: s.guest.as_ref(),
            origin: s.origin,
        };
        let frames: Vec<(Class, &Symbol)> = s.frames.iter().map(|f| (f.class, &f.symbol)).collect();
        self.sample(&who, &frames, s.samples, s.period);
    }

    /// One-frame samples from a thread's top symbols (profiles built without stacks); skips
    /// rows without self samples, and guest-kernel and guest-user symbols when `skip_guest`
    /// (the helper's stacks replace them).
    fn thread_symbols(&mut self, who: &Who, t: &ThreadReport, skip_guest: bool) {
        let periods = shares(t.period, t.samples, t.top_symbols.iter().map(|s| s.samples));
        for (s, period) in t.top_symbols.iter().zip(periods) {
            let guest = matches!(s.class, Class::GuestKernel | Class::GuestUser);
            // A caller row with no sample of its own (`--children`) is no one-frame sample.
            if s.samples == 0 || (skip_guest && guest) {
                continue;
            }
            self.sample(who, &[(s.class, &s.symbol)], s.samples, period);
        }
    }

    fn vm(&mut self, vm: &VmReport) {
        let guest = vm.guest.as_ref();
        let helper_replaces = guest.is_some_and(|g| g.in_class_table && !g.stacks.is_empty());
        if vm.stacks.is_empty() {
            for t in vm.vcpus.iter().chain(&vm.other_threads) {
                let who = Who::thread(Some(vm), t, StackOrigin::Host);
                self.thread_symbols(&who, t, helper_replaces);
            }
        } else {
            for s in &vm.stacks {
                let guest_leaf = s
                    .leaf()
                    .is_some_and(|f| matches!(f.class, Class::GuestKernel | Class::GuestUser));
                if helper_replaces && guest_leaf {
                    continue;
                }
                self.stack_row(Some(vm), s);
            }
        }
        if let Some(g) = guest {
            self.guest(vm, g);
        }
    }

    /// The helper's stacks of a VM, or (none sent, guest view beside the host's) one-frame
    /// samples from its guest processes' top symbols.
    fn guest(&mut self, vm: &VmReport, g: &GuestView) {
        if !g.stacks.is_empty() {
            for s in &g.stacks {
                self.stack_row(Some(vm), s);
            }
            return;
        }
        if g.in_class_table {
            return; // already counted in the host threads' symbols
        }
        for pr in &g.processes {
            let proc_ = GuestProc {
                pid: pr.guest_pid,
                comm: pr.comm.clone(),
            };
            let who = Who {
                vm: Some(vm),
                vcpu: None,
                thread: "",
                guest: Some(&proc_),
                origin: StackOrigin::Helper,
            };
            let periods = shares(
                pr.period,
                pr.samples,
                pr.top_symbols.iter().map(|s| s.samples),
            );
            for (s, period) in pr.top_symbols.iter().zip(periods) {
                if s.samples > 0 {
                    self.sample(&who, &[(s.class, &s.symbol)], s.samples, period);
                }
            }
        }
    }
}

/// Shares `total` (a period) among rows in proportion to their `samples` out of `of`, so the
/// shares sum to `total` when the rows' samples sum to `of` (cumulative rounding down). With
/// `of == 0` every share is 0.
fn shares(total: u64, of: u64, samples: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut cum, mut given) = (0u128, 0u128);
    for s in samples {
        cum += u128::from(s);
        let upto = if of == 0 {
            0
        } else {
            (u128::from(total) * cum / u128::from(of)).min(u128::from(total))
        };
        out.push(u64::try_from(upto.saturating_sub(given)).unwrap_or(u64::MAX));
        given = given.max(upto);
    }
    out
}

#[cfg(test)]
mod tests;
