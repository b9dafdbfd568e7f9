//! `hvprof top`'s one text rendering: the lines of batch mode ([`render_text`]) and the rows of
//! the terminal UI (`src/cli/top/tui.rs` shows [`vm_line`], [`thread_line`], ... as they are).

use std::fmt::Write;

use crate::attribute::Class;
use crate::counters::Rate;
use crate::report::{ClassRow, SymbolRow};

use super::frame::{TopFrame, TopThread, TopVm, VmState};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::top::fixtures::{one_vcpu_vm, profile, stat_frame, two_frames};
    use crate::output::top::TopState;

    #[test]
    fn a_frame_as_text_shows_the_vm_its_vcpus_and_symbols() {
        let (_, f2) = two_frames();
        // vCPU 0's interval: 50 samples in KVM, 50 in guest user code.
        let cols = column_shares(&f2.vms[0].vcpus[0].classes);
        assert!((cols[0] - 50.0).abs() < 1e-9, "hyp column: {cols:?}");
        assert!((cols[3] - 50.0).abs() < 1e-9, "g-user column: {cols:?}");
        let text = render_text(&f2, 5);
        assert!(text.starts_with("hvprof top: frame 2 at 2.00 s"), "{text}");
        assert!(text.contains("      10 vm10 (2 vCPUs)"), "{text}");
        assert!(text.contains("vCPU 1 tid 12"), "{text}");
        assert!(text.contains("hot_b [guest]"), "{text}");
        assert!(text.contains("exits: no stat interval"), "{text}");
    }

    #[test]
    fn gone_vms_have_no_exits_line() {
        let mut st = TopState::default();
        let one = |s| one_vcpu_vm(20, Class::GuestKernel, "idle", s);
        st.frame(&profile(1, vec![one(10)]), None, &|_| true);
        let f = st.frame(&profile(2, vec![one(20)]), None, &|_| false);
        assert_eq!(f.vms[0].state, VmState::Gone);
        let text = render_text(&f, 5);
        assert!(text.contains("      20 vm20 (1 vCPUs)"), "{text}");
        assert!(
            !text.contains("exits"),
            "gone VMs have no exits line: {text}"
        );
    }

    #[test]
    fn stat_figures_name_their_source() {
        let f = stat_frame();
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
    }
}
