//! Gathering evidence and deciding the verdict.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};

use crate::cpuid::{CpuidDump, CpuidInfo, SignatureVendor};
use crate::host::{
    Debugfs, GuestIpProbe, HostCapabilities, Lockdown, Probe, ProbeOutcome, Tracepoints,
};
use crate::kvm::{
    decode_kvm_features, virtio_device_name, KvmGuestInfo, PvmInfo, KVM_CPUID_FEATURES_OFFSET,
    KVM_CPUID_VENDOR_FEATURES_OFFSET, PVM_CPUID_SIGNATURE,
};
use crate::model::*;
use crate::source::{load_kernel_log, Fs, KernelLog, ReadFail, Source};
use crate::xen::{decode_xen_features, ActiveFeature, XenFeatures, XenInfo, XenMode};

/// Everything collected before deciding.
struct Ctx {
    fs: Fs,
    evidence: Vec<Evidence>,
    red_herrings: Vec<RedHerring>,
}

impl Ctx {
    fn ev(
        &mut self,
        source: impl Into<String>,
        observed: impl Into<String>,
        signal: Signal,
        strength: Strength,
        meaning: impl Into<String>,
    ) {
        self.evidence.push(Evidence {
            source: source.into(),
            observed: observed.into(),
            signal,
            strength,
            meaning: meaning.into(),
        });
    }

    fn herring(&mut self, source: impl Into<String>, observed: impl Into<String>, why: &str) {
        self.red_herrings.push(RedHerring {
            source: source.into(),
            observed: observed.into(),
            why: why.to_string(),
        });
    }

    fn has(&self, signal: Signal) -> bool {
        self.evidence.iter().any(|e| e.signal == signal)
    }

    fn first(&self, signal: Signal) -> Option<&Evidence> {
        self.evidence.iter().find(|e| e.signal == signal)
    }
}

fn log_src(n: usize) -> String {
    format!("kernel log line {n}")
}

