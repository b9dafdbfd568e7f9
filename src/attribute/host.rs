//! Host symbol context: the host kernel's kallsyms.

use std::path::Path;

use hvprof_symbols::Kallsyms;

/// Host-side symbol context shared by all VMs.
#[derive(Debug, Default)]
pub struct HostSymbols {
    /// Host kernel symbols (`/proc/kallsyms`), if readable.
    pub kallsyms: Option<Kallsyms>,
    /// Why host kernel symbols are unavailable, if they are.
    pub kallsyms_error: Option<String>,
}

impl HostSymbols {
    /// Loads `/proc/kallsyms` (under `root`); failure is kept as a reason, not an error,
    /// because samples still count without names.
    pub fn load(root: &Path) -> HostSymbols {
        match Kallsyms::load(root.join("proc/kallsyms")) {
            Ok(k) => HostSymbols {
                kallsyms: Some(k),
                kallsyms_error: None,
            },
            Err(e) => HostSymbols {
                kallsyms: None,
                kallsyms_error: Some(crate::error_chain(&e)),
            },
        }
    }
}
