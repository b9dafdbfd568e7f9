//! `hvprof testvm`: run the built-in test VM (a real KVM guest made with kvm-ioctls, from the
//! `hvprof-testvm` crate) in the foreground until `-d` or SIGINT/SIGTERM.
//!
//! Prints `hvprof testvm: pid N ready, ...` on stdout once the vCPUs run (`demo` and the
//! end-to-end tests wait for that line), and a per-vCPU summary on stderr at the end.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::parse::parse_seconds;
use super::signal::stop_requested;

/// `hvprof testvm` arguments.
#[derive(Args)]
pub struct TestvmArgs {
    /// Number of vCPUs.
    #[arg(long, default_value_t = 2)]
    pub vcpus: usize,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(value_parser = parse_seconds, short = 'd', long)]
    pub duration: Option<f64>,
    /// Write the guest payload's symbol map (kallsyms format) here.
    #[arg(long)]
    pub kallsyms: Option<PathBuf>,
    /// Guest workload.
    #[arg(long, value_enum, default_value = "compute")]
    pub workload: Workload,
    /// Run the payload in ring 0 (emulated instruction by instruction under PVM) instead of ring 3.
    #[arg(long)]
    pub ring0: bool,
    /// The KVM device.
    #[arg(long, default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,
}

/// `--workload`: what the test VM's vCPUs run.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Workload {
    /// Hot loops that never leave the guest.
    Compute,
    /// Hot loops with a port write (VM exit) every iteration.
    Pio,
}

/// The test VM configuration for these flags (port 0x80 for `pio`).
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

/// Runs `hvprof testvm`.
///
/// # Errors
/// The symbol map cannot be written, the VM cannot start (no `/dev/kvm`, ...) or stop.
pub fn run(a: TestvmArgs) -> anyhow::Result<()> {
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
    while !stop_requested()
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
