//! The `hvprof` command line: `demo`, `testvm`, `vms`, `record`, `report`, `detect`.
//!
//! This is the only place that uses `anyhow`: it turns library errors into one-line messages
//! with hints (perf_event_paranoid, capabilities, /dev/kvm) and a non-zero exit status.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

use hvprof::counters::{CounterSpec, EventSpec, Rate};
use hvprof::report::{flame, json, text, Profile};
use hvprof::session::{self, RecordOptions, Scope};

#[derive(Parser)]
#[command(
    name = "hvprof",
    version,
    about = "Hypervisor-side profiler: where the CPU time of virtual machines goes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the built-in test VM, profile it, and print the report (the main job).
    Demo(DemoArgs),
    /// Run the built-in test VM in the foreground (a real KVM guest made with kvm-ioctls).
    Testvm(TestvmArgs),
    /// List KVM VMs on this host: pid, name, vCPU index → thread, memory.
    Vms(VmsArgs),
    /// Profile VMs (-p PID) or the whole host (-a) and print or save the report.
    Record(RecordArgs),
    /// Print the report of a recording made with `record -o FILE`.
    Report(ReportArgs),
    /// What virtualization this machine runs on, which PV features are active, and what hvprof can measure here.
    Detect(DetectArgs),
    /// The hypervisor's own costs: VM exits by reason with latency, steal time, hypercalls.
    Stat(StatArgs),
}

#[derive(Args)]
struct StatArgs {
    /// VMM process ids (repeat or comma-separate).
    #[arg(
        short = 'p',
        long = "pid",
        value_delimiter = ',',
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pids: Vec<i32>,
    /// Every KVM VM on the host.
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(value_parser = parse_seconds, short = 'd', long)]
    duration: Option<f64>,
    /// Print a line per interval of this many milliseconds, like `perf stat -I`.
    #[arg(short = 'I', long = "interval")]
    interval_ms: Option<u64>,
    /// Output format (text or json).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
struct DetectArgs {
    /// Read a captured tree (DIR/sys, DIR/proc, DIR/dmesg, DIR/cpuid.txt) instead of the live system.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Read the kernel log from this file.
    #[arg(long)]
    dmesg: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Measure with the built-in test VM whether guest IPs are tagged and kvm:kvm_exit fires.
    #[arg(long)]
    probe: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    /// Folded stacks for flame graph tools.
    Folded,
}

#[derive(Args, Clone)]
struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Symbols shown per thread and VM.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Also write an SVG flame graph (VM;vCPU;class;symbol) to this file.
    #[arg(long)]
    flamegraph: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct SamplingArgs {
    /// Event, by perf's name (cycles, instructions, cpu-clock, task-clock, ...; modifiers :u :k :G :H).
    #[arg(short = 'e', long, default_value = "cycles")]
    event: String,
    /// Sampling frequency in Hz.
    #[arg(short = 'F', long, conflicts_with = "period")]
    freq: Option<u64>,
    /// Sampling period in events (ns for cpu-clock).
    #[arg(short = 'c', long)]
    period: Option<u64>,
    /// Do not count while vCPUs run guest code (attr.exclude_guest).
    #[arg(long)]
    exclude_guest: bool,
    /// Count only while vCPUs run guest code (attr.exclude_host).
    #[arg(long)]
    exclude_host: bool,
    /// Data pages per ring buffer (a power of two).
    #[arg(short = 'm', long = "mmap-pages", default_value_t = 64)]
    mmap_pages: usize,
}

