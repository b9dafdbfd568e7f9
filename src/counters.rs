//! Counters: perf events by perf's names, opened per vCPU thread or per host CPU.
//!
//! Stage: discover → **counters** → ring buffers. Input: a [`CounterSpec`] and [`Target`]s;
//! output: sampling [`PerfFd`]s with `sample_type = IP|TID|TIME|CPU|PERIOD`,
//! `sample_id_all`, `task` (EXIT records, per thread) and `wakeup_watermark`, opened disabled.
//!
//! ```no_run
//! # fn main() -> hvprof::Result<()> {
//! use hvprof::counters::{CounterSpec, EventSpec, Rate, open_counter};
//! use hvprof::perf::Target;
//! let spec = CounterSpec { event: EventSpec::parse("cpu-clock")?, rate: Rate::Frequency(1000), ..Default::default() };
//! let fd = open_counter(&spec, Target::Thread(1234))?;
//! fd.enable()?;
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use hvprof_perf::abi::{self, AttrBuilder};
use hvprof_perf::{PerfFd, Target};

/// A perf event chosen by name, with perf's modifiers applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSpec {
    /// Canonical name (`cycles`, `cpu-clock`, ...), without modifiers.
    pub name: String,
    /// `perf_event_attr.type` (`PERF_TYPE_HARDWARE` or `PERF_TYPE_SOFTWARE`).
    pub type_: u32,
    /// `perf_event_attr.config`.
    pub config: u64,
    /// `:u` given: count user mode (with `:k`, user and kernel); sets exclude_hv and, without
    /// `:k`, exclude_kernel.
    pub user_only: bool,
    /// `:k` given: count kernel mode (with `:u`, user and kernel); sets exclude_hv and, without
    /// `:u`, exclude_user.
    pub kernel_only: bool,
    /// `:G` given (perf: guest only) → `exclude_host`.
    pub exclude_host: bool,
    /// `:H` given (perf: host only) → `exclude_guest`.
    pub exclude_guest: bool,
}

/// The event names hvprof accepts, as perf spells them: `(names, type, config)`.
const EVENTS: &[(&[&str], u32, u64)] = &[
    (
        &["cycles", "cpu-cycles"],
        abi::TYPE_HARDWARE,
        abi::hw::CPU_CYCLES,
    ),
    (&["instructions"], abi::TYPE_HARDWARE, abi::hw::INSTRUCTIONS),
    (
        &["cache-references"],
        abi::TYPE_HARDWARE,
        abi::hw::CACHE_REFERENCES,
    ),
    (&["cache-misses"], abi::TYPE_HARDWARE, abi::hw::CACHE_MISSES),
    (
        &["branches", "branch-instructions"],
        abi::TYPE_HARDWARE,
        abi::hw::BRANCH_INSTRUCTIONS,
    ),
    (
        &["branch-misses"],
        abi::TYPE_HARDWARE,
        abi::hw::BRANCH_MISSES,
    ),
    (&["bus-cycles"], abi::TYPE_HARDWARE, abi::hw::BUS_CYCLES),
    (&["ref-cycles"], abi::TYPE_HARDWARE, abi::hw::REF_CPU_CYCLES),
    (&["cpu-clock"], abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK),
    (&["task-clock"], abi::TYPE_SOFTWARE, abi::sw::TASK_CLOCK),
    (
        &["page-faults", "faults"],
        abi::TYPE_SOFTWARE,
        abi::sw::PAGE_FAULTS,
    ),
    (
        &["context-switches", "cs"],
        abi::TYPE_SOFTWARE,
        abi::sw::CONTEXT_SWITCHES,
    ),
    (
        &["cpu-migrations", "migrations"],
        abi::TYPE_SOFTWARE,
        abi::sw::CPU_MIGRATIONS,
    ),
];

impl EventSpec {
    /// Parses a perf event name with optional modifiers after `:` (`u`, `k`, `G`, `H`),
    /// e.g. `cycles`, `cpu-clock`, `instructions:u`, `cycles:G`.
    ///
    /// # Errors
    /// [`Error::UnknownEvent`] listing the accepted names.
    pub fn parse(s: &str) -> Result<EventSpec> {
        let (name, mods) = match s.split_once(':') {
            Some((n, m)) => (n, m),
            None => (s, ""),
        };
        let unknown = || Error::UnknownEvent {
            name: s.to_string(),
            hint: format!(
                "known events: {} (modifiers :u :k :G :H)",
                EVENTS.iter().map(|e| e.0[0]).collect::<Vec<_>>().join(", ")
            ),
        };
        let &(names, type_, config) = EVENTS
            .iter()
            .find(|e| e.0.contains(&name))
            .ok_or_else(unknown)?;
        let mut spec = EventSpec {
            name: names[0].to_string(),
            type_,
            config,
            user_only: false,
            kernel_only: false,
            exclude_host: false,
            exclude_guest: false,
        };
        for m in mods.chars() {
            match m {
                'u' => spec.user_only = true,
                'k' => spec.kernel_only = true,
                'G' => spec.exclude_host = true,
                'H' => spec.exclude_guest = true,
                _ => return Err(unknown()),
            }
        }
        Ok(spec)
    }

