//! The `hvprof` command line: `demo`, `testvm`, `vms`, `record`, `report`, `detect`, `stat`,
//! `top`.
//!
//! This file only parses (clap derive) and dispatches; each subcommand lives in its own module
//! under `cli/`. The binary is the only user of `anyhow`: it turns library errors into
//! one-line messages with hints (perf_event_paranoid, capabilities, /dev/kvm) and a non-zero
//! exit status.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::{demo, detect, hint, record, report, signal, stat, testvm, top, vms};

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
    Demo(demo::DemoArgs),
    /// Run the built-in test VM in the foreground (a real KVM guest made with kvm-ioctls).
    Testvm(testvm::TestvmArgs),
    /// List KVM VMs on this host: pid, name, vCPU index → thread, memory.
    Vms(vms::VmsArgs),
    /// Profile VMs (-p PID) or the whole host (-a) and print or save the report.
    Record(record::RecordArgs),
    /// Print the report of a recording made with `record -o FILE`.
    Report(report::ReportArgs),
    /// What virtualization this machine runs on, which PV features are active, and what hvprof can measure here.
    Detect(detect::DetectArgs),
    /// The hypervisor's own costs: VM exits by reason with latency, steal time, hypercalls.
    Stat(stat::StatArgs),
    /// A live view of every VM's CPU: classes, vCPUs, top symbols, VM exits and steal, refreshed every -d seconds.
    Top(top::TopArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    signal::install_handlers();
    let r = match cli.cmd {
        Cmd::Demo(a) => demo::run(a),
        Cmd::Testvm(a) => testvm::run(a),
        Cmd::Vms(a) => vms::run(a),
        Cmd::Record(a) => record::run(a),
        Cmd::Report(a) => report::run(a),
        Cmd::Detect(a) => detect::run(a),
        Cmd::Stat(a) => stat::run(a),
        Cmd::Top(a) => top::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvprof: {}", hint::explain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks (conflicting names, bad defaults) over every subcommand.
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