#[derive(Args)]
struct RecordArgs {
    /// VMM process ids to profile (repeat or comma-separate).
    #[arg(
        short = 'p',
        long = "pid",
        value_delimiter = ',',
        required_unless_present = "all_cpus",
        conflicts_with = "all_cpus"
    )]
    pids: Vec<i32>,
    /// System-wide: one counter per host CPU.
    #[arg(short = 'a', long = "all-cpus")]
    all_cpus: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Stop after this many seconds.
    #[arg(value_parser = parse_seconds, short = 'd', long)]
    duration: Option<f64>,
    /// Guest symbol map in kallsyms/System.map format (passive mode): FILE for every VM, or PID=FILE.
    #[arg(long = "guest-kallsyms")]
    guest_kallsyms: Vec<String>,
    /// Write a recording here instead of printing the report.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Active mode: merge what the in-guest helper (hvprof-guest) tells: guest processes and
    /// guest user symbols. Needs --helper and exactly one -p PID.
    #[arg(long, requires = "helper")]
    active: bool,
    /// Where the in-guest helper is: unix:PATH (QEMU's virtio-serial chardev socket),
    /// tcp:ADDR:PORT (listen for it), vsock:CID:PORT.
    #[arg(long, requires = "active")]
    helper: Option<String>,
    /// Seconds to wait for the helper's initial state (kallsyms, processes) before sampling.
    #[arg(value_parser = parse_seconds, long, default_value_t = 120.0)]
    helper_timeout: f64,
    #[command(flatten)]
    out: OutputArgs,
    /// A workload to run; recording stops when it ends.
    #[arg(last = true)]
    workload: Vec<String>,
}

#[derive(Args)]
struct ReportArgs {
    /// The recording.
    #[arg(short = 'i', long, default_value = "hvprof.data")]
    input: PathBuf,
    /// Resolve guest IPs again with this symbol map: FILE or PID=FILE.
    #[arg(long = "guest-kallsyms")]
    guest_kallsyms: Vec<String>,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args)]
struct VmsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
struct TestvmArgs {
    /// Number of vCPUs.
    #[arg(long, default_value_t = 2)]
    vcpus: usize,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(value_parser = parse_seconds, short = 'd', long)]
    duration: Option<f64>,
    /// Write the guest payload's symbol map (kallsyms format) here.
    #[arg(long)]
    kallsyms: Option<PathBuf>,
    /// Guest workload.
    #[arg(long, value_enum, default_value = "compute")]
    workload: Workload,
    /// Run the payload in ring 0 (emulated instruction by instruction under PVM) instead of ring 3.
    #[arg(long)]
    ring0: bool,
    /// The KVM device.
    #[arg(long, default_value = "/dev/kvm")]
    kvm_device: PathBuf,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Workload {
    /// Hot loops that never leave the guest.
    Compute,
    /// Hot loops with a port write (VM exit) every iteration.
    Pio,
}

#[derive(Args)]
struct DemoArgs {
    /// Seconds to profile.
    #[arg(value_parser = parse_seconds, short = 'd', long, default_value_t = 3.0)]
    duration: f64,
    /// Number of vCPUs of the test VM.
    #[arg(long, default_value_t = 2)]
    vcpus: usize,
    /// Sampling frequency in Hz.
    #[arg(short = 'F', long, default_value_t = 1000)]
    freq: u64,
    /// Guest workload.
    #[arg(long, value_enum, default_value = "compute")]
    workload: Workload,
    /// Run the test VM's payload in ring 0.
    #[arg(long)]
    ring0: bool,
    #[command(flatten)]
    out: OutputArgs,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_signal_handlers();
    let r = match cli.cmd {
        Cmd::Demo(a) => demo(a),
        Cmd::Testvm(a) => testvm(a),
        Cmd::Vms(a) => vms(a),
        Cmd::Record(a) => record(a),
        Cmd::Report(a) => report(a),
        Cmd::Detect(a) => detect(a),
        Cmd::Stat(a) => stat(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvprof: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

/// One line: the error chain plus a hint for the errors users can fix.
fn explain(e: &anyhow::Error) -> String {
    let mut msg = format!("{e:#}");
    for cause in e.chain() {
        if let Some(hv) = cause.downcast_ref::<hvprof::Error>() {
            if let Some(h) = hint(hv) {
                msg.push_str(" — ");
                msg.push_str(&h);
            }
            break;
        }
    }
    msg
}

fn hint(e: &hvprof::Error) -> Option<String> {
    use hvprof::Error as E;
    match e {
        E::PerfEventOpen { source, target, .. } => match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                let paranoid: Option<i32> = read_sysctl("perf_event_paranoid");
                let shown = paranoid.map_or("unknown".to_string(), |p| p.to_string());
                Some(if target.starts_with("cpu") {
                    format!(
                        "not permitted: kernel.perf_event_paranoid is {shown}; profiling a whole CPU (-a) needs it at 0 or below (sysctl -w kernel.perf_event_paranoid=0), or CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8), or root"
                    )
                } else {
                    format!(
                        "not permitted: kernel.perf_event_paranoid is {shown}; sampling a thread with kernel samples needs it at 1 or below (sysctl -w kernel.perf_event_paranoid=1) or CAP_PERFMON; a thread of another user also needs the same uid or CAP_SYS_PTRACE — or run as root"
                    )
                })
            }
            Some(libc::EINVAL) => {
                let max: Option<i32> = read_sysctl("perf_event_max_sample_rate");
                Some(format!(
                    "the kernel refused the event's settings; a sampling frequency above kernel.perf_event_max_sample_rate ({}) is the usual cause: lower -F",
                    max.map_or("unknown".to_string(), |m| m.to_string())
                ))
            }
            Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
                Some("this event is not supported here (no hardware PMU?); try -e cpu-clock".into())
            }
            Some(libc::EMFILE) => Some("too many open files: raise the limit with ulimit -n".into()),
            _ => None,
        },
        E::RingMmap { .. } => Some("the perf mmap limit was hit: lower -m/--mmap-pages or raise kernel.perf_event_mlock_kb".into()),
        E::NoSuchProcess { .. } => Some("list VMs with `hvprof vms`".into()),
        E::Read { source, path } if source.raw_os_error() == Some(libc::EACCES) && path.starts_with("/proc") => {
            Some("reading another user's /proc/PID entries needs root or CAP_SYS_PTRACE".into())
        }
        E::NotAVm { .. } => Some("list VMs with `hvprof vms`".into()),
        _ => None,
    }
}