    /// True for `PERF_TYPE_HARDWARE` events, which need a hardware PMU.
    pub fn is_hardware(&self) -> bool {
        self.type_ == abi::TYPE_HARDWARE
    }

    /// Whether the period of this event is in nanoseconds (cpu-clock, task-clock).
    pub fn period_is_ns(&self) -> bool {
        self.type_ == abi::TYPE_SOFTWARE
            && (self.config == abi::sw::CPU_CLOCK || self.config == abi::sw::TASK_CLOCK)
    }
}

/// How often to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rate {
    /// `-F HZ`: samples per second per counter (`attr.freq = 1`). For cpu-clock and task-clock
    /// the kernel turns this into a fixed period of `1e9 / HZ` ns.
    Frequency(u64),
    /// `-c N`: one sample every N events.
    Period(u64),
}

/// `-g` / `--call-graph MODE`: how call stacks are recorded (perf record's spelling,
/// tools/perf/util/callchain.c `parse_callchain_record`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallGraph {
    /// `fp`: the kernel walks frame pointers (`PERF_SAMPLE_CALLCHAIN`); host kernel stacks are
    /// always right, user stacks only for code built with frame pointers.
    Fp,
    /// `dwarf[,SIZE]`: kernel frames from `PERF_SAMPLE_CALLCHAIN`, user frames unwound at report
    /// time from `PERF_SAMPLE_REGS_USER` + `PERF_SAMPLE_STACK_USER` (`stack_bytes` of the user
    /// stack per sample) with the ELF files' `.eh_frame`.
    Dwarf {
        /// Bytes of user stack copied per sample (8-aligned, ≤ 65528: the record size is a u16).
        stack_bytes: u32,
    },
}

impl CallGraph {
    /// perf's default `dwarf` stack dump size, in bytes (tools/perf/util/callchain.h
    /// `default_stack_dump_size`).
    pub const DEFAULT_STACK_BYTES: u32 = 8192;
    /// The largest user stack dump a sample record can hold (perf's `MAX_STACK_DUMP_SIZE`
    /// rounded down to 8 bytes: the record header's size is a u16).
    pub const MAX_STACK_BYTES: u32 = 65528;

    /// `PERF_SAMPLE_REGS_USER` mask for x86-64 DWARF unwinding: BP (6), SP (7), IP (8)
    /// (arch/x86/include/uapi/asm/perf_regs.h); dumped in bit order.
    pub const REGS_USER_MASK: u64 = (1 << 6) | (1 << 7) | (1 << 8);
}

impl std::str::FromStr for CallGraph {
    type Err = Error;

    /// `fp`, `dwarf` or `dwarf,SIZE` (bytes, rounded up to 8).
    fn from_str(s: &str) -> Result<CallGraph> {
        let bad = |why: String| Error::InvalidOption(format!("--call-graph {s}: {why}"));
        let (mode, size) = match s.split_once(',') {
            Some((m, z)) => (m, Some(z)),
            None => (s, None),
        };
        match (mode, size) {
            ("fp", None) => Ok(CallGraph::Fp),
            ("dwarf", None) => Ok(CallGraph::Dwarf {
                stack_bytes: CallGraph::DEFAULT_STACK_BYTES,
            }),
            ("dwarf", Some(z)) => {
                let n: u32 = z
                    .parse()
                    .map_err(|_| bad(format!("stack size {z:?} is not a number of bytes")))?;
                let n = n.div_ceil(8).saturating_mul(8);
                if n == 0 || n > CallGraph::MAX_STACK_BYTES {
                    return Err(bad(format!(
                        "stack size must be 8..={} bytes",
                        CallGraph::MAX_STACK_BYTES
                    )));
                }
                Ok(CallGraph::Dwarf { stack_bytes: n })
            }
            ("lbr", _) => Err(bad("lbr needs Intel's last branch records, which hvprof does not read; use fp or dwarf".into())),
            _ => Err(bad("expected fp, dwarf or dwarf,SIZE".into())),
        }
    }
}

