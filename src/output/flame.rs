//! Flame graphs: folded stacks (`VM;vCPU;class;symbol count`, Brendan Gregg's
//! stackcollapse format) and SVG through `inferno`.
//!
//! hvprof samples IPs without call chains, so each stack has four frames: the VM, the thread,
//! the domain class and the function — which makes the graph a per-VM, per-vCPU treemap of
//! where time went, the view Xenoprof users asked for.

use std::io::Write;

use crate::report::{Profile, ThreadReport};

/// Folded stack lines, one per (VM, thread, class, symbol), sorted. Build the profile with an
/// unlimited symbol count (`top = usize::MAX`) so nothing is cut.
pub fn folded(p: &Profile) -> Vec<String> {
    let mut out = Vec::new();
    let clean = |s: &str| s.replace([';', ' '], "_");
    let mut thread = |vm: &str, t: &ThreadReport| {
        let tname = match t.vcpu {
            Some(i) => format!("vCPU_{i}"),
            None => clean(&t.name),
        };
        for s in &t.top_symbols {
            out.push(format!(
                "{};{};{};{} {}",
                vm,
                tname,
                s.class.key(),
                clean(&s.symbol.display_name()),
                s.samples
            ));
        }
    };
    for vm in &p.vms {
        let vmname = clean(&format!("{} ({})", vm.name, vm.pid));
        for t in vm.vcpus.iter().chain(&vm.other_threads) {
            thread(&vmname, t);
        }
    }
    if let Some(h) = &p.host_other {
        thread("host", h);
    }
    out.sort();
    out
}

/// Writes an SVG flame graph of `p` to `w`.
///
/// # Errors
/// The writer's or inferno's error, as a message.
pub fn svg(p: &Profile, w: impl Write) -> Result<(), String> {
    let lines = folded(p);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!("hvprof: {} at {:?}", p.meta.event, p.meta.rate);
    opts.count_name = "samples".into();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(|s| s.as_str()), w)
        .map_err(|e| e.to_string())
}
