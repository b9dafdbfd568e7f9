//! PVM evidence (github.com/virt-pvm/linux): the host module, `pvm_*` symbols in kallsyms,
//! `nested_pvm=` on the command line, and the notes that explain the PVM verdict.

use std::io::{BufRead, BufReader};

use super::cpuinfo::Flags;
use super::host::HostRaw;
use super::Ctx;
use crate::kvm::PvmInfo;
use crate::model::Signal;
use crate::source::KernelLog;

/// PVM facts: guest flag, host module and `/dev/kvm`, kallsyms, `nested_pvm=`. `notes` stay
/// empty until [`pvm_notes`].
pub(crate) fn pvm_info(
    cx: &Ctx,
    log: &KernelLog,
    flags: &Flags,
    cmdline: Option<&str>,
    host: &HostRaw,
) -> PvmInfo {
    // kallsyms: count pvm_* symbols (streamed; the file is large).
    let mut pvm_syms = 0usize;
    let mut event_entry = false;
    if let Ok(f) = std::fs::File::open(cx.fs.path("/proc/kallsyms")) {
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let Some(name) = line.split_whitespace().nth(2) else {
                continue;
            };
            if name.starts_with("pvm_") {
                pvm_syms += 1;
                if name == "pvm_do_event_irqoff" {
                    event_entry = true;
                }
            }
        }
    }
    let nested_pvm = cmdline.and_then(|c| {
        c.split_whitespace()
            .find_map(|t| t.strip_prefix("nested_pvm=").map(str::to_string))
    });
    let module = host.backends.iter().any(|b| b == "kvm_pvm");
    let loaded = module || log.find("kvm-pvm: loaded").is_some();
    PvmInfo {
        guest: flags.has("kvm_pvm_guest"),
        host: loaded && host.kvm,
        kvm_pvm_loaded: loaded,
        kallsyms_pvm_symbols: pvm_syms,
        kallsyms_event_entry: event_entry,
        cmdline_nested_pvm: nested_pvm,
        notes: Vec::new(),
    }
}

/// Explain the PVM verdict: guest yes/no and from what, host yes/no, and built-in PVM code
/// that is not active.
pub(crate) fn pvm_notes(cx: &Ctx, pvm: &mut PvmInfo) {
    let mut notes = Vec::new();
    if pvm.guest {
        let ev = cx.sources_of(Signal::PvmGuest);
        notes.push(format!("PVM guest: yes ({})", ev.join("; ")));
    } else {
        let against = cx.sources_of(Signal::NotPvmGuest);
        let mut s = String::from("PVM guest: no");
        if !against.is_empty() {
            s.push_str(&format!(" ({})", against.join("; ")));
        }
        s.push_str(
            "; no kvm_pvm_guest CPU flag, no \"pvm-guest:\" boot messages, no PVM CPUID signature",
        );
        notes.push(s);
    }
    if pvm.host {
        notes.push("PVM host: yes (kvm_pvm loaded and /dev/kvm present)".to_string());
    } else if pvm.kvm_pvm_loaded {
        notes.push("PVM host: no: kvm_pvm is loaded but /dev/kvm is missing".to_string());
    } else {
        notes.push("PVM host: no: kvm_pvm not loaded".to_string());
    }
    if pvm.kallsyms_pvm_symbols > 0 && !pvm.guest && !pvm.host {
        notes.push(format!(
            "{} pvm_* symbols in kallsyms: PVM code is built in, but built is not active",
            pvm.kallsyms_pvm_symbols
        ));
    }
    pvm.notes = notes;
}
