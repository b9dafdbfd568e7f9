//! `hvprof report`: print the report of a perf.data recording — made with `hvprof record -o
//! FILE` or by perf itself — attributing its samples now, with guest symbol maps if given.

use std::path::PathBuf;

use clap::Args;

use super::output::{emit, OutputArgs};
use super::parse::parse_guest_kallsyms;

/// `hvprof report` arguments.
#[derive(Args)]
pub struct ReportArgs {
    /// The recording.
    #[arg(short = 'i', long, default_value = "perf.data")]
    pub input: PathBuf,
    /// Resolve guest IPs again with this symbol map: FILE or PID=FILE.
    #[arg(long = "guest-kallsyms")]
    pub guest_kallsyms: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Runs `hvprof report`.
///
/// # Errors
/// A symbol map that cannot be loaded, and every error of [`hvprof::recording::replay`]
/// (unreadable or malformed recording).
pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let mut guest = Vec::new();
    for (pid, path) in parse_guest_kallsyms(&a.guest_kallsyms)? {
        let k = hvprof_symbols::Kallsyms::load(&path).map_err(|source| hvprof::Error::Symbols {
            path: path.clone(),
            source,
        })?;
        guest.push((pid, k));
    }
    let r = hvprof::recording::replay(&a.input, guest)?;
    let profile = r.agg.snapshot(r.meta, r.hidden, usize::MAX);
    emit(&profile, &a.out)
}
