//! `hvprof vms`: list the KVM VMs on this host: pid, name, vCPU index → thread, memory.
//!
//! Without privileges, other users' processes cannot be inspected: `vms` then says how many
//! were skipped and what would let it see them, on stderr, instead of only "no KVM VMs found".

use std::path::Path;

use clap::Args;

use super::output::Format;

/// `hvprof vms` arguments.
#[derive(Args)]
pub struct VmsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Runs `hvprof vms` on `/proc` and KVM's debugfs (when mounted).
///
/// # Errors
/// `/proc` cannot be listed, or stdout JSON failure.
pub fn run(a: VmsArgs) -> anyhow::Result<()> {
    // In a Xen dom0 the VMs are domains (src/xen).
    if hvprof::xen::is_dom0(Path::new("/")) {
        let doms = hvprof::xen::list_domains()?;
        match a.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&doms)?),
            _ => print!("{}", hvprof::xen::domains::render_text(&doms)),
        }
        return Ok(());
    }
    let scan = hvprof::discover::scan_vms(
        Path::new("/proc"),
        hvprof::discover::default_debugfs().as_deref(),
    )?;
    let vms = scan.vms;
    if scan.denied > 0 {
        let as_root = nix::unistd::geteuid().is_root();
        eprintln!("hvprof: {}", permission_note(scan.denied, as_root));
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&vms)?);
        return Ok(());
    }
    if vms.is_empty() {
        println!("{}", no_vms_line(scan.denied));
        if let Err(hint) = hvprof::xen::check_dom0(Path::new("/")) {
            if hvprof::xen::on_xen(Path::new("/")) {
                eprintln!("hvprof: on Xen: {hint}");
            }
        }
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
                _ if vm.accel == "tcg" => println!(
                    "  vCPU {} → thread unnamed (QEMU TCG without -name ...,debug-threads=on); `hvprof record` recognises it by its samples in the translated-code buffer",
                    v.index
                ),
                _ => println!("  vCPU {} → thread not found", v.index),
            }
        }
    }
    Ok(())
}

/// The line printed when no VM was found; it does not claim more than was inspected.
fn no_vms_line(denied: usize) -> &'static str {
    if denied == 0 {
        "no KVM VMs found (no process holds an anon_inode:kvm-vm fd)"
    } else {
        "no KVM VMs found among the processes hvprof could inspect"
    }
}

/// The note for `denied` (> 0) processes whose fds could not be read: how many, and what
/// would give hvprof access (listing another user's `/proc/PID/fd` needs CAP_DAC_READ_SEARCH,
/// reading its links needs CAP_SYS_PTRACE: fs/proc/fd.c `proc_fd_permission`, fs/proc/base.c
/// `proc_fd_access_allowed`), and what profiling them needs on top. `as_root`: the effective
/// uid is 0, so privileges are not what is missing (a container without CAP_SYS_PTRACE,
/// another user namespace, or a security module refused).
fn permission_note(denied: usize, as_root: bool) -> String {
    let processes = if denied == 1 { "process" } else { "processes" };
    if as_root {
        return format!(
            "no permission to inspect {denied} {processes} even as root (the kernel refused /proc/PID/fd: a container without CAP_SYS_PTRACE, another user namespace, or a security module), so VMs among them are not listed"
        );
    }
    format!(
        "no permission to inspect {denied} {processes} (reading /proc/PID/fd of another user's process failed), so VMs among them are not listed — run as root, or give hvprof CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE (sudo setcap cap_dac_read_search,cap_sys_ptrace+ep hvprof); profiling them then also needs kernel.perf_event_paranoid at 1 or below (0 for -a) or CAP_PERFMON"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_note_says_how_many_and_what_helps() {
        let n = permission_note(37, false);
        assert!(
            n.starts_with("no permission to inspect 37 processes"),
            "{n}"
        );
        for want in [
            "run as root",
            "CAP_SYS_PTRACE",
            "CAP_DAC_READ_SEARCH",
            "perf_event_paranoid",
            "CAP_PERFMON",
        ] {
            assert!(n.contains(want), "{want} in {n}");
        }
        assert!(permission_note(1, false).contains("inspect 1 process ("));
        assert!(!n.contains('\n'), "one line: {n}");
        let r = permission_note(1, true);
        assert!(
            r.starts_with("no permission to inspect 1 process even as root"),
            "{r}"
        );
        assert!(!r.contains("run as root"), "{r}");
    }

    #[test]
    fn no_vms_line_does_not_overclaim() {
        assert_eq!(
            no_vms_line(0),
            "no KVM VMs found (no process holds an anon_inode:kvm-vm fd)"
        );
        assert!(!no_vms_line(3).contains("no process holds"));
    }
}
