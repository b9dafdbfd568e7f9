//! Flame graphs: folded stacks (Brendan Gregg's stackcollapse format, `frame;frame;… count`)
//! and an SVG through `inferno`, with the classes coloured apart.
//!
//! One line per distinct stack, root first:
//! - with call stacks (`record -g` / `--call-graph`): `VM;THREAD;root;…;leaf COUNT` — the
//!   host kernel's frames, the VMM's, and for guest samples the leaf the host saw;
//! - a stack that came without a callchain (recorded without `-g`, or a guest-tagged sample,
//!   whose callchain the host kernel does not give): `VM;THREAD;CLASS;leaf COUNT` — the class
//!   stands where no frames are known, so nothing is invented;
//! - active mode's guest stacks, sampled inside the guest by the helper:
//!   `VM;vCPU_N;COMM_(GUESTPID);root;…;leaf COUNT`. When the host also sees those guest
//!   samples (the VM's guest view is `in_class_table`), the host's guest-class stacks of that
//!   VM are left out, so no time is counted twice; otherwise (the host sees no guest IPs) the
//!   guest's stacks stand beside the host's, under their own process frame.
//!
//! THREAD is `vCPU_N` for vCPU threads and the thread name otherwise; VM is `NAME_(PID)`.
//! `;` and spaces in names become `_`.

use std::io::Write;

use inferno::flamegraph::color::{Color, PaletteMap};

use crate::attribute::Class;
use crate::report::{Profile, StackRow, ThreadReport, VmReport};

/// Makes a name safe for a folded line.
fn clean(s: &str) -> String {
    s.replace([';', ' '], "_")
}

/// The thread frame of a stack or thread: `vCPU_N` or the thread name.
fn thread_frame(vcpu: Option<u32>, name: &str) -> String {
    match vcpu {
        Some(i) => format!("vCPU_{i}"),
        None => clean(name),
    }
}

/// The VM frame: `NAME_(PID)`.
fn vm_frame(vm: &VmReport) -> String {
    clean(&format!("{} ({})", vm.name, vm.pid))
}

/// Appends one stack's line to `out`.
fn stack_line(out: &mut Vec<String>, root: &str, r: &StackRow) {
    let mut line = format!("{root};{}", thread_frame(r.vcpu, &r.thread_name));
    if let Some(g) = &r.guest {
        let pid = g.pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        line.push(';');
        line.push_str(&clean(&format!("{} ({pid})", g.comm)));
    }
    if r.leaf_only {
        if let Some(f) = r.leaf() {
            line.push(';');
            line.push_str(f.class.key());
        }
    }
    for f in &r.frames {
        line.push(';');
        line.push_str(&clean(&f.symbol.display_name()));
    }
    out.push(format!("{line} {}", r.samples));
}

/// Lines of a thread with no stacks: `VM;THREAD;CLASS;symbol COUNT` per top symbol.
fn thread_lines(out: &mut Vec<String>, root: &str, t: &ThreadReport) {
    let tname = thread_frame(t.vcpu, &t.name);
    for s in &t.top_symbols {
        out.push(format!(
            "{root};{tname};{};{} {}",
            s.class.key(),
            clean(&s.symbol.display_name()),
            s.samples
        ));
    }
}

/// Folded stack lines, sorted (see the module docs for their shape). A profile without stacks
/// gives one line per (VM, thread, class, symbol): build it with an unlimited symbol count
/// (`top = usize::MAX`) so nothing is cut.
pub fn folded(p: &Profile) -> Vec<String> {
    let mut out = Vec::new();
    for vm in &p.vms {
        let root = vm_frame(vm);
        let guest_stacks = vm.guest.as_ref().map_or(&[][..], |g| &g.stacks[..]);
        let replaced = vm
            .guest
            .as_ref()
            .is_some_and(|g| g.in_class_table && !g.stacks.is_empty());
        if vm.stacks.is_empty() {
            for t in vm.vcpus.iter().chain(&vm.other_threads) {
                thread_lines(&mut out, &root, t);
            }
        }
        for r in &vm.stacks {
            let guest_leaf = r.leaf().is_some_and(|f| f.class.is_guest());
            if !(replaced && guest_leaf) {
                stack_line(&mut out, &root, r);
            }
        }
        for r in guest_stacks {
            stack_line(&mut out, &root, r);
        }
    }
    if p.host_stacks.is_empty() {
        if let Some(h) = &p.host_other {
            thread_lines(&mut out, "host", h);
        }
    }
    for r in &p.host_stacks {
        stack_line(&mut out, "host", r);
    }
    out.sort();
    out
}

/// The colour of a class in the SVG (hypervisor reds/oranges, VMM yellow, guest kernel blue,
/// guest user green, emulation purple).
fn class_color(c: Class) -> Color {
    let (r, g, b) = match c {
        Class::HypervisorKvm => (230, 90, 60),
        Class::HypervisorKernel => (240, 150, 70),
        Class::HypervisorXen => (200, 60, 60),
        Class::Vmm => (225, 200, 70),
        Class::GuestKernel => (100, 150, 230),
        Class::GuestUser => (90, 190, 110),
        Class::GuestHidden => (150, 190, 170),
        Class::Emulation => (170, 120, 210),
        Class::Unknown => (170, 170, 170),
    };
    Color { r, g, b }
}

/// Every frame name of `p` with its class's colour; VM, thread, class and process frames grey.
fn palette(p: &Profile, lines: &[String]) -> PaletteMap {
    let mut map = PaletteMap::default();
    let grey = Color {
        r: 200,
        g: 200,
        b: 200,
    };
    for l in lines {
        let stack = l.rsplit_once(' ').map_or(l.as_str(), |(s, _)| s);
        for f in stack.split(';') {
            map.insert(f, grey);
        }
    }
    let rows = p
        .vms
        .iter()
        .flat_map(|v| {
            v.stacks
                .iter()
                .chain(v.guest.iter().flat_map(|g| g.stacks.iter()))
        })
        .chain(&p.host_stacks);
    for r in rows {
        for f in &r.frames {
            map.insert(clean(&f.symbol.display_name()), class_color(f.class));
        }
    }
    let threads = p
        .vms
        .iter()
        .flat_map(|v| v.vcpus.iter().chain(&v.other_threads));
    for t in threads.chain(&p.host_other) {
        for s in &t.top_symbols {
            map.insert(clean(&s.symbol.display_name()), class_color(s.class));
        }
    }
    for c in Class::ALL {
        map.insert(c.key(), class_color(c));
    }
    map
}

/// Writes an SVG flame graph of `p` to `w`: frames coloured by class (hypervisor, VMM, guest
/// kernel, guest user, emulation), VM/thread/process frames grey.
///
/// # Errors
/// The writer's or inferno's error, as a message.
pub fn svg(p: &Profile, w: impl Write) -> Result<(), String> {
    let lines = folded(p);
    let mut colors = palette(p, &lines);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!("hvprof: {} at {:?}", p.meta.event, p.meta.rate);
    opts.subtitle = Some(
        "red/orange: hypervisor (KVM, host kernel) · yellow: VMM · blue: guest kernel · green: guest user · purple: emulation"
            .into(),
    );
    opts.count_name = "samples".into();
    opts.palette_map = Some(&mut colors);
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(|s| s.as_str()), w)
        .map_err(|e| e.to_string())
}
