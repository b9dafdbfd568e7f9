//! `hvprof record`: profile VMs (`-p PID`) or the whole host (`-a`), then print the report or
//! write a recording (`-o FILE`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use hvprof::counters::{CallGraph, CounterSpec, EventSpec, Rate};
use hvprof::session::{self, RecordOptions};

use super::output::{emit, OutputArgs};
use super::parse::{parse_guest_kallsyms, parse_seconds};

/// The event and how it is sampled.
#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Event, by perf's name (cycles, instructions, cpu-clock, task-clock, ...; modifiers :u :k :G :H).
    #[arg(short = 'e', long, default_value = "cycles")]
    pub event: String,
    /// Sampling frequency in Hz.
    #[arg(short = 'F', long, conflicts_with = "period")]
    pub freq: Option<u64>,
    /// Sampling period in events (ns for cpu-clock).
    #[arg(short = 'c', long)]
    pub period: Option<u64>,
    /// Do not count while vCPUs run guest code (attr.exclude_guest).
    #[arg(long)]
    pub exclude_guest: bool,
    /// Count only while vCPUs run guest code (attr.exclude_host).
    #[arg(long)]
    pub exclude_host: bool,
    /// Data pages per ring buffer (a power of two; default 64, more under --call-graph dwarf).
    #[arg(short = 'm', long = "mmap-pages")]
    pub mmap_pages: Option<usize>,
}

/// `hvprof record`'s Xen dom0 flags.
#[derive(Args)]
pub struct XenRecordArgs {
    /// In a Xen dom0: sample this domain's vCPUs from dom0 (domid or name; repeat or
    /// comma-separate). `-a` in dom0 samples every domain but dom0.
    #[arg(long = "domain", value_delimiter = ',')]
    pub domains: Vec<String>,
    /// With --domain: the largest share of a vCPU's time its context reads may take, in
    /// percent (the rate is lowered to keep it).
    #[arg(long = "max-cost", value_name = "PERCENT", default_value_t = 2.0)]
    pub max_cost: f64,
}

/// `hvprof record` arguments.
#[derive(Args)]
// --domain (Xen dom0) stands in for -p/-a.
#[command(mut_arg("pids", |a| a.required_unless_present_any(["all_cpus", "domains"])))]
pub struct RecordArgs {
    #[command(flatten)]
    pub target: super::parse::ScopeArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop after this many seconds.
    #[arg(value_parser = parse_seconds, short = 'd', long)]
    pub duration: Option<f64>,
    /// Guest symbol map in kallsyms/System.map format (passive mode): FILE for every VM, or PID=FILE.
    #[arg(long = "guest-kallsyms")]
    pub guest_kallsyms: Vec<String>,
    /// Record call stacks (frame pointers), as `perf record -g`.
    #[arg(short = 'g', conflicts_with = "call_graph")]
    pub g: bool,
    /// Record call stacks: fp (frame pointers) or dwarf[,SIZE] (user stacks unwound from a
    /// SIZE-byte stack copy per sample, default 8192), as `perf record --call-graph`.
    #[arg(long = "call-graph", value_name = "MODE")]
    pub call_graph: Option<String>,
    /// Xen dom0 flags (boxed: they are rarely given).
    #[command(flatten)]
    pub xen: Box<XenRecordArgs>,
    /// Write a recording here instead of printing the report.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Active mode: merge what the in-guest helper (hvprof-guest) tells: guest processes and
    /// guest user symbols. Needs --helper and exactly one -p PID.
    #[arg(long, requires = "helper")]
    pub active: bool,
    /// Where the in-guest helper is: unix:PATH (QEMU's virtio-serial chardev socket),
    /// tcp:ADDR:PORT (listen for it), vsock:CID:PORT.
    #[arg(long, requires = "active")]
    pub helper: Option<String>,
    /// Seconds to wait for the helper's initial state (kallsyms, processes) before sampling.
    #[arg(value_parser = parse_seconds, long, default_value_t = 120.0)]
    pub helper_timeout: f64,
    #[command(flatten)]
    pub out: OutputArgs,
    /// A workload to run; recording stops when it ends.
    #[arg(last = true)]
    pub workload: Vec<String>,
}

