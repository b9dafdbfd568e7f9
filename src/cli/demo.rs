//! `hvprof demo`: start the built-in test VM as a child `hvprof testvm` process, profile it
//! with `record -p` for a few seconds, and print the report.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use hvprof::counters::{CounterSpec, EventSpec, Rate};
use hvprof::session::{self, RecordOptions, Scope};

use super::output::{emit, OutputArgs};
use super::parse::parse_seconds;
use super::testvm::Workload;

/// `hvprof demo` arguments.
#[derive(Args)]
pub struct DemoArgs {
    /// Seconds to profile.
    #[arg(value_parser = parse_seconds, short = 'd', long, default_value_t = 3.0)]
    pub duration: f64,
    /// Number of vCPUs of the test VM.
    #[arg(long, default_value_t = 2)]
    pub vcpus: usize,
    /// Sampling frequency in Hz.
    #[arg(short = 'F', long, default_value_t = 1000)]
    pub freq: u64,
    /// Guest workload.
    #[arg(long, value_enum, default_value = "compute")]
    pub workload: Workload,
    /// Run the test VM's payload in ring 0.
    #[arg(long)]
    pub ring0: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// A child `hvprof testvm` process, killed (SIGTERM) and reaped on drop.
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

/// Runs `hvprof demo`.
///
/// # Errors
/// The test VM cannot start (its own error is on stderr), and every error of
/// [`session::record`].
pub fn run(a: DemoArgs) -> anyhow::Result<()> {
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
    opts.stop = super::signal::token();
    let out = session::record(&opts)?;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    emit(&out.profile, &a.out)
}
