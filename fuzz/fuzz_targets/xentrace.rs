//! Fuzz target: xentrace's binary trace file (hvprof's `xen::xentrace`) on arbitrary bytes, as
//! `hvprof stat` in dom0 meets the file xentrace wrote: every record parsed, then the one-pass
//! summary (runstates, timeline, HVM exits, hypercalls) and a timeline lookup per pCPU. Must
//! never panic, hang or allocate by a length read from the file.
#![no_main]

use hvprof::xen::xentrace::parse::Parser;
use hvprof::xen::xentrace::runstate::summarize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut n = 0usize;
    let mut p = Parser::new(data);
    for r in p.by_ref() {
        n += r.extra().len() + r.cpu.map_or(0, |c| c as usize % 3);
    }
    let st = p.stats();
    n += st.records as usize % 5;
    let s = summarize(data);
    n += s.vcpus.len() + s.exits.len() + s.hypercalls.len() + s.timeline.len();
    let span = s.span.unwrap_or((0, 0));
    for cpu in s.timeline.pcpus().collect::<Vec<_>>() {
        n += usize::from(s.timeline.at(cpu, span.0).is_some());
        n += usize::from(s.timeline.at(cpu, span.1).is_some());
    }
    std::hint::black_box(n);
});
