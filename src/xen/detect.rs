//! `hvprof detect` in dom0: what this Xen host offers hvprof and what it can therefore measure.
//!
//! Read from sysfs (`/sys/hypervisor/...`, written by Linux's drivers/xen/sys-hypervisor.c and
//! arch/x86/xen/pmu.c), xenfs (`/proc/xen/capabilities`), the Xen tools on PATH and whether
//! libxenctrl/libxenstore load.
//!
//! ```
//! let facts = hvprof::xen::detect::Dom0Facts::read(std::path::Path::new("/nonexistent"), None);
//! assert!(!facts.dom0);
//! ```

use std::path::Path;

use serde::Serialize;

/// One capability and why it is or is not there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// What (`hvprof vms`, `hvprof stat runstates`, ...).
    pub what: String,
    /// Available here.
    pub available: bool,
    /// Why (or why not).
    pub why: String,
}

/// What a dom0 offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dom0Facts {
    /// This is dom0 (`/proc/xen/capabilities` says `control_d`).
    pub dom0: bool,
    /// Xen's version (`/sys/hypervisor/version/{major,minor,extra}`).
    pub xen_version: Option<String>,
    /// Dom0's own mode (`/sys/hypervisor/guest_type`: `PV`, `PVH`).
    pub dom0_mode: Option<String>,
    /// Xen's vPMU mode (`/sys/hypervisor/pmu/pmu_mode`: `off`, `self`, `hv`, `all`).
    pub vpmu_mode: Option<String>,
    /// The xentrace program, if found.
    pub xentrace: Option<String>,
    /// libxenctrl loads (`None` when not tried).
    pub libxenctrl: Option<Result<(), String>>,
    /// What hvprof can measure here.
    pub capabilities: Vec<Capability>,
}

fn read_trim(p: &Path) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(p)
        .ok()?
        .take(4096)
        .read_to_string(&mut s)
        .ok()?;
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

impl Dom0Facts {
    /// Reads the facts under `root` (`/` live). `libxenctrl` is the result of loading it
    /// (live: [`Dom0Facts::live`]; tests pass what they want).
    pub fn read(root: &Path, libxenctrl: Option<Result<(), String>>) -> Dom0Facts {
        let hv = root.join("sys/hypervisor");
        let xen_version = match (
            read_trim(&hv.join("version/major")),
            read_trim(&hv.join("version/minor")),
        ) {
            (Some(a), Some(b)) => Some(format!(
                "{a}.{b}{}",
                read_trim(&hv.join("version/extra")).unwrap_or_default()
            )),
            _ => None,
        };
        let dom0 = super::is_dom0(root);
        let vpmu_mode = read_trim(&hv.join("pmu/pmu_mode"));
        let xentrace = if root == Path::new("/") {
            super::xentrace::xentrace_path().map(|p| p.display().to_string())
        } else {
            read_trim(&root.join("xentrace-path"))
        };
        let mut f = Dom0Facts {
            dom0,
            xen_version,
            dom0_mode: read_trim(&hv.join("guest_type")),
            vpmu_mode,
            xentrace,
            libxenctrl,
            capabilities: Vec::new(),
        };
        f.capabilities = f.decide();
        f
    }

    /// Reads the live system and tries to load libxenctrl and libxenstore.
    pub fn live() -> Dom0Facts {
        let lib = super::ffi::XenStoreLib::open()
            .map(drop)
            .and_then(|_| super::ffi::XenCtrl::open().map(drop))
            .map_err(|e| crate::error_chain(&e));
        Dom0Facts::read(Path::new("/"), Some(lib))
    }

