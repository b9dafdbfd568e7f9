//! Gathering evidence: each submodule reads one kind of input and turns what it finds into
//! [`Evidence`] (and sometimes red herrings or facts for later sections) in a shared [`Ctx`].
//!
//! Stage: the first half of detection; [`crate::decide`] weighs what is collected here.
//! Input: the files of a [`crate::Source`] through [`Fs`], the live CPUID, the kernel log.
//! Output: [`Ctx::evidence`], in the order found, plus per-input facts (flags, Xen sysfs, ...).

pub(crate) mod cpuid;
pub(crate) mod cpuinfo;
pub(crate) mod dmi;
pub(crate) mod host;
pub(crate) mod log;
pub(crate) mod pvm;
pub(crate) mod sysfs;

use crate::model::{Evidence, RedHerring, Signal, Strength};
use crate::source::Fs;
use crate::xen::ActiveFeature;

/// Everything collected before deciding.
pub(crate) struct Ctx {
    /// The file reader, with the input problems met so far.
    pub(crate) fs: Fs,
    /// Observations, in the order found.
    pub(crate) evidence: Vec<Evidence>,
    /// Things that look like evidence but are not.
    pub(crate) red_herrings: Vec<RedHerring>,
}

impl Ctx {
    /// A context reading through `fs`, with nothing collected yet.
    pub(crate) fn new(fs: Fs) -> Self {
        Ctx {
            fs,
            evidence: Vec::new(),
            red_herrings: Vec::new(),
        }
    }

    /// Record one observation.
    pub(crate) fn ev(
        &mut self,
        source: impl Into<String>,
        observed: impl Into<String>,
        signal: Signal,
        strength: Strength,
        meaning: impl Into<String>,
    ) {
        self.evidence.push(Evidence {
            source: source.into(),
            observed: observed.into(),
            signal,
            strength,
            meaning: meaning.into(),
        });
    }

    /// Record something that looks like evidence but is not, and why.
    pub(crate) fn herring(
        &mut self,
        source: impl Into<String>,
        observed: impl Into<String>,
        why: &str,
    ) {
        self.red_herrings.push(RedHerring {
            source: source.into(),
            observed: observed.into(),
            why: why.to_string(),
        });
    }

    /// Whether any evidence carries `signal`.
    pub(crate) fn has(&self, signal: Signal) -> bool {
        self.evidence.iter().any(|e| e.signal == signal)
    }

    /// The first evidence carrying `signal`.
    pub(crate) fn first(&self, signal: Signal) -> Option<&Evidence> {
        self.evidence.iter().find(|e| e.signal == signal)
    }

    /// The first strong evidence carrying `signal`.
    pub(crate) fn first_strong(&self, signal: Signal) -> Option<&Evidence> {
        self.evidence
            .iter()
            .find(|e| e.signal == signal && e.strength == Strength::Strong)
    }

    /// The strongest evidence carrying `signal` (the last of equals).
    pub(crate) fn strongest(&self, signal: Signal) -> Option<&Evidence> {
        self.evidence
            .iter()
            .filter(|e| e.signal == signal)
            .max_by_key(|e| e.strength)
    }

    /// `source: observed` of every evidence carrying `signal`.
    pub(crate) fn sources_of(&self, signal: Signal) -> Vec<String> {
        self.evidence
            .iter()
            .filter(|e| e.signal == signal)
            .map(|e| format!("{}: {}", e.source, e.observed))
            .collect()
    }
}

/// Add the feature `name` to `active` unless it is already there (the first evidence wins).
pub(crate) fn add_active(active: &mut Vec<ActiveFeature>, name: &str, evidence: impl Into<String>) {
    if !active.iter().any(|a| a.name == name) {
        active.push(ActiveFeature {
            name: name.to_string(),
            evidence: evidence.into(),
        });
    }
}

/// How evidence names a kernel log line: `kernel log line N` (1-based).
pub(crate) fn log_src(n: usize) -> String {
    format!("kernel log line {n}")
}

/// `s` cut to at most 160 bytes (on a character boundary) with `...` appended when cut.
pub(crate) fn abridge(s: &str) -> String {
    const MAX: usize = 160;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Whether `s` is evidence for Xen (any mode or feature).
pub(crate) fn is_xen(s: Signal) -> bool {
    matches!(
        s,
        Signal::Xen
            | Signal::XenPv
            | Signal::XenHvm
            | Signal::XenPvh
            | Signal::XenPvDrivers
            | Signal::XenPvInterrupts
            | Signal::XenPvTimers
            | Signal::XenPvSpinlocks
            | Signal::XenPvClock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abridge_cuts_on_a_char_boundary() {
        assert_eq!(abridge("short"), "short");
        let long = "é".repeat(100); // 200 bytes
        let a = abridge(&long);
        assert!(a.ends_with("...") && a.len() <= 163, "{a}");
    }

    #[test]
    fn add_active_keeps_the_first() {
        let mut v = Vec::new();
        add_active(&mut v, "pv_clock", "a");
        add_active(&mut v, "pv_clock", "b");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].evidence, "a");
    }
}