/// Everything needed to open one sampling counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSpec {
    /// The event.
    pub event: EventSpec,
    /// Sampling rate.
    pub rate: Rate,
    /// `attr.exclude_guest`: do not count while a vCPU runs guest code.
    pub exclude_guest: bool,
    /// `attr.exclude_host`: count only while a vCPU runs guest code.
    pub exclude_host: bool,
    /// Wake the reader when this many bytes are pending (`wakeup_watermark`).
    pub wakeup_bytes: u32,
    /// Also record the sideband a recording needs to be symbolized later: MMAP2 (new
    /// mappings, `attr.mmap2`) and COMM records (`attr.comm`), as perf record's tracking event.
    pub sideband: bool,
    /// Record call stacks (`-g` / `--call-graph`); None: leaf IPs only.
    pub call_graph: Option<CallGraph>,
}

impl Default for CounterSpec {
    fn default() -> Self {
        CounterSpec {
            event: EventSpec::parse("cpu-clock").expect("built-in event name"),
            rate: Rate::Frequency(1000),
            exclude_guest: false,
            exclude_host: false,
            wakeup_bytes: 16 * 1024,
            sideband: false,
            call_graph: None,
        }
    }
}

/// Opens one sampling counter for `target`, disabled; enable it with [`PerfFd::enable`].
///
/// # Errors
/// [`Error::PerfEventOpen`] (see there for the errno meanings), [`Error::InvalidOption`]
/// for a zero rate.
pub fn open_counter(spec: &CounterSpec, target: Target) -> Result<PerfFd> {
    Ok(PerfFd::open(
        &counter_attr(spec, target)?,
        target,
        &spec.event.name,
    )?)
}

/// The `perf_event_attr` [`open_counter`] opens for `target` (also what a recording's header
/// describes).
///
/// # Errors
/// [`Error::InvalidOption`] for a zero rate.
pub fn counter_attr(
    spec: &CounterSpec,
    target: Target,
) -> Result<hvprof_perf::abi::perf_event_attr> {
    let ev = &spec.event;
    let sample_type = match spec.call_graph {
        None => abi::HVPROF_SAMPLE_TYPE,
        Some(CallGraph::Fp) => abi::HVPROF_SAMPLE_TYPE | abi::SAMPLE_CALLCHAIN,
        Some(CallGraph::Dwarf { .. }) => {
            abi::HVPROF_SAMPLE_TYPE
                | abi::SAMPLE_CALLCHAIN
                | abi::SAMPLE_REGS_USER
                | abi::SAMPLE_STACK_USER
        }
    };
    let mut b = AttrBuilder::new(ev.type_, ev.config)
        .sample_type(sample_type)
        .disabled(true)
        .sample_id_all(true)
        // EXIT records for the monitored thread itself (per-thread counters only: per CPU they
        // would report every task exit on the host).
        .task(matches!(target, Target::Thread(_)))
        .wakeup_bytes(spec.wakeup_bytes);
    b = match spec.rate {
        Rate::Frequency(0) | Rate::Period(0) => {
            return Err(Error::InvalidOption(
                "sampling frequency and period must be > 0".into(),
            ))
        }
        Rate::Frequency(hz) => b.frequency(hz),
        Rate::Period(p) => b.period(p),
    };
    // perf's modifiers name the modes to count; `:uk` counts both (exclude only the rest).
    if ev.user_only || ev.kernel_only {
        b = b
            .exclude_hv(true)
            .exclude_kernel(!ev.kernel_only)
            .exclude_user(!ev.user_only);
    }
    b = b
        .exclude_guest(spec.exclude_guest || ev.exclude_guest)
        .exclude_host(spec.exclude_host || ev.exclude_host);
    if let Some(CallGraph::Dwarf { stack_bytes }) = spec.call_graph {
        // As perf record --call-graph dwarf: the kernel's user callchain would be frame-pointer
        // garbage for code without frame pointers; the report unwinds the stack copy instead.
        b = b
            .sample_regs_user(CallGraph::REGS_USER_MASK)
            .sample_stack_user(stack_bytes)
            .exclude_callchain_user(true);
    }
    if spec.sideband {
        b = b.mmap(true).mmap2(true).comm(true).comm_exec(true);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_names_and_modifiers() {
        let e = EventSpec::parse("cpu-cycles").unwrap();
        assert_eq!(
            (e.name.as_str(), e.type_, e.config),
            ("cycles", abi::TYPE_HARDWARE, abi::hw::CPU_CYCLES)
        );
        let e = EventSpec::parse("cpu-clock").unwrap();
        assert!(e.period_is_ns() && !e.is_hardware());
        let e = EventSpec::parse("instructions:uG").unwrap();
        assert!(e.user_only && e.exclude_host && !e.kernel_only);
        let err = EventSpec::parse("cylces").unwrap_err().to_string();
        assert!(
            err.contains("unknown event 'cylces'") && err.contains("cpu-clock"),
            "{err}"
        );
        assert!(EventSpec::parse("cycles:x").is_err());
    }
}
