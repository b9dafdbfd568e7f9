//! Host evidence and capabilities: KVM backends and `/dev/kvm`, the PMU, tracepoints,
//! debugfs, lockdown, `perf_event_paranoid`, `kptr_restrict`: what hvprof can measure here.

use super::cpuinfo::Flags;
use super::{log_src, Ctx};
use crate::host::{Debugfs, HostCapabilities, Lockdown, Probe, ProbeOutcome, Tracepoints};
use crate::kvm::PvmInfo;
use crate::model::{Signal, Strength};
use crate::source::{KernelLog, ReadFail, Source};

/// KVM on this machine, before the rest of [`HostCapabilities`] is known.
pub(crate) struct HostRaw {
    /// `/dev/kvm` exists.
    pub(crate) kvm: bool,
    /// Whether `/dev/kvm` opened read-write (live only).
    pub(crate) kvm_openable: Option<bool>,
    /// Why it did not open.
    pub(crate) kvm_open_error: Option<String>,
    /// Loaded KVM backends: `kvm_intel`, `kvm_amd`, `kvm_pvm`.
    pub(crate) backends: Vec<String>,
}

/// Find the KVM backends and `/dev/kvm` (opened read-write when live), with evidence for a
/// KVM host and a PVM host module.
pub(crate) fn kvm_device(src: &Source, cx: &mut Ctx) -> HostRaw {
    let backends: Vec<String> = ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .iter()
        .filter(|m| cx.fs.exists(&format!("/sys/module/{m}")))
        .map(|m| m.to_string())
        .collect();
    if backends.iter().any(|b| b == "kvm_pvm") {
        cx.ev(
            "/sys/module/kvm_pvm",
            "present",
            Signal::PvmHost,
            Strength::Strong,
            "the PVM host module is loaded",
        );
    }
    let kvm = cx.fs.exists("/dev/kvm");
    let (kvm_openable, kvm_open_error) = if kvm && src.live {
        match cx.fs.open_rw("/dev/kvm") {
            Ok(()) => (Some(true), None),
            Err(e) => (Some(false), Some(e)),
        }
    } else {
        (None, None)
    };
    if kvm {
        cx.ev(
            "/dev/kvm",
            match kvm_openable {
                Some(true) => "present, opened read-write",
                Some(false) => "present, not openable",
                None => "present",
            },
            Signal::KvmHost,
            Strength::Strong,
            "this machine can run KVM guests",
        );
    }
    HostRaw {
        kvm,
        kvm_openable,
        kvm_open_error,
        backends,
    }
}

/// Everything else the recorder needs to know: PMU, tracepoints, debugfs, lockdown,
/// `perf_event_paranoid`, `kptr_restrict`, root; `outcome` overrides predictions.
pub(crate) fn host_caps(
    src: &Source,
    cx: &mut Ctx,
    log: &KernelLog,
    flags: &Flags,
    pvm: &PvmInfo,
    raw: HostRaw,
    outcome: Option<ProbeOutcome>,
) -> HostCapabilities {
    let (event_sources, hardware_pmu) = pmu(cx);
    let mounts = cx.fs.read("/proc/mounts").unwrap_or_default();
    let (guest_ip_tagging, firing) = match outcome {
        Some(o) => (o.guest_ip_tagging, o.kvm_exit_firing),
        None => (Probe::NotProbed, Probe::NotProbed),
    };
    let tracepoints = tracepoints(src, cx, &mounts, firing);
    let debugfs = debugfs(cx, &mounts);
    let lockdown = lockdown(cx, log);
    let int = |cx: &mut Ctx, p: &str| -> Option<i32> {
        let t = cx.fs.read_trim(p)?;
        match t.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                cx.fs.problem(p, format!("not an integer: {t:?}"));
                None
            }
        }
    };
    let paranoid = int(cx, "/proc/sys/kernel/perf_event_paranoid");
    let kptr_restrict = int(cx, "/proc/sys/kernel/kptr_restrict");
    let root = if src.live {
        cx.fs.read("/proc/self/status").and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
    } else {
        None
    };
    if let Some(e) = &raw.kvm_open_error {
        cx.fs
            .problem("/dev/kvm", format!("present but not openable: {e}"));
    }
    HostCapabilities {
        kvm: raw.kvm,
        kvm_openable: raw.kvm_openable,
        kvm_backends: raw.backends,
        hardware_virt: flags.has("vmx") || flags.has("svm"),
        hardware_pmu,
        event_sources,
        pvm_host: pvm.host,
        guest_ip_tagging,
        tracepoints,
        debugfs,
        lockdown,
        paranoid,
        kptr_restrict,
        root,
    }
}

/// Event sources in `/sys/bus/event_source/devices` and whether one is a hardware PMU
/// (`cpu`, `cpu_core`, `cpu_atom`, `armv7_*`, `armv8_*`), with evidence either way.
fn pmu(cx: &mut Ctx) -> (Vec<String>, bool) {
    let event_sources = cx.fs.list("/sys/bus/event_source/devices");
    let hardware_pmu = event_sources.iter().any(|s| {
        s == "cpu"
            || s == "cpu_core"
            || s == "cpu_atom"
            || s.starts_with("armv8_")
            || s.starts_with("armv7_")
    });
    if !event_sources.is_empty() {
        let (signal, meaning) = if hardware_pmu {
            (Signal::HardwarePmu, "a hardware PMU event source exists")
        } else {
            (
                Signal::NoHardwarePmu,
                "no cpu/cpu_core/cpu_atom event source: software events only",
            )
        };
        cx.ev(
            "/sys/bus/event_source/devices",
            event_sources.join(" "),
            signal,
            Strength::Strong,
            meaning,
        );
    }
    (event_sources, hardware_pmu)
}