    fn decide(&self) -> Vec<Capability> {
        let cap = |what: &str, available: bool, why: String| Capability {
            what: what.into(),
            available,
            why,
        };
        let mut v = Vec::new();
        if !self.dom0 {
            v.push(cap(
                "Xen dom0 backend",
                false,
                "not a Xen dom0 (/proc/xen/capabilities has no control_d)".into(),
            ));
            return v;
        }
        let lib = match &self.libxenctrl {
            Some(Ok(())) => (true, "libxenctrl and libxenstore load".to_string()),
            Some(Err(e)) => (false, e.clone()),
            None => (false, "libxenctrl not tried".to_string()),
        };
        v.push(cap(
            "hvprof vms (domains, vCPUs, placement)",
            lib.0,
            lib.1.clone(),
        ));
        v.push(cap(
            "hvprof record --domain (vCPU-context timer samples)",
            lib.0,
            if lib.0 {
                "XEN_DOMCTL_getvcpucontext through libxenctrl; each sample pauses the vCPU briefly"
                    .into()
            } else {
                lib.1.clone()
            },
        ));
        v.push(match &self.xentrace {
            Some(p) => cap(
                "hvprof stat (runstates, steal, hypercalls, HVM exits)",
                lib.0,
                format!("xentrace at {p}"),
            ),
            None => cap(
                "hvprof stat (runstates, steal, hypercalls, HVM exits)",
                false,
                "xentrace not found (Debian: xen-utils-4.17)".into(),
            ),
        });
        let vpmu = self.vpmu_mode.as_deref();
        v.push(match vpmu {
            Some("all") => cap(
                "PMU samples of other domains (vPMU)",
                self.xentrace.is_some(),
                "vPMU mode all: dom0 perf samples of other domains, attributed through the xentrace timeline".into(),
            ),
            Some(m) => cap(
                "PMU samples of other domains (vPMU)",
                false,
                format!("vPMU mode {m}: only mode all (Xen boot option vpmu=on, echo all > /sys/hypervisor/pmu/pmu_mode) gives dom0 other domains' samples"),
            ),
            None => cap(
                "PMU samples of other domains (vPMU)",
                false,
                "no /sys/hypervisor/pmu/pmu_mode: Xen's vPMU is off (boot Xen with vpmu=on) or the CPU has no PMU (emulators such as QEMU TCG)".into(),
            ),
        });
        v
    }
}

/// The facts as text for `hvprof detect`.
pub fn render_text(f: &Dom0Facts) -> String {
    use std::fmt::Write;
    let mut s = String::from("Xen dom0:\n");
    let o = |x: &Option<String>| x.clone().unwrap_or_else(|| "unknown".into());
    let _ = writeln!(s, "  dom0: {}", if f.dom0 { "yes" } else { "no" });
    let _ = writeln!(s, "  Xen version: {}", o(&f.xen_version));
    let _ = writeln!(s, "  dom0 mode: {}", o(&f.dom0_mode));
    let _ = writeln!(s, "  vPMU mode: {}", o(&f.vpmu_mode));
    let _ = writeln!(
        s,
        "  xentrace: {}",
        f.xentrace.as_deref().unwrap_or("not found")
    );
    for c in &f.capabilities {
        let _ = writeln!(
            s,
            "  [{}] {}: {}",
            if c.available { "yes" } else { " no" },
            c.what,
            c.why
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(pmu: Option<&str>, xentrace: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, v: &str| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        };
        w("sys/hypervisor/type", "xen\n");
        w("sys/hypervisor/version/major", "4\n");
        w("sys/hypervisor/version/minor", "17\n");
        w("sys/hypervisor/version/extra", ".3-pre\n");
        w("sys/hypervisor/guest_type", "PV\n");
        w("proc/xen/capabilities", "control_d\n");
        if let Some(m) = pmu {
            w("sys/hypervisor/pmu/pmu_mode", m);
        }
        if xentrace {
            w("xentrace-path", "/usr/sbin/xentrace");
        }
        d
    }

    #[test]
    fn dom0_without_pmu_under_an_emulator() {
        let d = tree(None, true);
        let f = Dom0Facts::read(d.path(), Some(Ok(())));
        assert!(f.dom0);
        assert_eq!(f.xen_version.as_deref(), Some("4.17.3-pre"));
        assert_eq!(f.dom0_mode.as_deref(), Some("PV"));
        let vpmu = f
            .capabilities
            .iter()
            .find(|c| c.what.contains("vPMU"))
            .unwrap();
        assert!(!vpmu.available && vpmu.why.contains("vpmu=on"));
        assert!(f.capabilities.iter().filter(|c| c.available).count() == 3);
        let t = render_text(&f);
        assert!(t.contains("Xen version: 4.17.3-pre"), "{t}");
    }

    #[test]
    fn vpmu_all_and_missing_libraries() {
        let d = tree(Some("all\n"), false);
        let f = Dom0Facts::read(d.path(), Some(Err("cannot load libxenctrl.so".into())));
        assert_eq!(f.vpmu_mode.as_deref(), Some("all"));
        let stat = f
            .capabilities
            .iter()
            .find(|c| c.what.starts_with("hvprof stat"))
            .unwrap();
        assert!(!stat.available && stat.why.contains("xentrace not found"));
        let vms = &f.capabilities[0];
        assert!(!vms.available && vms.why.contains("libxenctrl"));
        let d = tree(Some("self"), true);
        let f = Dom0Facts::read(d.path(), Some(Ok(())));
        assert!(f
            .capabilities
            .iter()
            .any(|c| c.why.starts_with("vPMU mode self")));
    }
}