/// Runs `hvprof record`: until `-d`, SIGINT/SIGTERM, the end of the workload or of the VMs.
///
/// # Errors
/// Bad flags (event name, helper address, exclusive exclusions), a workload that cannot start,
/// and every error of [`session::record`].
pub fn run(a: RecordArgs) -> anyhow::Result<()> {
    if !a.xen.domains.is_empty()
        || (a.target.all_cpus && hvprof::xen::is_dom0(std::path::Path::new("/")))
    {
        return run_xen(&a);
    }
    let scope = a.target.scope();
    let mut opts = RecordOptions::new(scope);
    opts.counter = counter_spec(&a.sampling)?;
    opts.counter.call_graph = match (&a.call_graph, a.g) {
        (Some(m), _) => Some(m.parse::<CallGraph>()?),
        (None, true) => Some(CallGraph::Fp),
        (None, false) => None,
    };
    opts.ring_pages = a.sampling.mmap_pages.unwrap_or(64);
    if let (Some(CallGraph::Dwarf { stack_bytes }), None) =
        (opts.counter.call_graph, a.sampling.mmap_pages)
    {
        // Each sample carries its stack copy: room for ~64 of them (512 KiB at 8 KiB, about
        // perf record's ring), the reader woken every quarter ring (session::plan).
        let page = hvprof_perf::sys::page_size();
        let want = (stack_bytes as usize * 64)
            .div_ceil(page)
            .next_power_of_two();
        opts.ring_pages = opts.ring_pages.max(want);
    }
    opts.duration = a.duration.map(Duration::from_secs_f64);
    opts.guest_kallsyms = parse_guest_kallsyms(&a.guest_kallsyms)?;
    opts.output = a.output.clone();
    if let Some(h) = &a.helper {
        opts.active = Some(h.parse::<hvprof::active::HelperSpec>()?);
        opts.active_ready_timeout = Duration::from_secs_f64(a.helper_timeout);
    }
    opts.stop = super::signal::token();
    if !a.workload.is_empty() {
        let mut child = std::process::Command::new(&a.workload[0])
            .args(&a.workload[1..])
            .spawn()
            .with_context(|| format!("cannot start workload {}", a.workload[0]))?;
        // The workload's end stops the run's token (perf record's `-- CMD`).
        let stop = opts.stop.clone();
        std::thread::Builder::new()
            .name("hvprof-workload".into())
            .spawn(move || match child.wait() {
                Ok(st) => stop.stop(format!("workload ended ({st})")),
                Err(e) => stop.stop(format!("waiting for the workload failed: {e}")),
            })
            .context("cannot start the workload watcher thread")?;
    }
    let bar = progress_bar(opts.duration);
    let out = session::record(&opts)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    eprintln!("hvprof: stopped: {}", out.stopped_because);
    if let Some(p) = &a.output {
        eprintln!(
            "hvprof: {} samples written to {}",
            out.samples_written.unwrap_or(out.profile.total_samples),
            p.display()
        );
        return Ok(());
    }
    emit(&out.profile, &a.out)
}

/// `-F` or `-c`; 1000 Hz when neither is given.
fn rate_of(s: &SamplingArgs) -> Rate {
    match (s.freq, s.period) {
        (_, Some(p)) => Rate::Period(p),
        (Some(f), None) => Rate::Frequency(f),
        (None, None) => Rate::Frequency(1000),
    }
}

/// The counter the sampling flags describe.
///
/// # Errors
/// An unknown event name, or `--exclude-guest` with `--exclude-host`.
fn counter_spec(s: &SamplingArgs) -> anyhow::Result<CounterSpec> {
    let event = EventSpec::parse(&s.event)?;
    if s.exclude_guest && s.exclude_host {
        bail!("--exclude-guest and --exclude-host together exclude everything");
    }
    Ok(CounterSpec {
        event,
        rate: rate_of(s),
        exclude_guest: s.exclude_guest,
        exclude_host: s.exclude_host,
        ..CounterSpec::default()
    })
}

/// A progress line on stderr while recording, when stderr is a terminal.
fn progress_bar(duration: Option<Duration>) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let style = indicatif::ProgressStyle::with_template(
        "hvprof: recording {spinner} {elapsed_precise} {msg}",
    )
    .ok()?;
    let b = indicatif::ProgressBar::new_spinner().with_style(style);
    b.enable_steady_tick(Duration::from_millis(120));
    b.set_message(match duration {
        Some(d) => format!("of {:.1} s (Ctrl-C stops early)", d.as_secs_f64()),
        None => "(Ctrl-C stops)".to_string(),
    });
    Some(b)
}

/// `hvprof record` in a Xen dom0: the domains' vCPUs sampled from outside (src/xen/record.rs),
/// through the one attribution path, printed like any profile.
///
/// # Errors
/// Not dom0, the Xen libraries missing, no such domain, flags that need perf (`-o`,
/// `--active`, a workload).
fn run_xen(a: &RecordArgs) -> anyhow::Result<()> {
    if a.output.is_some() || a.active || !a.workload.is_empty() || a.g || a.call_graph.is_some() {
        bail!("with --domain (Xen dom0) hvprof samples vCPU contexts: -o, -g/--call-graph, --active and a workload are not supported");
    }
    let guest_kallsyms = parse_guest_kallsyms(&a.guest_kallsyms)?
        .into_iter()
        .map(|(id, p)| (id.map(|d| d as u32), p))
        .collect();
    let opts = hvprof::xen::record::XenRecordOptions {
        domains: a.xen.domains.clone(),
        guest_kallsyms,
        sampler: hvprof::xen::vcpu_sampler::SamplerOptions {
            hz: a.sampling.freq.unwrap_or(100).min(u32::MAX as u64) as u32,
            duration: a.duration.map(Duration::from_secs_f64),
            stop: super::signal::token(),
            max_cost: a.xen.max_cost / 100.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let out = hvprof::xen::record::record(&opts)?;
    eprintln!("hvprof: stopped: {}", out.sampler.stopped_because);
    eprintln!("hvprof: {}", out.sampler.describe());
    emit(&out.profile, &a.out)
}