/// Reads `/proc/sys/kernel/NAME` as a number.
fn read_sysctl<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Parses a number of seconds: finite, not negative, at most a year.
fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=366.0 * 86400.0).contains(&v) {
        return Err(format!(
            "'{s}' is not a number of seconds between 0 and one year"
        ));
    }
    Ok(v)
}

fn rate_of(s: &SamplingArgs) -> Rate {
    match (s.freq, s.period) {
        (_, Some(p)) => Rate::Period(p),
        (Some(f), None) => Rate::Frequency(f),
        (None, None) => Rate::Frequency(1000),
    }
}

fn parse_guest_kallsyms(v: &[String]) -> anyhow::Result<Vec<(Option<i32>, PathBuf)>> {
    v.iter()
        .map(|s| match s.split_once('=') {
            Some((pid, file)) if pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty() => {
                Ok((
                    Some(pid.parse().context("pid in --guest-kallsyms")?),
                    PathBuf::from(file),
                ))
            }
            _ => Ok((None, PathBuf::from(s))),
        })
        .collect()
}

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

fn emit(profile: &Profile, out: &OutputArgs) -> anyhow::Result<()> {
    let s = match out.format {
        Format::Text => text::render(profile, out.top),
        Format::Json => json::render(profile) + "\n",
        Format::Folded => flame::folded(profile).join("\n") + "\n",
    };
    std::io::stdout().write_all(s.as_bytes())?;
    if let Some(path) = &out.flamegraph {
        let f = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        flame::svg(profile, std::io::BufWriter::new(f)).map_err(|e| anyhow!("flame graph: {e}"))?;
        eprintln!("hvprof: flame graph written to {}", path.display());
    }
    Ok(())
}

fn record(a: RecordArgs) -> anyhow::Result<()> {
    let scope = if a.all_cpus {
        Scope::SystemWide
    } else {
        Scope::Vms(a.pids.clone())
    };
    let mut opts = RecordOptions::new(scope);
    opts.counter = counter_spec(&a.sampling)?;
    opts.ring_pages = a.sampling.mmap_pages;
    opts.duration = a.duration.map(Duration::from_secs_f64);
    opts.guest_kallsyms = parse_guest_kallsyms(&a.guest_kallsyms)?;
    opts.output = a.output.clone();
    if let Some(h) = &a.helper {
        opts.active = Some(h.parse::<hvprof::active::HelperSpec>()?);
        opts.active_ready_timeout = Duration::from_secs_f64(a.helper_timeout);
    }
    opts.stop = Arc::new(AtomicBool::new(false));
    let mut child = if a.workload.is_empty() {
        None
    } else {
        Some(
            std::process::Command::new(&a.workload[0])
                .args(&a.workload[1..])
                .spawn()
                .with_context(|| format!("cannot start workload {}", a.workload[0]))?,
        )
    };
    let bar = progress_bar(opts.duration);
    let mut extra = || {
        if let Some(b) = &bar {
            b.tick();
        }
        if STOP.load(Ordering::Relaxed) {
            return Some("interrupted (SIGINT/SIGTERM)".to_string());
        }
        match child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(st))) => Some(format!("workload ended ({st})")),
            _ => None,
        }
    };
    let out = session::record(&opts, &mut extra)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    eprintln!("hvprof: stopped: {}", out.stopped_because);
    if let Some(p) = &a.output {
        eprintln!(
            "hvprof: {} samples written to {}",
            out.profile.total_samples,
            p.display()
        );
        return Ok(());
    }
    emit(&out.profile, &a.out)
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

