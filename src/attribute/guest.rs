//! Guest symbols in passive mode: guest IPs resolved through the kallsyms-format map the user
//! gave for the sample's VM (or for every VM).

use hvprof_perf::CpuMode;

use super::class::Symbol;
use crate::model::{GuestMachine, GuestVa, Machines};

/// The DSO label of a guest symbol from a kallsyms-format map: `[guest.MODULE]`,
/// `[guest.user]` for a user-mode sample, else `[guest.kernel]`.
pub fn guest_dso(module: Option<&str>, cpumode: CpuMode) -> String {
    match (module, cpumode) {
        (Some(m), _) => format!("[guest.{m}]"),
        (None, CpuMode::GuestUser) => "[guest.user]".to_string(),
        (None, _) => "[guest.kernel]".to_string(),
    }
}

/// The symbol of guest address `ip` of `vm` (`None`: a guest of no known VM), with a reason
/// when it cannot be named. `cpumode` is the sample's (a guest mode).
pub fn guest_symbol(
    machines: &Machines,
    vm: Option<&GuestMachine>,
    ip: GuestVa,
    cpumode: CpuMode,
) -> Symbol {
    let Some(k) = machines.guest_kernel_symbols(vm) else {
        let why = if cpumode == CpuMode::GuestUser {
            "guest user code: needs active mode (hvprof-guest) or a guest symbol map"
        } else {
            "no guest symbol map for this VM (--guest-kallsyms)"
        };
        return Symbol::unknown(ip.0, "[guest]", why);
    };
    match k.lookup(ip.0) {
        Some(ks) => Symbol::named(ks.name, guest_dso(ks.module, cpumode)),
        None => Symbol::unknown(ip.0, "[guest]", "address outside the guest symbol map"),
    }
}
