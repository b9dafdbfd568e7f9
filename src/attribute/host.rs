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

/// Host symbols being loaded on another thread (reading /proc/kallsyms costs tens of ms, most of
/// it in the kernel): start it first, use it when the first host kernel sample needs it.
#[derive(Debug)]
pub enum HostSymbolsState {
    /// Loaded (or given).
    Ready(HostSymbols),
    /// Still loading.
    Loading(std::thread::JoinHandle<HostSymbols>),
}

impl HostSymbolsState {
    /// Starts loading `<root>/proc/kallsyms` on a thread (loads it here if no thread starts).
    pub fn load_in_background(root: &Path) -> HostSymbolsState {
        let root = root.to_path_buf();
        let r2 = root.clone();
        match std::thread::Builder::new()
            .name("hvprof-kallsyms".into())
            .spawn(move || HostSymbols::load(&r2))
        {
            Ok(h) => HostSymbolsState::Loading(h),
            Err(_) => HostSymbolsState::Ready(HostSymbols::load(&root)),
        }
    }

    /// The symbols, waiting for the load the first time.
    pub fn get(&mut self) -> &HostSymbols {
        if let HostSymbolsState::Loading(_) = self {
            let HostSymbolsState::Loading(h) =
                std::mem::replace(self, HostSymbolsState::Ready(HostSymbols::default()))
            else {
                unreachable!("checked above")
            };
            let loaded = h.join().unwrap_or_else(|_| HostSymbols {
                kallsyms: None,
                kallsyms_error: Some("the thread loading host kallsyms panicked".into()),
            });
            *self = HostSymbolsState::Ready(loaded);
        }
        match self {
            HostSymbolsState::Ready(h) => h,
            HostSymbolsState::Loading(_) => unreachable!("replaced above"),
        }
    }
}
