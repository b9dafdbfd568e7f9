//! The report flags shared by `record`, `report` and `demo`, and the printer of a profile.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};

use hvprof::output::{flame, json, pprof, text};
use hvprof::report::Profile;

/// `--format`: how a subcommand prints its result. `vms`, `stat` and `detect` print JSON for
/// `json` and text otherwise.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    // No doc comments on `Text` and `Json`: clap would print them in `--help`.
    Text,
    Json,
    /// Folded stacks for flame graph tools.
    Folded,
    /// Gzipped pprof profile.proto (go tool pprof, Pyroscope, Parca); binary, so stdout must
    /// be redirected.
    Pprof,
}

/// How a profile is printed: format, symbols per thread, optional SVG flame graph.
#[derive(Args, Clone)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Symbols shown per thread and VM.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Also write an SVG flame graph (VM;vCPU;class;symbol) to this file.
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
}

/// Prints `profile` on stdout in `out.format`, and writes the flame graph when asked.
///
/// # Errors
/// When stdout or the flame graph file cannot be written, or `--format pprof` would write its
/// binary to a terminal.
pub fn emit(profile: &Profile, out: &OutputArgs) -> anyhow::Result<()> {
    let s = match out.format {
        Format::Text => text::render(profile, out.top),
        Format::Json => json::render(profile) + "\n",
        Format::Folded => flame::folded(profile).join("\n") + "\n",
        Format::Pprof => {
            let mut stdout = std::io::stdout().lock();
            if std::io::IsTerminal::is_terminal(&stdout) {
                return Err(anyhow!(
                    "pprof is binary: redirect stdout to a file (hvprof ... --format pprof > profile.pb.gz)"
                ));
            }
            pprof::write(profile, &mut stdout).context("cannot write the pprof profile")?;
            String::new()
        }
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