fn report(a: ReportArgs) -> anyhow::Result<()> {
    let mut guest = hvprof::attribute::GuestMaps::default();
    for (pid, path) in parse_guest_kallsyms(&a.guest_kallsyms)? {
        let k = hvprof_symbols::Kallsyms::load(&path).map_err(|source| hvprof::Error::Symbols {
            path: path.clone(),
            source,
        })?;
        guest.set(pid, k);
    }
    let resolve = !guest.is_empty();
    let r = hvprof::recording::replay(&a.input, |s| {
        if resolve && s.sample.cpumode.is_guest() {
            s.symbol = guest.symbol(&s.sample);
        }
    })?;
    let mut meta = r.header.meta.clone();
    meta.duration_ns = r.duration_ns;
    let profile = r.agg.build(meta, r.hidden, usize::MAX);
    emit(&profile, &a.out)
}

fn vms(a: VmsArgs) -> anyhow::Result<()> {
    let vms = hvprof::discover::find_vms(
        Path::new("/proc"),
        hvprof::discover::default_debugfs().as_deref(),
    )?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&vms)?);
        return Ok(());
    }
    if vms.is_empty() {
        println!("no KVM VMs found (no process holds an anon_inode:kvm-vm fd)");
        return Ok(());
    }
    for vm in &vms {
        let mem = match (vm.guest_memory_bytes, vm.rss_bytes) {
            (Some(g), _) => format!("guest memory {} MiB", g >> 20),
            (None, Some(r)) => format!("VMM RSS {} MiB", r >> 20),
            _ => "memory unknown".into(),
        };
        println!(
            "VM {} (pid {}, {}, {}): {} vCPUs, {}",
            vm.name,
            vm.pid,
            vm.comm,
            vm.accel,
            vm.vcpus.len(),
            mem
        );
        for v in &vm.vcpus {
            match (v.tid, v.source) {
                (Some(t), Some(src)) => println!(
                    "  vCPU {} → tid {} ({}; found by {})",
                    v.index,
                    t,
                    vm.thread_name(t).unwrap_or("?"),
                    serde_json::to_value(src)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                ),
                _ => println!("  vCPU {} → thread not found", v.index),
            }
        }
    }
    Ok(())
}

fn stat(a: StatArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let opts = hvprof::stat::StatOptions {
        pids: if a.all { Vec::new() } else { a.pids.clone() },
        duration: a.duration.map(Duration::from_secs_f64),
        interval: a.interval_ms.map(Duration::from_millis),
        stop: stop.clone(),
        ..Default::default()
    };
    // Forward SIGINT/SIGTERM (the static flag) to the stat loop.
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if STOP.load(Ordering::Relaxed) {
                    stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let json = a.format == Format::Json;
    let r = hvprof::stat::run(&opts, &mut |iv| {
        if json {
            println!("{}", serde_json::to_string(iv).unwrap_or_default());
        } else {
            println!("{}", hvprof::stat::render_interval_line(iv).trim_end());
        }
    });
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let report = r?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", hvprof::stat::render_text(&report));
    }
    Ok(())
}

fn detect(a: DetectArgs) -> anyhow::Result<()> {
    let mut src = match &a.root {
        Some(r) => hvprof_detect::Source::tree(r),
        None => hvprof_detect::Source::live(),
    };
    if let Some(d) = &a.dmesg {
        src = src.with_dmesg(d);
    }
    if a.probe && a.root.is_some() {
        bail!("--probe measures the live host; it cannot be combined with --root");
    }
    let probe = hvprof::probe::TestVmProbe::default();
    let d = hvprof_detect::run(
        &src,
        a.probe
            .then_some(&probe as &dyn hvprof_detect::GuestIpProbe),
    );
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&d)?),
        _ => print!("{}", hvprof_detect::render_text(&d)),
    }
    Ok(())
}