/// Where tracefs is and whether it has the `kvm_exit`/`kvm_entry` events; `firing` comes from
/// the probe.
fn tracepoints(src: &Source, cx: &mut Ctx, mounts: &str, firing: Probe) -> Tracepoints {
    let filesystems = cx.fs.read("/proc/filesystems").unwrap_or_default();
    let mut tracefs = None;
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if cx.fs.exists(&format!("{dir}/events")) {
            tracefs = Some(dir.to_string());
            break;
        }
    }
    let (kvm_exit, kvm_entry) = match &tracefs {
        Some(d) => (
            cx.fs.exists(&format!("{d}/events/kvm/kvm_exit")),
            cx.fs.exists(&format!("{d}/events/kvm/kvm_entry")),
        ),
        None => (false, false),
    };
    let tp_note = match &tracefs {
        Some(_) if kvm_exit && kvm_entry => None,
        Some(d) => Some(format!(
            "tracefs at {d} has no events/kvm/kvm_exit and kvm_entry: kvm not loaded here"
        )),
        None => {
            let mounted = mounts
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some("tracefs"));
            let supported = filesystems
                .lines()
                .any(|l| l.split_whitespace().last() == Some("tracefs"));
            Some(if mounted {
                "tracefs is mounted but not at /sys/kernel/tracing".to_string()
            } else if supported || src.live {
                "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)".to_string()
            } else {
                "no tracefs found".to_string()
            })
        }
    };
    Tracepoints {
        tracefs,
        kvm_exit,
        kvm_entry,
        note: tp_note,
        firing,
    }
}

/// What debugfs offers about KVM: global stats (refused under lockdown), per-VM directories,
/// and the read-only per-vCPU files.
fn debugfs(cx: &mut Ctx, mounts: &str) -> Debugfs {
    let kvm_dir = cx.fs.exists("/sys/kernel/debug/kvm");
    let mut debugfs = Debugfs {
        kvm_dir,
        stats_readable: None,
        vm_dirs: Vec::new(),
        vcpu_files_readable: None,
        note: None,
    };
    if kvm_dir {
        debugfs.stats_readable = match cx.fs.try_read("/sys/kernel/debug/kvm/exits") {
            Ok(_) => Some(true),
            Err(ReadFail::Missing) => None,
            Err(ReadFail::Failed(why)) => {
                debugfs.note = Some(format!(
                    "/sys/kernel/debug/kvm/exits: {why}: under lockdown debugfs refuses files \
                     with any write permission bit; read-only (0444) files such as vcpuN/pid \
                     and vcpuN/tsc-offset stay readable"
                ));
                Some(false)
            }
        };
        debugfs.vm_dirs = cx
            .fs
            .list("/sys/kernel/debug/kvm")
            .into_iter()
            .filter(|d| {
                d.split_once('-').is_some_and(|(a, b)| {
                    a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit())
                })
            })
            .collect();
        if let Some(vm) = debugfs.vm_dirs.first().cloned() {
            let base = format!("/sys/kernel/debug/kvm/{vm}");
            let vcpu = cx
                .fs
                .list(&base)
                .into_iter()
                .find(|d| d.starts_with("vcpu"));
            if let Some(v) = vcpu {
                let ok = cx.fs.try_read(&format!("{base}/{v}/pid")).is_ok()
                    && cx.fs.try_read(&format!("{base}/{v}/tsc-offset")).is_ok();
                debugfs.vcpu_files_readable = Some(ok);
            }
        }
    } else {
        let mounted = mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("debugfs"));
        debugfs.note = Some(if mounted || cx.fs.exists("/sys/kernel/debug/tracing") {
            "debugfs has no kvm directory: kvm not loaded".to_string()
        } else {
            "debugfs is not mounted (mount -t debugfs nodev /sys/kernel/debug)".to_string()
        });
    }
    debugfs
}

/// The lockdown mode from securityfs, else from the kernel log's lockdown message.
fn lockdown(cx: &mut Ctx, log: &KernelLog) -> Lockdown {
    match cx.fs.read_trim("/sys/kernel/security/lockdown") {
        Some(text) => {
            let mode = text
                .split_whitespace()
                .find(|w| w.starts_with('[') && w.ends_with(']'))
                .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
                .unwrap_or_else(|| "unknown".to_string());
            Lockdown {
                mode,
                evidence: Some(format!("/sys/kernel/security/lockdown: {text}")),
            }
        }
        None => match log.find("Kernel is locked down from") {
            Some((n, line)) => Lockdown {
                mode: "locked".to_string(),
                evidence: Some(format!(
                    "{}: \"{}\" (securityfs not mounted, so integrity vs confidentiality is unknown)",
                    log_src(n),
                    line
                )),
            },
            None => Lockdown {
                mode: "unknown".to_string(),
                evidence: Some(
                    "/sys/kernel/security/lockdown not readable (securityfs not mounted?) and no \
                     lockdown message in the kernel log"
                        .to_string(),
                ),
            },
        },
    }
}
