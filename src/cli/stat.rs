//! `hvprof stat`: the hypervisor's own costs (VM exits by reason with latency, steal time,
//! hypercalls), as a final report and optionally one line per interval.

use std::time::Duration;

use clap::Args;

use super::output::Format;
use super::parse::parse_seconds;

/// `hvprof stat` arguments.
#[derive(Args)]
pub struct StatArgs {
    /// VMM process ids (repeat or comma-separate).
    #[arg(
        short = 'p',
        long = "pid",
        value_delimiter = ',',
        required_unless_present_any = ["all", "domains"],
        conflicts_with = "all"
    )]
    pub pids: Vec<i32>,
    /// Every KVM VM on the host (in a Xen dom0: every domain).
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// In a Xen dom0: only these domains (domid or name; repeat or comma-separate).
    #[arg(long = "domain", value_delimiter = ',', conflicts_with = "pids")]
    pub domains: Vec<String>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(value_parser = parse_seconds, short = 'd', long)]
    pub duration: Option<f64>,
    /// Print a line per interval of this many milliseconds, like `perf stat -I`.
    #[arg(short = 'I', long = "interval")]
    pub interval_ms: Option<u64>,
    /// Output format (text or json).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Runs `hvprof stat` until `-d` or SIGINT/SIGTERM.
///
/// # Errors
/// Every error of [`hvprof::stat::run`] (no such VM, tracepoints that cannot be opened).
pub fn run(a: StatArgs) -> anyhow::Result<()> {
    if hvprof::xen::is_dom0(std::path::Path::new("/")) {
        return run_xen(&a);
    }
    if !a.domains.is_empty() {
        anyhow::bail!("--domain needs a Xen dom0");
    }
    let opts = hvprof::stat::StatOptions {
        pids: if a.all { Vec::new() } else { a.pids.clone() },
        duration: a.duration.map(Duration::from_secs_f64),
        interval: a.interval_ms.map(Duration::from_millis),
        stop: super::signal::token(),
        ..Default::default()
    };
    let json = a.format == Format::Json;
    let r = hvprof::stat::run(&opts, &mut |iv| {
        if json {
            println!("{}", serde_json::to_string(iv).unwrap_or_default());
        } else {
            println!("{}", hvprof::stat::render_interval_line(iv).trim_end());
        }
    });
    let report = r?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", hvprof::stat::render_text(&report));
    }
    Ok(())
}

/// `hvprof stat` in a Xen dom0: per-domain figures from xentrace and libxenctrl (src/xen).
fn run_xen(a: &StatArgs) -> anyhow::Result<()> {
    let opts = hvprof::xen::stat::XenStatOptions {
        duration: Duration::from_secs_f64(a.duration.unwrap_or(5.0)),
        ..Default::default()
    };
    let mut r = hvprof::xen::stat::run(&opts)?;
    if !a.domains.is_empty() {
        r.domains.retain(|d| {
            a.domains
                .iter()
                .any(|w| *w == d.name || w.parse() == Ok(d.domid))
        });
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        _ => print!("{}", hvprof::xen::stat::render_text(&r)),
    }
    Ok(())
}
