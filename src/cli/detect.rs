//! `hvprof detect`: what virtualization this machine runs on, which PV features are active,
//! and what hvprof can measure here (the `hvprof-detect` crate, plus an optional probe with
//! the built-in test VM).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::output::Format;

/// `hvprof detect` arguments.
#[derive(Args)]
pub struct DetectArgs {
    /// Read a captured tree (DIR/sys, DIR/proc, DIR/dmesg, DIR/cpuid.txt) instead of the live system.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Read the kernel log from this file.
    #[arg(long)]
    pub dmesg: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Measure with the built-in test VM whether guest IPs are tagged and kvm:kvm_exit fires.
    #[arg(long)]
    pub probe: bool,
}

/// Runs `hvprof detect`.
///
/// # Errors
/// `--probe` with `--root` (the probe measures the live host), or stdout JSON failure.
pub fn run(a: DetectArgs) -> anyhow::Result<()> {
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
    let probe = super::probe::TestVmProbe::default();
    let d = hvprof_detect::run(
        &src,
        a.probe
            .then_some(&probe as &dyn hvprof_detect::GuestIpProbe),
    );
    // In a Xen dom0 (live, or a captured tree that is one): what the dom0 backend can do.
    let root = a.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let dom0 = hvprof::xen::is_dom0(&root).then(|| match &a.root {
        Some(r) => hvprof::xen::detect::Dom0Facts::read(r, None),
        None => hvprof::xen::detect::Dom0Facts::live(),
    });
    match a.format {
        Format::Json => {
            let mut v = serde_json::to_value(&d)?;
            if let (Some(f), Some(o)) = (&dom0, v.as_object_mut()) {
                o.insert("xen_dom0".into(), serde_json::to_value(f)?);
            }
            println!("{}", serde_json::to_string_pretty(&v)?)
        }
        _ => {
            print!("{}", hvprof_detect::render_text(&d));
            if let Some(f) = &dom0 {
                print!("{}", hvprof::xen::detect::render_text(f));
            }
        }
    }
    Ok(())
}