fn testvm_config(vcpus: usize, workload: Workload, ring0: bool) -> hvprof_testvm::TestVmConfig {
    hvprof_testvm::TestVmConfig {
        vcpus,
        workload: match workload {
            Workload::Compute => hvprof_testvm::Workload::Compute,
            Workload::Pio => hvprof_testvm::Workload::PortIo { port: 0x80 },
        },
        privilege: if ring0 {
            hvprof_testvm::Privilege::Ring0
        } else {
            hvprof_testvm::Privilege::Ring3
        },
        ..Default::default()
    }
}

fn testvm(a: TestvmArgs) -> anyhow::Result<()> {
    let mut cfg = testvm_config(a.vcpus, a.workload, a.ring0);
    cfg.kvm_path = a.kvm_device.clone();
    if let Some(p) = &a.kallsyms {
        hvprof_testvm::write_kallsyms(p)?;
    }
    let _ = nix::sys::prctl::set_name(c"hvprof-testvm");
    let vm = hvprof_testvm::TestVm::start(cfg)?;
    let tids = vm.vcpu_tids();
    println!(
        "hvprof testvm: pid {} ready, {} vCPUs, threads {:?}{}",
        vm.pid(),
        tids.len(),
        tids,
        a.kallsyms
            .as_ref()
            .map(|p| format!(", guest symbols in {}", p.display()))
            .unwrap_or_default()
    );
    std::io::stdout().flush()?;
    let t0 = std::time::Instant::now();
    while !STOP.load(Ordering::Relaxed)
        && !vm.any_failed()
        && a.duration.is_none_or(|d| t0.elapsed().as_secs_f64() < d)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let summary = vm.stop()?;
    eprintln!(
        "hvprof testvm: stopped after {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    for v in &summary.vcpus {
        let shares: Vec<String> = v
            .measured_shares
            .iter()
            .map(|(n, f)| format!("{n} {:.1}%", f * 100.0))
            .collect();
        eprintln!(
            "  vCPU {} (tid {}): {} rounds, exits io {} hlt {} other {}; time measured in the guest: {}{}",
            v.index,
            v.tid,
            v.progress,
            v.exits.io,
            v.exits.hlt,
            v.exits.other,
            shares.join(", "),
            v.failure.as_ref().map(|f| format!("; FAILED: {f}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// A child `hvprof testvm` process, killed and reaped on drop.
struct ChildVm(std::process::Child);

impl Drop for ChildVm {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn demo(a: DemoArgs) -> anyhow::Result<()> {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("hvprof-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kallsyms = dir.join("testvm.kallsyms");
    let exe = std::env::current_exe().context("cannot find the hvprof executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["testvm", "--vcpus", &a.vcpus.to_string(), "--kallsyms"])
        .arg(&kallsyms);
    if a.workload == Workload::Pio {
        cmd.args(["--workload", "pio"]);
    }
    if a.ring0 {
        cmd.arg("--ring0");
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the test VM")?;
    let stdout = child.stdout.take().context("test VM stdout")?;
    let child = ChildVm(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if !line.contains("ready") {
        bail!("the test VM did not start (see its error above)");
    }
    eprint!("{line}");
    let pid = child.0.id() as i32;
    let mut opts = RecordOptions::new(Scope::Vms(vec![pid]));
    opts.counter = CounterSpec {
        event: EventSpec::parse("cycles")?,
        rate: Rate::Frequency(a.freq),
        ..CounterSpec::default()
    };
    opts.duration = Some(Duration::from_secs_f64(a.duration));
    opts.guest_kallsyms = vec![(Some(pid), kallsyms.clone())];
    eprintln!(
        "hvprof: profiling the test VM (pid {pid}) for {:.1} s at {} Hz ...",
        a.duration, a.freq
    );
    let out = session::record(&opts, &mut || {
        STOP.load(Ordering::Relaxed)
            .then(|| "interrupted".to_string())
    })?;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    emit(&out.profile, &a.out)
}