fn abridge(s: &str) -> String {
    const MAX: usize = 160;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Run detection; see [`crate::detect_with_probe`].
pub(crate) fn run(src: &Source, probe: Option<&dyn GuestIpProbe>) -> Detection {
    let mut cx = Ctx {
        fs: Fs::new(&src.root),
        evidence: Vec::new(),
        red_herrings: Vec::new(),
    };

    // CPUID.
    let (dump, cpuid) = load_cpuid(src, &mut cx);
    cpuid_evidence(&mut cx, dump.as_ref(), &cpuid);

    // /proc/cpuinfo flags.
    let flags = cpu_flags(&mut cx);

    // Kernel log.
    let (log, kernel_log) = load_kernel_log(src, &cx.fs);
    let log = log.unwrap_or_default();

    // Xen.
    let xen_facts = xen_sysfs(&mut cx);
    let dmi = dmi(&mut cx);
    let mut xen_log = XenLogFacts::default();
    let mut kvm_active = Vec::new();
    log_evidence(&mut cx, &log, &mut xen_log, &mut kvm_active);

    // Platform.
    let clocksource = cx
        .fs
        .read_trim("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    let available_clocksources: Vec<String> = cx
        .fs
        .read("/sys/devices/system/clocksource/clocksource0/available_clocksource")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let cs_path = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    match clocksource.as_deref() {
        Some("xen") => cx.ev(
            cs_path,
            "xen",
            Signal::XenPvClock,
            Strength::Strong,
            "Xen PV clock in use",
        ),
        Some("kvm-clock") => {
            cx.ev(
                cs_path,
                "kvm-clock",
                Signal::Kvm,
                Strength::Moderate,
                "kvmclock in use",
            );
            if !kvm_active.iter().any(|a| a.name == "kvmclock") {
                kvm_active.push(ActiveFeature {
                    name: "kvmclock".into(),
                    evidence: format!("{cs_path}: kvm-clock"),
                });
            }
        }
        Some(c @ "hyperv_clocksource_tsc_page") => cx.ev(
            cs_path,
            c,
            Signal::HyperV,
            Strength::Moderate,
            "Hyper-V reference TSC page in use",
        ),
        _ => {}
    }
    let virtio = virtio(&mut cx);
    let cmdline = cx.fs.read_trim("/proc/cmdline");

    // PVM and host.
    let (mut pvm, host_raw) = pvm_and_host(src, &mut cx, &log, &flags, cmdline.as_deref());
    let outcome = probe.map(|p| p.probe());
    let host = host_caps(src, &mut cx, &log, &flags, &pvm, host_raw, outcome);

    // A PVM guest gets no SMEP/SMAP (pvm-spec.rst: "SMEP/SMAP is disabled"); only worth saying
    // when the question "PVM or plain KVM?" is open.
    if cx.has(Signal::Kvm) && !flags.has("kvm_pvm_guest") {
        let seen: Vec<&str> = ["smep", "smap"]
            .into_iter()
            .filter(|f| flags.has(f))
            .collect();
        if !seen.is_empty() {
            cx.ev(
                "/proc/cpuinfo flags",
                seen.join(" "),
                Signal::NotPvmGuest,
                Strength::Moderate,
                "PVM guests run without SMEP/SMAP (PVM spec), so this kernel is not one",
            );
        }
    }

    // Decide.
    let mut verdict = decide(&cx, &host, &kernel_log, &cpuid);
    pvm.guest = verdict.kind == GuestKind::PvmGuest;
    pvm_notes(&cx, &mut pvm);

    let xen = if verdict.kind == GuestKind::XenGuest
        || cx.evidence.iter().any(|e| is_xen(e.signal))
        || xen_facts.any()
    {
        Some(xen_info(&cx, &xen_facts, &xen_log, &kernel_log))
    } else {
        None
    };
    if let Some(x) = &xen {
        if verdict.kind == GuestKind::XenGuest {
            verdict.xen_mode = x.mode;
        }
    }
    let kvm = if matches!(verdict.kind, GuestKind::KvmGuest | GuestKind::PvmGuest)
        || cx.has(Signal::Kvm)
    {
        Some(kvm_info(dump.as_ref(), &cpuid, kvm_active))
    } else {
        None
    };
    verdict.summary = summary_line(&verdict, &host, xen.as_ref());

    red_herrings(&mut cx, &verdict, &flags, &xen_facts, &pvm);
    let (can_measure, cannot_measure) = measure_lists(&verdict, &host);

    let platform = Platform {
        clocksource,
        available_clocksources,
        virtio,
        dmi,
        cpu_flags: flags.selected,
        cmdline,
    };
    Detection {
        schema_version: SCHEMA_VERSION,
        input: InputInfo {
            root: src.root.display().to_string(),
            live: src.live,
        },
        verdict,
        cpuid,
        kernel_log,
        xen,
        kvm,
        pvm,
        platform,
        host,
        evidence: cx.evidence,
        red_herrings: cx.red_herrings,
        can_measure,
        cannot_measure,
        problems: cx.fs.problems,
    }
}

fn is_xen(s: Signal) -> bool {
    matches!(
        s,
        Signal::Xen
            | Signal::XenPv
            | Signal::XenHvm
            | Signal::XenPvh
            | Signal::XenPvDrivers
            | Signal::XenPvInterrupts
            | Signal::XenPvTimers
            | Signal::XenPvSpinlocks
            | Signal::XenPvClock
    )
}

// ---------------------------------------------------------------------------------------------
// CPUID

fn load_cpuid(src: &Source, cx: &mut Ctx) -> (Option<CpuidDump>, CpuidInfo) {
    if src.live {
        return match CpuidDump::capture_live() {
            Some(d) => {
                let info = CpuidInfo::from_dump(&d, "live CPUID instruction".into());
                (Some(d), info)
            }
            None => (
                None,
                CpuidInfo::unavailable(None, "CPUID is x86-only; not available on this CPU".into()),
            ),
        };
    }
    let path = "/cpuid.txt";
    let shown = cx.fs.path(path).display().to_string();
    match cx.fs.try_read(path) {
        Ok(text) => match CpuidDump::parse(&text) {
            Ok(d) => {
                let info = CpuidInfo::from_dump(&d, shown);
                (Some(d), info)
            }
            Err(e) => {
                cx.fs.problem(path, format!("malformed: {e}"));
                (
                    None,
                    CpuidInfo::unavailable(Some(shown), format!("cpuid.txt malformed: {e}")),
                )
            }
        },
        Err(ReadFail::Missing) => (
            None,
            CpuidInfo::unavailable(
                None,
                "no cpuid.txt in the captured tree (CPUID cannot be read from files)".into(),
            ),
        ),
        Err(ReadFail::Failed(why)) => {
            cx.fs.problem(path, why.clone());
            (
                None,
                CpuidInfo::unavailable(Some(shown), format!("cpuid.txt not readable: {why}")),
            )
        }
    }
}

fn cpuid_evidence(cx: &mut Ctx, dump: Option<&CpuidDump>, info: &CpuidInfo) {
    match info.hypervisor_bit {
        Some(true) => cx.ev(
            "cpuid 0x1 ecx bit 31",
            "1",
            Signal::Virtualized,
            Strength::Strong,
            "hypervisor-present bit set",
        ),
        Some(false) => cx.ev(
            "cpuid 0x1 ecx bit 31",
            "0",
            Signal::BareMetal,
            Strength::Moderate,
            "hypervisor-present bit clear (a Xen PV guest's user-space CPUID can also show this)",
        ),
        None => {}
    }
    let n = info.hypervisor_leaves.len();
    for (i, leaf) in info.hypervisor_leaves.iter().enumerate() {
        let src = format!("cpuid 0x{:08x}", leaf.base);
        let obs = format!("\"{}\" (max leaf 0x{:08x})", leaf.signature, leaf.max_leaf);
        let (signal, strength, meaning) = match leaf.vendor {
            SignatureVendor::Kvm => (Signal::Kvm, Strength::Strong, "KVM signature".to_string()),
            SignatureVendor::Xen => (Signal::Xen, Strength::Strong, "Xen signature".to_string()),
            SignatureVendor::HyperV if i + 1 < n => (
                Signal::HyperV,
                Strength::Weak,
                "Hyper-V compatible leaves offered by the hypervisor found at a higher base"
                    .to_string(),
            ),
            SignatureVendor::HyperV => (
                Signal::HyperV,
                Strength::Strong,
                "Hyper-V signature".to_string(),
            ),
            SignatureVendor::Vmware => (
                Signal::Vmware,
                Strength::Strong,
                "VMware signature".to_string(),
            ),
            v => (
                Signal::OtherHypervisor,
                Strength::Strong,
                format!("hypervisor signature ({v:?})"),
            ),
        };
        cx.ev(src, obs, signal, strength, meaning);
        if leaf.vendor == SignatureVendor::Kvm {
            let vendor_leaf = leaf.base + KVM_CPUID_VENDOR_FEATURES_OFFSET;
            let src2 = format!("cpuid 0x{vendor_leaf:08x}");
            if leaf.max_leaf >= vendor_leaf {
                match dump.and_then(|d| d.get(vendor_leaf, 0)) {
                    Some(r) if r.ebx == PVM_CPUID_SIGNATURE => cx.ev(
                        src2,
                        format!("ebx=0x{:08x} (\"pvm\")", r.ebx),
                        Signal::PvmGuest,
                        Strength::Strong,
                        "PVM vendor signature (KVM_CPUID_VENDOR_FEATURES)",
                    ),
                    Some(r) => cx.ev(
                        src2,
                        format!("ebx=0x{:08x}", r.ebx),
                        Signal::NotPvmGuest,
                        Strength::Weak,
                        "vendor leaf present but not PVM",
                    ),
                    None => {}
                }
            } else {
                cx.ev(
                    format!("cpuid 0x{:08x} eax", leaf.base),
                    format!("0x{:08x} < 0x{vendor_leaf:08x}", leaf.max_leaf),
                    Signal::NotPvmGuest,
                    Strength::Weak,
                    "no KVM_CPUID_VENDOR_FEATURES leaf, so no PVM signature; weak because \
                     user-space CPUID in a PVM guest may not be trapped by the PVM host and \
                     then shows the layer below",
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc/cpuinfo

struct Flags {
    all: Vec<String>,
    /// The flags detection cares about, in a fixed order.
    selected: Vec<String>,
}

impl Flags {
    fn has(&self, f: &str) -> bool {
        self.all.iter().any(|x| x == f)
    }
}

fn cpu_flags(cx: &mut Ctx) -> Flags {
    let text = cx.fs.read("/proc/cpuinfo").unwrap_or_default();
    let all: Vec<String> = text
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let selected: Vec<String> = ["hypervisor", "vmx", "svm", "kvm_pvm_guest"]
        .iter()
        .filter(|f| all.iter().any(|x| x == *f))
        .map(|f| f.to_string())
        .collect();
    let flags = Flags { all, selected };
    if !flags.all.is_empty() {
        if flags.has("hypervisor") {
            cx.ev(
                "/proc/cpuinfo flags",
                "hypervisor",
                Signal::Virtualized,
                Strength::Moderate,
                "the kernel sees the hypervisor-present bit",
            );
        } else {
            cx.ev(
                "/proc/cpuinfo flags",
                "no 'hypervisor' flag",
                Signal::BareMetal,
                Strength::Weak,
                "the kernel does not see the hypervisor-present bit",
            );
        }
        if flags.has("kvm_pvm_guest") {
            cx.ev(
                "/proc/cpuinfo flags",
                "kvm_pvm_guest",
                Signal::PvmGuest,
                Strength::Strong,
                "X86_FEATURE_KVM_PVM_GUEST, set by pvm_early_setup() when booted as a PVM guest",
            );
        }
    }
    flags
}

// ---------------------------------------------------------------------------------------------
// Xen sysfs

#[derive(Default)]
struct XenSysfs {
    hv_type: Option<String>,
    guest_type: Option<String>,
    version: Option<String>,
    features: Option<XenFeatures>,
    features_error: Option<String>,
    capabilities: Vec<String>,
    dom0: Option<bool>,
    bus_devices: Vec<String>,
    xvd: Vec<String>,
    vif_driver: Vec<String>,
}

impl XenSysfs {
    fn any(&self) -> bool {
        self.hv_type.as_deref() == Some("xen")
            || self.guest_type.is_some()
            || self.features.is_some()
            || self.features_error.is_some()
            || !self.bus_devices.is_empty()
            || !self.xvd.is_empty()
    }
}

fn xen_sysfs(cx: &mut Ctx) -> XenSysfs {
    let mut x = XenSysfs {
        hv_type: cx.fs.read_trim("/sys/hypervisor/type"),
        ..Default::default()
    };
    if let Some(t) = x.hv_type.clone() {
        if t == "xen" {
            cx.ev(
                "/sys/hypervisor/type",
                t,
                Signal::Xen,
                Strength::Strong,
                "Xen sysfs driver reports Xen",
            );
        }
    }
    if let Some(g) = cx.fs.read_trim("/sys/hypervisor/guest_type") {
        let sig = match g.as_str() {
            "PV" => Some(Signal::XenPv),
            "HVM" => Some(Signal::XenHvm),
            "PVH" => Some(Signal::XenPvh),
            _ => None,
        };
        match sig {
            Some(s) => cx.ev(
                "/sys/hypervisor/guest_type",
                g.clone(),
                s,
                Strength::Strong,
                "the guest kernel's own domain type",
            ),
            None => cx.ev(
                "/sys/hypervisor/guest_type",
                g.clone(),
                Signal::Xen,
                Strength::Strong,
                "Xen guest of another type",
            ),
        }
        x.guest_type = Some(g);
    }
    let major = cx.fs.read_trim("/sys/hypervisor/version/major");
    let minor = cx.fs.read_trim("/sys/hypervisor/version/minor");
    let extra = cx.fs.read_trim("/sys/hypervisor/version/extra");
    if let (Some(a), Some(b)) = (major, minor) {
        x.version = Some(format!("{a}.{b}{}", extra.unwrap_or_default()));
    }
    let fpath = "/sys/hypervisor/properties/features";
    if let Some(text) = cx.fs.read(fpath) {
        match decode_xen_features(&text) {
            Ok(f) => {
                let names: Vec<&str> = f.set.iter().map(|b| b.name.as_str()).collect();
                let obs = format!("{} = {}", f.raw, names.join(" "));
                cx.ev(
                    fpath,
                    obs.clone(),
                    Signal::Xen,
                    Strength::Moderate,
                    "Xen reports feature flags to this domain",
                );
                if f.has("mmu_pt_update_preserve_ad")
                    || f.has("highmem_assist")
                    || f.has("gnttab_map_avail_bits")
                {
                    cx.ev(fpath, obs, Signal::XenPv, Strength::Moderate, "PV-only feature bits: Xen sets them only for PV domains (xen/common/kernel.c)");
                } else if f.has("hvm_callback_vector") || f.has("hvm_safe_pvclock") {
                    cx.ev(fpath, obs, Signal::XenHvm, Strength::Moderate, "hvm_* feature bits: Xen sets them only for HVM/PVH domains (xen/common/kernel.c)");
                }
                x.features = Some(f);
            }
            Err(e) => {
                cx.fs.problem(fpath, format!("malformed: {e}"));
                x.features_error = Some(e.to_string());
            }
        }
    }
    if let Some(c) = cx.fs.read("/sys/hypervisor/properties/capabilities") {
        x.capabilities = c.split_whitespace().map(str::to_string).collect();
    }
    if let Some(c) = cx.fs.read("/proc/xen/capabilities") {
        let d0 = c.contains("control_d");
        x.dom0 = Some(d0);
        if d0 {
            cx.ev(
                "/proc/xen/capabilities",
                "control_d",
                Signal::Xen,
                Strength::Strong,
                "this is dom0, the Xen host's control domain",
            );
        }
    }
    x.bus_devices = cx.fs.list("/sys/bus/xen/devices");
    if !x.bus_devices.is_empty() {
        let pv: Vec<&String> = x
            .bus_devices
            .iter()
            .filter(|d| d.starts_with("vbd-") || d.starts_with("vif-"))
            .collect();
        let obs = abridge(&x.bus_devices.join(" "));
        if pv.is_empty() {
            cx.ev(
                "/sys/bus/xen/devices",
                obs,
                Signal::Xen,
                Strength::Moderate,
                "Xen bus devices",
            );
        } else {
            cx.ev(
                "/sys/bus/xen/devices",
                obs,
                Signal::XenPvDrivers,
                Strength::Moderate,
                "PV block (vbd) / network (vif) devices on the Xen bus",
            );
        }
    }
    x.xvd = cx
        .fs
        .list("/sys/block")
        .into_iter()
        .filter(|d| d.starts_with("xvd"))
        .collect();
    if !x.xvd.is_empty() {
        cx.ev(
            "/sys/block",
            x.xvd.join(" "),
            Signal::XenPvDrivers,
            Strength::Moderate,
            "xvd disks: the Xen PV block driver (blkfront)",
        );
    }
    for ifname in cx.fs.list("/sys/class/net") {
        if let Some(drv) = cx
            .fs
            .link_name(&format!("/sys/class/net/{ifname}/device/driver"))
        {
            if drv == "vif" {
                x.vif_driver.push(ifname.clone());
                cx.ev(
                    format!("/sys/class/net/{ifname}/device/driver"),
                    "vif",
                    Signal::XenPvDrivers,
                    Strength::Moderate,
                    "Xen PV network driver (netfront)",
                );
            }
        }
    }
    x
}

// ---------------------------------------------------------------------------------------------
// DMI

fn dmi(cx: &mut Ctx) -> Dmi {
    let d = Dmi {
        sys_vendor: cx.fs.read_trim("/sys/class/dmi/id/sys_vendor"),
        product_name: cx.fs.read_trim("/sys/class/dmi/id/product_name"),
        bios_vendor: cx.fs.read_trim("/sys/class/dmi/id/bios_vendor"),
        bios_version: cx.fs.read_trim("/sys/class/dmi/id/bios_version"),
    };
    let vendor = d.sys_vendor.clone().unwrap_or_default();
    let product = d.product_name.clone().unwrap_or_default();
    let src = "/sys/class/dmi/id/{sys_vendor,product_name}";
    let obs = format!("{vendor} / {product}");
    if vendor == "Xen" {
        if product.contains("HVM") {
            cx.ev(
                src,
                obs,
                Signal::XenHvm,
                Strength::Moderate,
                "Xen HVM firmware (PV and PVH guests have no DMI)",
            );
        } else {
            cx.ev(src, obs, Signal::Xen, Strength::Moderate, "Xen firmware");
        }
    } else if vendor == "QEMU"
        || product.contains("KVM")
        || vendor == "Google"
        || vendor == "Amazon EC2"
    {
        cx.ev(
            src,
            obs,
            Signal::Kvm,
            Strength::Weak,
            "firmware of a KVM-based VMM (could also be QEMU TCG)",
        );
    } else if vendor.starts_with("VMware") {
        cx.ev(
            src,
            obs,
            Signal::Vmware,
            Strength::Moderate,
            "VMware firmware",
        );
    } else if vendor == "Microsoft Corporation" && product.contains("Virtual Machine") {
        cx.ev(
            src,
            obs,
            Signal::HyperV,
            Strength::Moderate,
            "Hyper-V firmware",
        );
    } else if vendor == "innotek GmbH" || vendor == "Parallels Software International Inc." {
        cx.ev(
            src,
            obs,
            Signal::OtherHypervisor,
            Strength::Moderate,
            "VirtualBox/Parallels firmware",
        );
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Kernel log

#[derive(Default)]
struct XenLogFacts {
    active: Vec<ActiveFeature>,
    version: Option<String>,
}

fn log_evidence(
    cx: &mut Ctx,
    log: &KernelLog,
    xen: &mut XenLogFacts,
    kvm_active: &mut Vec<ActiveFeature>,
) {
    // "Booting paravirtualized kernel on <pv_info.name>" (arch/x86/kernel/paravirt.c /
    // init/main.c); names from arch/x86/xen/enlighten_{pv,hvm}.c and arch/x86/kernel/kvm.c.
    if let Some((n, line)) = log.find("Booting paravirtualized kernel on ") {
        let on = line
            .split_once("Booting paravirtualized kernel on ")
            .map(|(_, r)| r.trim())
            .unwrap_or("");
        let (sig, meaning) = match on {
            "Xen" => (Signal::XenPv, "PV kernel on Xen (pv_info.name \"Xen\")"),
            "Xen HVM" => (Signal::XenHvm, "PV-aware kernel in a Xen HVM container"),
            "Xen PVH" => (Signal::XenPvh, "PVH guest"),
            "KVM" => (Signal::Kvm, "PV-aware kernel on KVM"),
            "bare hardware" => (
                Signal::BareMetal,
                "the kernel uses no paravirt ops: bare metal, or a guest whose kernel lacks support for its hypervisor",
            ),
            _ => (Signal::OtherHypervisor, "paravirtualized kernel on another hypervisor"),
        };
        let strength = if sig == Signal::BareMetal {
            Strength::Moderate
        } else {
            Strength::Strong
        };
        cx.ev(log_src(n), line, sig, strength, meaning);
    }
    // "Hypervisor detected: <x86_hyper name>" (arch/x86/kernel/cpu/hypervisor.c).
    if let Some((n, line)) = log.find("Hypervisor detected: ") {
        let what = line
            .split_once("Hypervisor detected: ")
            .map(|(_, r)| r.trim())
            .unwrap_or("");
        let (sig, meaning) = match what {
            "KVM" => (Signal::Kvm, "the kernel detected KVM"),
            "Xen HVM" => (
                Signal::XenHvm,
                "the kernel detected a Xen HVM container (HVM or PVH)",
            ),
            "Xen PV" => (Signal::XenPv, "the kernel detected Xen PV"),
            "VMware" => (Signal::Vmware, "the kernel detected VMware"),
            "Microsoft Hyper-V" => (Signal::HyperV, "the kernel detected Hyper-V"),
            _ => (
                Signal::OtherHypervisor,
                "the kernel detected another hypervisor",
            ),
        };
        cx.ev(log_src(n), line, sig, Strength::Strong, meaning);
    }

    struct Pat {
        needle: &'static str,
        signal: Signal,
        strength: Strength,
        meaning: &'static str,
        xen_feature: Option<&'static str>,
    }
    const fn p(
        needle: &'static str,
        signal: Signal,
        strength: Strength,
        meaning: &'static str,
        xen_feature: Option<&'static str>,
    ) -> Pat {
        Pat {
            needle,
            signal,
            strength,
            meaning,
            xen_feature,
        }
    }
    use Signal as S;
    use Strength::{Moderate as M, Strong as St, Weak as W};
    let pats = [
        p(
            "Xen HVM callback vector for event delivery is enabled",
            S::XenPvInterrupts,
            St,
            "PV interrupts: event channels via the HVM callback vector (PVHVM)",
            Some("pv_interrupts"),
        ),
        p(
            "Xen: using vcpuop timer interface",
            S::XenPvTimers,
            St,
            "PV timers (vcpuop)",
            Some("pv_timers"),
        ),
        p(
            "installing Xen timer for CPU",
            S::XenPvTimers,
            St,
            "PV timers",
            None,
        ),
        p(
            "xen: PV spinlocks enabled",
            S::XenPvSpinlocks,
            St,
            "PV spinlocks",
            Some("pv_spinlocks"),
        ),
        p(
            "lock: xen: PV spinlocks",
            S::XenPvSpinlocks,
            St,
            "PV spinlocks",
            None,
        ),
        p(
            "Switching to clocksource xen",
            S::XenPvClock,
            St,
            "Xen PV clock",
            Some("pv_clock"),
        ),
        p(
            "Switched to clocksource xen",
            S::XenPvClock,
            St,
            "Xen PV clock",
            Some("pv_clock"),
        ),
        p(
            "Initialising Xen virtual ethernet driver",
            S::XenPvDrivers,
            St,
            "PV network driver (netfront)",
            Some("pv_network"),
        ),
        p(
            "unplug emulated NICs",
            S::XenPvDrivers,
            St,
            "emulated NICs unplugged in favour of PV netfront",
            Some("unplugged_emulated_nics"),
        ),
        p(
            "unplug emulated disks",
            S::XenPvDrivers,
            St,
            "emulated disks unplugged in favour of PV blkfront",
            Some("unplugged_emulated_disks"),
        ),
        p(
            "blkfront: xvd",
            S::XenPvDrivers,
            St,
            "PV block driver (blkfront)",
            Some("pv_disks"),
        ),
        p(
            "Xen Platform PCI: I/O protocol version",
            S::XenHvm,
            M,
            "Xen platform PCI device: an HVM guest that can use PV drivers",
            None,
        ),
        p(
            "xen-platform-pci",
            S::XenHvm,
            M,
            "Xen platform PCI device (HVM)",
            None,
        ),
        p(
            "xen: --> pirq=",
            S::XenHvm,
            W,
            "PIRQs mapped to event channels (HVM with hvm_pirqs)",
            Some("pirqs_as_event_channels"),
        ),
        p(
            "PCI: setting up Xen PCI frontend stub",
            S::XenPv,
            M,
            "PCI frontend stub, set up only in PV guests",
            None,
        ),
        p(
            "Xen: using vcpu_info placement",
            S::XenPv,
            M,
            "vcpu_info placement (PV)",
            None,
        ),
        p(
            "XENBUS: Device with no driver",
            S::Xen,
            W,
            "Xen bus device",
            None,
        ),
        p(
            "xen/balloon: Initialising balloon driver",
            S::Xen,
            W,
            "Xen balloon driver",
            None,
        ),
        p(
            "kvm-clock: Using msrs",
            S::Kvm,
            St,
            "kvmclock registered",
            None,
        ),
        p("kvm-clock: cpu ", S::Kvm, M, "kvmclock registered", None),
        p("kvm-guest: ", S::Kvm, M, "KVM guest paravirt setup", None),
        p(
            "kvm-pvm: loaded",
            S::PvmHost,
            St,
            "kvm_pvm (PVM host module) initialised",
            None,
        ),
        p(
            "pvm-guest: ",
            S::PvmGuest,
            St,
            "PVM guest code active (pr_fmt of arch/x86/kernel/pvm.c)",
            None,
        ),
        p(
            "pvm-pv: not detected",
            S::NotPvmGuest,
            St,
            "the kernel's own PVM-guest detection said no",
            None,
        ),
        p(
            "PMU not available due to virtualization",
            S::NoHardwarePmu,
            St,
            "no hardware PMU: software events only",
            None,
        ),
        p("Hypervisor detected: Xen PV", S::XenPv, St, "Xen PV", None),
    ];
    for pat in &pats {
        if let Some((n, line)) = log.find(pat.needle) {
            cx.ev(
                log_src(n),
                abridge(line),
                pat.signal,
                pat.strength,
                pat.meaning,
            );
            if let Some(name) = pat.xen_feature {
                if !xen.active.iter().any(|a| a.name == name) {
                    xen.active.push(ActiveFeature {
                        name: name.to_string(),
                        evidence: format!("{}: \"{}\"", log_src(n), abridge(line)),
                    });
                }
            }
        }
    }
    if let Some((n, line)) = log.find("pvm-pv: detected") {
        cx.ev(
            log_src(n),
            line,
            S::PvmGuest,
            M,
            "the kernel's PVM-guest detection said yes",
        );
    }
    // PV timers: keep one entry even when only "installing Xen timer" was seen.
    if cx.has(S::XenPvTimers) && !xen.active.iter().any(|a| a.name == "pv_timers") {
        if let Some((n, line)) = log.find("installing Xen timer for CPU") {
            xen.active.push(ActiveFeature {
                name: "pv_timers".into(),
                evidence: format!("{}: \"{}\"", log_src(n), line),
            });
        }
    }
    // Xen version: "Xen version: 4.2.amazon (preserve-AD)" (PV) or "Xen version 4.2." (HVM).
    if let Some((n, line)) = log.find("Xen version") {
        let v = line
            .split_once("Xen version")
            .map(|(_, r)| r.trim_start_matches(':').trim())
            .unwrap_or("");
        let v = v
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        if !v.is_empty() {
            xen.version = Some(v.to_string());
        }
        cx.ev(log_src(n), line, S::Xen, St, "Xen version banner");
    }
    if let Some((n, line)) = log.find("DMI: Xen HVM domU") {
        cx.ev(log_src(n), abridge(line), S::XenHvm, M, "Xen HVM firmware");
    }
    // KVM paravirt features the guest kernel reports (arch/x86/kernel/kvm.c).
    let kvm_pats: [(&str, &str); 8] = [
        ("kvm-clock: Using msrs", "kvmclock"),
        ("kvm-guest: PV spinlocks enabled", "pv_spinlocks"),
        ("setup PV IPIs", "pv_send_ipi"),
        ("setup PV sched yield", "pv_sched_yield"),
        ("setup pv remote TLB flush", "pv_tlb_flush"),
        ("eoi() replaced with kvm_guest_apic_eoi_write", "pv_eoi"),
        ("stealtime: cpu", "steal_time"),
        ("setup async PF for cpu", "async_pf"),
    ];
    for (needle, name) in kvm_pats {
        if let Some((n, line)) = log.find(needle) {
            kvm_active.push(ActiveFeature {
                name: name.to_string(),
                evidence: format!("{}: \"{}\"", log_src(n), abridge(line)),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Virtio

fn virtio(cx: &mut Ctx) -> Vec<VirtioDevice> {
    let mut out = Vec::new();
    for name in cx.fs.list("/sys/bus/virtio/devices") {
        let p = format!("/sys/bus/virtio/devices/{name}/device");
        let Some(text) = cx.fs.read_trim(&p) else {
            continue;
        };
        let t = text.trim_start_matches("0x");
        match u32::from_str_radix(t, 16) {
            Ok(id) => out.push(VirtioDevice {
                name,
                id,
                kind: virtio_device_name(id).unwrap_or("unknown").to_string(),
            }),
            Err(_) => cx.fs.problem(&p, format!("malformed device id {text:?}")),
        }
    }
    if !out.is_empty() {
        let kinds: Vec<&str> = out.iter().map(|d| d.kind.as_str()).collect();
        cx.ev(
            "/sys/bus/virtio/devices",
            kinds.join(" "),
            Signal::Virtualized,
            Strength::Weak,
            "virtio devices: a virtual machine monitor (QEMU, Firecracker, cloud-hypervisor, ...)",
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PVM and host

struct HostRaw {
    kvm: bool,
    kvm_openable: Option<bool>,
    kvm_open_error: Option<String>,
    backends: Vec<String>,
}

fn pvm_and_host(
    src: &Source,
    cx: &mut Ctx,
    log: &KernelLog,
    flags: &Flags,
    cmdline: Option<&str>,
) -> (PvmInfo, HostRaw) {
    let backends: Vec<String> = ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .iter()
        .filter(|m| cx.fs.exists(&format!("/sys/module/{m}")))
        .map(|m| m.to_string())
        .collect();
    let module = backends.iter().any(|b| b == "kvm_pvm");
    if module {
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
    // kallsyms: count pvm_* symbols (streamed; the file is large).
    let mut pvm_syms = 0usize;
    let mut event_entry = false;
    if let Ok(f) = std::fs::File::open(cx.fs.path("/proc/kallsyms")) {
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let Some(name) = line.split_whitespace().nth(2) else {
                continue;
            };
            if name.starts_with("pvm_") {
                pvm_syms += 1;
                if name == "pvm_do_event_irqoff" {
                    event_entry = true;
                }
            }
        }
    }
    let nested_pvm = cmdline.and_then(|c| {
        c.split_whitespace()
            .find_map(|t| t.strip_prefix("nested_pvm=").map(str::to_string))
    });
    let loaded = module || log.find("kvm-pvm: loaded").is_some();
    let pvm = PvmInfo {
        guest: flags.has("kvm_pvm_guest"),
        host: loaded && kvm,
        kvm_pvm_loaded: loaded,
        kallsyms_pvm_symbols: pvm_syms,
        kallsyms_event_entry: event_entry,
        cmdline_nested_pvm: nested_pvm,
        notes: Vec::new(),
    };
    (
        pvm,
        HostRaw {
            kvm,
            kvm_openable,
            kvm_open_error,
            backends,
        },
    )
}

fn pvm_notes(cx: &Ctx, pvm: &mut PvmInfo) {
    let mut notes = Vec::new();
    if pvm.guest {
        let ev: Vec<String> = cx
            .evidence
            .iter()
            .filter(|e| e.signal == Signal::PvmGuest)
            .map(|e| format!("{}: {}", e.source, e.observed))
            .collect();
        notes.push(format!("PVM guest: yes ({})", ev.join("; ")));
    } else {
        let against: Vec<String> = cx
            .evidence
            .iter()
            .filter(|e| e.signal == Signal::NotPvmGuest)
            .map(|e| format!("{}: {}", e.source, e.observed))
            .collect();
        let mut s = String::from("PVM guest: no");
        if !against.is_empty() {
            s.push_str(&format!(" ({})", against.join("; ")));
        }
        s.push_str(
            "; no kvm_pvm_guest CPU flag, no \"pvm-guest:\" boot messages, no PVM CPUID signature",
        );
        notes.push(s);
    }
    if pvm.host {
        notes.push("PVM host: yes (kvm_pvm loaded and /dev/kvm present)".to_string());
    } else if pvm.kvm_pvm_loaded {
        notes.push("PVM host: no: kvm_pvm is loaded but /dev/kvm is missing".to_string());
    } else {
        notes.push("PVM host: no: kvm_pvm not loaded".to_string());
    }
    if pvm.kallsyms_pvm_symbols > 0 && !pvm.guest && !pvm.host {
        notes.push(format!(
            "{} pvm_* symbols in kallsyms: PVM code is built in, but built is not active",
            pvm.kallsyms_pvm_symbols
        ));
    }
    pvm.notes = notes;
}

fn host_caps(
    src: &Source,
    cx: &mut Ctx,
    log: &KernelLog,
    flags: &Flags,
    pvm: &PvmInfo,
    raw: HostRaw,
    outcome: Option<ProbeOutcome>,
) -> HostCapabilities {
    let event_sources = cx.fs.list("/sys/bus/event_source/devices");
    let hardware_pmu = event_sources.iter().any(|s| {
        s == "cpu"
            || s == "cpu_core"
            || s == "cpu_atom"
            || s.starts_with("armv8_")
            || s.starts_with("armv7_")
    });
    if !event_sources.is_empty() {
        if hardware_pmu {
            cx.ev(
                "/sys/bus/event_source/devices",
                event_sources.join(" "),
                Signal::HardwarePmu,
                Strength::Strong,
                "a hardware PMU event source exists",
            );
        } else {
            cx.ev(
                "/sys/bus/event_source/devices",
                event_sources.join(" "),
                Signal::NoHardwarePmu,
                Strength::Strong,
                "no cpu/cpu_core/cpu_atom event source: software events only",
            );
        }
    }

    // Tracepoints.
    let mounts = cx.fs.read("/proc/mounts").unwrap_or_default();
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
    let (guest_ip_tagging, firing) = match outcome {
        Some(o) => (o.guest_ip_tagging, o.kvm_exit_firing),
        None => (Probe::NotProbed, Probe::NotProbed),
    };
    let tracepoints = Tracepoints {
        tracefs,
        kvm_exit,
        kvm_entry,
        note: tp_note,
        firing,
    };

    // debugfs.
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

    // Lockdown.
    let lockdown = match cx.fs.read_trim("/sys/kernel/security/lockdown") {
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
    };
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

// ---------------------------------------------------------------------------------------------
// Verdict

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Cand {
    Kvm,
    Xen,
    Pvm,
    Vmware,
    HyperV,
    Other,
}

fn cand_of(s: Signal) -> Option<Cand> {
    Some(match s {
        Signal::Kvm => Cand::Kvm,
        Signal::PvmGuest => Cand::Pvm,
        Signal::Vmware => Cand::Vmware,
        Signal::HyperV => Cand::HyperV,
        Signal::OtherHypervisor => Cand::Other,
        s if is_xen(s) => Cand::Xen,
        _ => return None,
    })
}

fn decide(
    cx: &Ctx,
    host: &HostCapabilities,
    log: &crate::source::KernelLogInfo,
    cpuid: &CpuidInfo,
) -> Verdict {
    let mut score: HashMap<Cand, (u32, Strength)> = HashMap::new();
    let mut virt = (0u32, None::<Strength>);
    let mut bare = (0u32, None::<Strength>);
    let mut not_pvm = (0u32, None::<Strength>);
    for e in &cx.evidence {
        let w = e.strength.weight();
        if let Some(c) = cand_of(e.signal) {
            let s = score.entry(c).or_insert((0, Strength::Weak));
            s.0 += w;
            s.1 = s.1.max(e.strength);
            continue;
        }
        let bump = |t: &mut (u32, Option<Strength>)| {
            t.0 += w;
            t.1 = Some(t.1.map_or(e.strength, |s| s.max(e.strength)));
        };
        match e.signal {
            Signal::Virtualized => bump(&mut virt),
            Signal::BareMetal => bump(&mut bare),
            Signal::NotPvmGuest => bump(&mut not_pvm),
            _ => {}
        }
    }
    let mut conflicts = Vec::new();

    // PVM is a kind of KVM: KVM evidence supports it; strong "not PVM" evidence vetoes it.
    if let Some(&(pvm_score, pvm_max)) = score.get(&Cand::Pvm) {
        let kvm = score.remove(&Cand::Kvm).unwrap_or((0, Strength::Weak));
        if not_pvm.1 == Some(Strength::Strong) && pvm_max == Strength::Strong {
            conflicts.push(
                "PVM guest evidence and the kernel's own \"not a PVM guest\" both present"
                    .to_string(),
            );
        }
        if not_pvm.1 == Some(Strength::Strong) && pvm_max < Strength::Strong {
            score.remove(&Cand::Pvm);
            score.insert(Cand::Kvm, kvm);
        } else {
            score.insert(Cand::Pvm, (pvm_score + kvm.0, pvm_max.max(kvm.1)));
        }
    }
    // Hyper-V leaves behind another hypervisor's signature are enlightenments, not Hyper-V.
    let mut ranked: Vec<(Cand, u32, Strength)> =
        score.iter().map(|(c, (s, m))| (*c, *s, *m)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));

    let any_evidence = !cx.evidence.is_empty();
    let (kind, hypervisor, confidence, unknown_reason) = if let Some(&(
        best,
        best_score,
        best_max,
    )) = ranked.first()
    {
        let second = ranked.get(1);
        if let Some(&(c2, _, m2)) = second {
            if m2 == Strength::Strong {
                conflicts.push(format!("strong evidence for {} as well", cand_label(c2)));
            }
        }
        if let Some(e) = cx
            .evidence
            .iter()
            .find(|e| e.signal == Signal::BareMetal && e.strength >= Strength::Moderate)
        {
            conflicts.push(format!("{}: {} ({})", e.source, e.observed, e.meaning));
        }
        let tie = second.is_some_and(|&(_, s2, m2)| s2 == best_score && m2 == best_max);
        if tie {
            (
                GuestKind::Unknown,
                None,
                Confidence::Low,
                Some(format!(
                    "evidence is split evenly between {} and {}",
                    cand_label(best),
                    cand_label(second.map(|s| s.0).unwrap_or(best))
                )),
            )
        } else {
            let conf = if best_max == Strength::Strong && conflicts.is_empty() {
                Confidence::High
            } else if best_max >= Strength::Moderate || best_score >= 3 {
                if conflicts.is_empty() || best_score >= 6 {
                    Confidence::Medium
                } else {
                    Confidence::Low
                }
            } else {
                Confidence::Low
            };
            let name = match best {
                Cand::Other => cx
                    .evidence
                    .iter()
                    .find(|e| e.signal == Signal::OtherHypervisor)
                    .map(|e| e.observed.clone()),
                c => Some(cand_label(c).to_string()),
            };
            (cand_kind(best), name, conf, None)
        }
    } else if virt.0 > 0 && virt.0 >= bare.0 {
        if bare.0 > 0 {
            conflicts.push("some evidence says bare metal".to_string());
        }
        let conf = if virt.1 == Some(Strength::Strong) && bare.1.is_none() {
            Confidence::Medium
        } else {
            Confidence::Low
        };
        (
            GuestKind::OtherGuest,
            Some("unidentified".to_string()),
            conf,
            None,
        )
    } else if bare.0 > 0 {
        if virt.0 > 0 {
            conflicts.push("some evidence says virtualized".to_string());
        }
        let conf = match (bare.1, virt.0) {
            (Some(Strength::Strong), 0) => Confidence::High,
            (Some(_), 0) if bare.0 >= 4 => Confidence::High,
            (Some(Strength::Moderate), 0) | (Some(Strength::Strong), _) => Confidence::Medium,
            _ => Confidence::Low,
        };
        (GuestKind::BareMetal, None, conf, None)
    } else {
        let mut why = Vec::new();
        if !cpuid.available {
            why.push(
                cpuid
                    .unavailable_reason
                    .clone()
                    .unwrap_or_else(|| "no CPUID".into()),
            );
        }
        match log.status {
            crate::source::KernelLogStatus::Read => {
                if !log.starts_at_boot {
                    why.push("the kernel log does not reach back to boot (truncated), so it has no detection messages".into());
                } else {
                    why.push("the kernel log has no hypervisor messages".into());
                }
            }
            _ => why.push(log.note.clone().unwrap_or_else(|| "no kernel log".into())),
        }
        if !cx.fs.exists("/proc/cpuinfo") {
            why.push("no /proc/cpuinfo".into());
        }
        if !cx.fs.exists("/sys") {
            why.push("no /sys".into());
        }
        for p in &cx.fs.problems {
            why.push(format!("{}: {}", p.path, p.problem));
        }
        let reason = if any_evidence {
            format!("no evidence about the hypervisor: {}", why.join("; "))
        } else {
            format!("no usable evidence: {}", why.join("; "))
        };
        (GuestKind::Unknown, None, Confidence::None, Some(reason))
    };

    let is_guest = !matches!(kind, GuestKind::BareMetal | GuestKind::Unknown);
    let nested = is_guest && host.kvm;
    let nested_via = nested.then(|| {
        if host.hardware_virt {
            NestedVia::Hardware
        } else if host.kvm_backends.iter().any(|b| b == "kvm_pvm") || host.pvm_host {
            NestedVia::Pvm
        } else {
            NestedVia::Unknown
        }
    });
    Verdict {
        kind,
        hypervisor,
        xen_mode: None,
        nested,
        nested_via,
        pvm_host: host.pvm_host,
        confidence,
        summary: String::new(),
        conflicts,
        unknown_reason,
    }
}

fn cand_label(c: Cand) -> &'static str {
    match c {
        Cand::Kvm => "KVM",
        Cand::Xen => "Xen",
        Cand::Pvm => "PVM",
        Cand::Vmware => "VMware",
        Cand::HyperV => "Hyper-V",
        Cand::Other => "another hypervisor",
    }
}

fn cand_kind(c: Cand) -> GuestKind {
    match c {
        Cand::Kvm => GuestKind::KvmGuest,
        Cand::Xen => GuestKind::XenGuest,
        Cand::Pvm => GuestKind::PvmGuest,
        Cand::Vmware => GuestKind::VmwareGuest,
        Cand::HyperV => GuestKind::HypervGuest,
        Cand::Other => GuestKind::OtherGuest,
    }
}

// ---------------------------------------------------------------------------------------------
// Xen mode

fn xen_info(
    cx: &Ctx,
    sys: &XenSysfs,
    logf: &XenLogFacts,
    loginfo: &crate::source::KernelLogInfo,
) -> XenInfo {
    let (mode, mode_reason) = xen_mode(cx, sys, loginfo);
    let mut active = logf.active.clone();
    if cx
        .evidence
        .iter()
        .any(|e| e.signal == Signal::XenPvClock && e.source.starts_with("/sys"))
        && !active.iter().any(|a| a.name == "pv_clock")
    {
        active.push(ActiveFeature {
            name: "pv_clock".into(),
            evidence: "/sys/devices/system/clocksource/clocksource0/current_clocksource: xen"
                .into(),
        });
    }
    let vbd: Vec<&String> = sys
        .bus_devices
        .iter()
        .filter(|d| d.starts_with("vbd-"))
        .collect();
    if !vbd.is_empty() && !active.iter().any(|a| a.name == "pv_disks") {
        active.push(ActiveFeature {
            name: "pv_disks".into(),
            evidence: format!(
                "/sys/bus/xen/devices: {}",
                vbd.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            ),
        });
    } else if !sys.xvd.is_empty() && !active.iter().any(|a| a.name == "pv_disks") {
        active.push(ActiveFeature {
            name: "pv_disks".into(),
            evidence: format!("/sys/block: {}", sys.xvd.join(" ")),
        });
    }
    let vif: Vec<&String> = sys
        .bus_devices
        .iter()
        .filter(|d| d.starts_with("vif-"))
        .collect();
    if (!vif.is_empty() || !sys.vif_driver.is_empty())
        && !active.iter().any(|a| a.name == "pv_network")
    {
        let ev = if !sys.vif_driver.is_empty() {
            format!(
                "network interface {} uses driver vif",
                sys.vif_driver.join(", ")
            )
        } else {
            format!(
                "/sys/bus/xen/devices: {}",
                vif.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
            )
        };
        active.push(ActiveFeature {
            name: "pv_network".into(),
            evidence: ev,
        });
    }
    XenInfo {
        mode,
        mode_reason,
        guest_type: sys.guest_type.clone(),
        version: sys.version.clone().or_else(|| logf.version.clone()),
        features: sys.features.clone(),
        features_error: sys.features_error.clone(),
        capabilities: sys.capabilities.clone(),
        dom0: sys.dom0,
        active,
        bus_devices: sys.bus_devices.clone(),
        xvd_disks: sys.xvd.clone(),
    }
}

fn xen_mode(
    cx: &Ctx,
    sys: &XenSysfs,
    loginfo: &crate::source::KernelLogInfo,
) -> (Option<XenMode>, String) {
    let src_of = |s: Signal| {
        cx.first(s)
            .map(|e| format!("{} ({})", e.source, e.observed))
    };
    // 1. What the kernel says about itself.
    let container = if let Some(g) = &sys.guest_type {
        match g.as_str() {
            "PV" => {
                return (
                    Some(XenMode::Pv),
                    format!("/sys/hypervisor/guest_type is {g}"),
                )
            }
            "PVH" => {
                return (
                    Some(XenMode::Pvh),
                    format!("/sys/hypervisor/guest_type is {g}"),
                )
            }
            "HVM" => format!("/sys/hypervisor/guest_type is {g}"),
            other => {
                return (
                    None,
                    format!("/sys/hypervisor/guest_type is {other:?}, not PV/HVM/PVH"),
                )
            }
        }
    } else if let Some(e) = cx
        .evidence
        .iter()
        .find(|e| e.signal == Signal::XenPvh && e.strength == Strength::Strong)
    {
        return (Some(XenMode::Pvh), format!("{}: {}", e.source, e.observed));
    } else if let Some(e) = cx
        .evidence
        .iter()
        .find(|e| e.signal == Signal::XenPv && e.strength == Strength::Strong)
    {
        let mut why = format!("{}: {}", e.source, e.observed);
        if let Some(h) = cx
            .evidence
            .iter()
            .filter(|e| e.signal == Signal::XenHvm)
            .max_by_key(|e| e.strength)
        {
            why.push_str(&format!("; but also {}: {}", h.source, h.observed));
        }
        return (Some(XenMode::Pv), why);
    } else if let Some(e) = cx
        .evidence
        .iter()
        .filter(|e| e.signal == Signal::XenHvm)
        .max_by_key(|e| e.strength)
    {
        format!("{}: {}", e.source, e.observed)
    } else if let Some(e) = cx.first(Signal::XenPv) {
        return (
            Some(XenMode::Pv),
            format!("{}: {} (moderate evidence only)", e.source, e.observed),
        );
    } else {
        return (
            None,
            format!(
                "Xen, but nothing says PV, HVM or PVH ({}): need /sys/hypervisor/guest_type, \
                 the feature bitmap, or the boot messages",
                loginfo
                    .note
                    .clone()
                    .unwrap_or_else(|| "kernel log has no Xen mode lines".into())
            ),
        );
    };
    // 2. HVM container: refine by PV features in use.
    // PVH shares the HVM container; without PIRQs Xen does not set hvm_pirqs for it.
    if let Some(f) = &sys.features {
        if f.has("hvm_callback_vector")
            && !f.has("hvm_pirqs")
            && !cx.has(Signal::XenPvDrivers)
            && cx
                .first(Signal::XenHvm)
                .is_some_and(|e| e.source.starts_with("/sys/hypervisor/properties"))
            && sys.guest_type.is_none()
            && !cx
                .evidence
                .iter()
                .any(|e| e.signal == Signal::XenHvm && e.strength == Strength::Strong)
        {
            return (
                Some(XenMode::Pvh),
                format!("{container}; hvm_* features without hvm_pirqs: Xen gives PVH domains no PIRQs (moderate evidence)"),
            );
        }
    }
    let pv_irq = src_of(Signal::XenPvInterrupts);
    let pv_other = src_of(Signal::XenPvSpinlocks)
        .or_else(|| src_of(Signal::XenPvTimers))
        .or_else(|| src_of(Signal::XenPvClock));
    let drivers = src_of(Signal::XenPvDrivers);
    if let Some(w) = pv_irq {
        return (
            Some(XenMode::Pvhvm),
            format!("{container}; PV interrupts: {w}"),
        );
    }
    if let Some(w) = pv_other {
        return (
            Some(XenMode::Pvhvm),
            format!("{container}; PV timers/spinlocks/clock: {w}"),
        );
    }
    let log_ok = loginfo.status == crate::source::KernelLogStatus::Read && loginfo.starts_at_boot;
    if let Some(w) = drivers {
        let mut why = format!("{container}; PV drivers: {w}; no PV interrupts or timers");
        if !log_ok {
            why.push_str(" (no complete kernel log: the HVM callback vector may be in use unseen, which would make this PVHVM)");
        }
        return (Some(XenMode::HvmPvDrivers), why);
    }
    let mut why = format!("{container}; no PV drivers, interrupts or timers");
    if !log_ok {
        why.push_str(" (no complete kernel log: PV features may be in use unseen)");
    }
    (Some(XenMode::Hvm), why)
}

// ---------------------------------------------------------------------------------------------
// KVM

fn kvm_info(
    dump: Option<&CpuidDump>,
    cpuid: &CpuidInfo,
    active: Vec<ActiveFeature>,
) -> KvmGuestInfo {
    let leaf = cpuid
        .hypervisor_leaves
        .iter()
        .find(|l| l.vendor == SignatureVendor::Kvm);
    let feat = leaf.and_then(|l| dump.and_then(|d| d.get(l.base + KVM_CPUID_FEATURES_OFFSET, 0)));
    let (features, unknown) = feat.map(|r| decode_kvm_features(r.eax)).unwrap_or_default();
    KvmGuestInfo {
        signature_leaf: leaf.map(|l| l.base),
        max_leaf: leaf.map(|l| l.max_leaf),
        features_eax: feat.map(|r| r.eax),
        features,
        unknown_feature_bits: unknown,
        hints_edx: feat.map(|r| r.edx),
        active,
    }
}

// ---------------------------------------------------------------------------------------------
// Summary, red herrings, measurement lists

fn summary_line(v: &Verdict, host: &HostCapabilities, xen: Option<&XenInfo>) -> String {
    let mut s = match v.kind {
        GuestKind::XenGuest => match v.xen_mode {
            Some(m) => format!("Xen guest, mode {}", m.label()),
            None => "Xen guest, mode unknown".to_string(),
        },
        GuestKind::OtherGuest => format!(
            "virtual machine ({})",
            v.hypervisor
                .clone()
                .unwrap_or_else(|| "unidentified hypervisor".into())
        ),
        GuestKind::Unknown => "unknown".to_string(),
        k => k.label().to_string(),
    };
    if let Some(x) = xen {
        if x.dom0 == Some(true) {
            s.push_str(" (dom0: a Xen host)");
        }
    }
    if v.nested {
        s.push_str(match v.nested_via {
            Some(NestedVia::Pvm) => {
                "; nested: also a KVM host via PVM (kvm_pvm loaded, /dev/kvm present)"
            }
            Some(NestedVia::Hardware) => {
                "; nested: also a KVM host via nested VMX/SVM (/dev/kvm present)"
            }
            _ => "; nested: also a KVM host (/dev/kvm present)",
        });
    } else if matches!(v.kind, GuestKind::BareMetal) && host.kvm {
        s.push_str(if host.pvm_host {
            "; KVM host (PVM)"
        } else {
            "; KVM host"
        });
    }
    s
}

fn red_herrings(cx: &mut Ctx, v: &Verdict, flags: &Flags, xen: &XenSysfs, pvm: &PvmInfo) {
    let guest = !matches!(v.kind, GuestKind::BareMetal | GuestKind::Unknown);
    if guest {
        let hv: Vec<&str> = ["vmx", "svm"]
            .into_iter()
            .filter(|f| flags.has(f))
            .collect();
        if !hv.is_empty() {
            cx.herring(
                "/proc/cpuinfo flags",
                hv.join(" "),
                "inside a guest, vmx/svm only say that nested hardware virtualization is offered to this guest; they say nothing about how this guest itself is virtualized",
            );
        } else if !flags.all.is_empty() {
            cx.herring(
                "/proc/cpuinfo flags",
                "no vmx/svm",
                "inside a guest the host masks vmx/svm unless it offers nested virtualization: their absence does not mean this is not HVM",
            );
        }
    }
    // /boot/config-*: configured is not active.
    for name in cx.fs.list("/boot") {
        if !name.starts_with("config-") {
            continue;
        }
        let p = format!("/boot/{name}");
        let Ok(text) = cx.fs.try_read(&p) else {
            continue;
        };
        let set: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.ends_with("=y")
                    && (l.starts_with("CONFIG_XEN_PV")
                        || l.starts_with("CONFIG_XEN_HAVE_PVMMU")
                        || l.starts_with("CONFIG_KVM_GUEST")
                        || l.starts_with("CONFIG_PVM_GUEST")
                        || l.starts_with("CONFIG_PARAVIRT=")
                        || l.starts_with("CONFIG_XEN_PVHVM")
                        || l.starts_with("CONFIG_XEN_PVH"))
            })
            .collect();
        if !set.is_empty() {
            cx.herring(
                p,
                set.join(" "),
                "configured is not active: these options let the kernel run in those modes if the hypervisor offers them",
            );
        }
    }
    if xen.capabilities.iter().any(|c| c.starts_with("hvm")) {
        cx.herring(
            "/sys/hypervisor/properties/capabilities",
            xen.capabilities.join(" "),
            "capabilities list what the Xen host can run (hvm-* = the host supports HVM), not the mode of this guest; a PV guest shows them too",
        );
    }
    if pvm.kallsyms_pvm_symbols > 0 && !pvm.guest {
        cx.herring(
            "/proc/kallsyms",
            format!("{} pvm_* symbols", pvm.kallsyms_pvm_symbols),
            "PVM code compiled into the kernel (guest entry code, or the kvm_pvm host) is not evidence of running as a PVM guest",
        );
    }
    if let Some(n) = &pvm.cmdline_nested_pvm {
        if !pvm.host {
            cx.herring(
                "/proc/cmdline",
                format!("nested_pvm={n}"),
                "a boot parameter asking for nested PVM is a request, not a running PVM host",
            );
        }
    }
    if flags.has("hypervisor") && v.kind == GuestKind::BareMetal {
        cx.herring(
            "/proc/cpuinfo flags",
            "hypervisor",
            "hypervisor flag set but other evidence says bare metal",
        );
    }
}

fn measure_lists(v: &Verdict, h: &HostCapabilities) -> (Vec<String>, Vec<String>) {
    let mut can = Vec::new();
    let mut cannot = Vec::new();
    let ev = h.default_event();
    let privileged = h.root == Some(true);
    let paranoid_note = match (h.paranoid, privileged) {
        (_, true) => String::new(),
        (Some(p), _) if p >= 2 => format!(" (perf_event_paranoid={p}: needs root or CAP_PERFMON for other processes and the kernel)"),
        _ => String::new(),
    };
    if h.kvm {
        can.push(format!(
            "host-side sampling of VMM processes and their vCPU threads with {ev}{paranoid_note}"
        ));
    }
    if matches!(v.kind, GuestKind::Unknown | GuestKind::BareMetal) || !h.kvm {
        can.push(format!(
            "sampling of this machine's own processes and kernel with {ev}{paranoid_note}"
        ));
    }
    let exits_refuted = matches!(h.tracepoints.firing, Probe::No { .. });
    if h.tracepoints.kvm_exit && h.tracepoints.kvm_entry && !exits_refuted {
        can.push(
            "VM exits and entries via the kvm:kvm_exit / kvm:kvm_entry tracepoints".to_string(),
        );
    } else if h.kvm && !exits_refuted {
        cannot.push(format!(
            "trace VM exits with kvm:kvm_exit, because {}",
            h.tracepoints
                .note
                .clone()
                .unwrap_or_else(|| "the tracepoints are missing".into())
        ));
    }
    match (h.debugfs.kvm_dir, h.debugfs.stats_readable) {
        (true, Some(true)) => can.push("KVM statistics from /sys/kernel/debug/kvm".to_string()),
        (true, Some(false)) => {
            cannot.push("read KVM statistics (exits, halt polling, ...) from debugfs, because lockdown refuses them (EPERM)".to_string());
            match h.debugfs.vcpu_files_readable {
                Some(false) => {}
                Some(true) => can.push("vCPU thread ids and TSC offsets from debugfs (vcpuN/pid, vcpuN/tsc-offset: read-only files, allowed under lockdown; read successfully)".to_string()),
                None => can.push("vCPU thread ids and TSC offsets from debugfs while a VM runs (vcpuN/pid, vcpuN/tsc-offset: read-only files, allowed under lockdown)".to_string()),
            }
        }
        (true, None) => {}
        (false, _) if h.kvm => cannot.push(format!(
            "read KVM statistics from debugfs, because {}",
            h.debugfs
                .note
                .clone()
                .unwrap_or_else(|| "debugfs has no kvm directory".into())
        )),
        _ => {}
    }
    match h.kptr_restrict {
        Some(0) => can.push("host kernel symbols from /proc/kallsyms (kptr_restrict=0)".to_string()),
        Some(1) if privileged => can.push("host kernel symbols from /proc/kallsyms (kptr_restrict=1, running as root)".to_string()),
        Some(k) => cannot.push(format!("resolve host kernel addresses from /proc/kallsyms, because kptr_restrict={k} hides them")),
        None => {}
    }
    if !h.hardware_pmu && h.event_sources.is_empty() {
        cannot.push("count hardware events (cycles, instructions, cache misses): unknown whether a hardware PMU exists (no /sys/bus/event_source/devices in the input); assuming none, so sampling uses cpu-clock".to_string());
    } else if !h.hardware_pmu {
        cannot.push(format!(
            "count hardware events (cycles, instructions, cache misses), because there is no hardware PMU (event sources: {}); sampling falls back to cpu-clock",
            if h.event_sources.is_empty() { "none found".to_string() } else { h.event_sources.join(" ") }
        ));
    } else {
        can.push("hardware events (cycles, instructions, cache misses)".to_string());
    }
    match (&h.guest_ip_tagging, h.guest_ips_hidden_reason()) {
        (Probe::Yes { detail }, _) => {
            can.push(format!("guest IPs in host samples (probed: {detail})"))
        }
        (_, Some(_)) if !h.kvm => {}
        (probe, Some(reason)) => cannot.push(format!(
            "attribute host samples to guest code (guest IPs), because {reason}{}",
            if *probe == Probe::NotProbed {
                " (predicted from the configuration; --probe measures it)"
            } else {
                ""
            }
        )),
        (Probe::NotProbed, None) => can
            .push("guest IPs in host samples, predicted (run with --probe to confirm)".to_string()),
        (Probe::No { .. }, None) => {}
    }
    if !h.kvm {
        cannot.push("profile virtual machines from here, because /dev/kvm is absent: run hvprof on the host that runs them".to_string());
    }
    if let Probe::No { reason } = &h.tracepoints.firing {
        cannot.push(format!("rely on kvm:kvm_exit firing, because {reason}"));
    }
    (can, cannot)
}
